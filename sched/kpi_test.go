package sched

import (
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// The completion rate that retry_after_ms comes from is taken over the span
// the window holds, not diluted over the whole window in the first minute.
func TestThroughputOverTheSpanHeld(t *testing.T) {
	k := newKPIWindow(time.Minute)
	start := time.Unix(1_700_000_000, 0)
	for i := 0; i < 100; i++ {
		k.completed(start.Add(time.Duration(i)*20*time.Millisecond), time.Millisecond, protocol.StateSucceeded, nil)
	}
	now := start.Add(2 * time.Second)
	if got := k.throughput(now); got < 49 || got > 51 {
		t.Fatalf("100 completions over 2s: %.1f/s, want 50", got)
	}
	one := newKPIWindow(time.Minute)
	one.completed(start, time.Millisecond, protocol.StateSucceeded, nil)
	if got := one.throughput(start); got != 1 {
		t.Fatalf("one completion just now: %.1f/s, want 1 (a span of at least a second)", got)
	}
	r := k.report(now)
	if r.Completed != 100 || r.Failed != 0 {
		t.Fatalf("report %+v", r)
	}
	if got := k.throughput(start.Add(2 * time.Minute)); got != 0 {
		t.Fatalf("after the window: %.1f/s, want 0", got)
	}
}
