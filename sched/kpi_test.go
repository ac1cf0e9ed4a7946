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

// A full window slides by reslicing: the arrays stay within a small
// factor of what the window holds, and what it reports is exact.
func TestKPIWindowSlides(t *testing.T) {
	k := newKPIWindow(time.Second)
	start := time.Unix(1_700_000_000, 0)
	now := start
	for i := range 100_000 {
		now = start.Add(time.Duration(i) * time.Millisecond)
		k.submitted(now)
		k.completed(now, time.Millisecond, protocol.StateSucceeded, map[string]float64{"x": 1})
	}
	r := k.report(now)
	// Entries at or after now-1s: 1,001 of them.
	if r.Submitted != 1001 || r.Completed != 1001 || r.Custom["x"] != 1001 {
		t.Fatalf("report after sliding: submitted %d, completed %d, custom %v; want 1001 each", r.Submitted, r.Completed, r.Custom)
	}
	if c := cap(k.subs); c > 4*1001 {
		t.Errorf("submits' array holds %d entries for a window of 1,001", c)
	}
	if c := cap(k.dones); c > 4*1001 {
		t.Errorf("completions' array holds %d entries for a window of 1,001", c)
	}
}

// BenchmarkKPIWindowFull: a completion recorded into a window holding a
// minute at 10,000 tasks/s.
func BenchmarkKPIWindowFull(b *testing.B) {
	k := newKPIWindow(time.Minute)
	start := time.Unix(1_700_000_000, 0)
	const live = 600_000
	step := time.Minute / live
	for i := range live {
		k.completed(start.Add(time.Duration(i)*step), time.Millisecond, protocol.StateSucceeded, nil)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k.completed(start.Add(time.Duration(live+i)*step), time.Millisecond, protocol.StateSucceeded, nil)
	}
}
