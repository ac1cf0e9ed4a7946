package sched

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/protocol"
)

// The recently ended tasks are bounded by count and by bytes, oldest out
// first, and a task too large is not kept at all.
func TestRecentIsBounded(t *testing.T) {
	r := newRecent()
	task := func(i, out int) *protocol.Task {
		return &protocol.Task{TaskID: fmt.Sprintf("t%d", i), State: protocol.StateSucceeded,
			Result: &protocol.ExecutionResult{Output: []byte(`"` + strings.Repeat("x", out) + `"`)}}
	}
	for i := range recentTasks + 10 {
		r.add(task(i, 10))
	}
	if r.n != recentTasks || len(r.byID) != recentTasks {
		t.Fatalf("%d tasks kept (%d by id), want %d", r.n, len(r.byID), recentTasks)
	}
	if r.get("t9") != nil || r.get("t10") == nil || r.get(fmt.Sprint("t", recentTasks+9)) == nil {
		t.Fatal("not the oldest out first")
	}
	big := recentBytes / 64
	r.add(task(-1, big))
	if r.get("t-1") != nil {
		t.Fatal("a task over the size limit was kept")
	}
	r.pause()
	r.add(task(1, 10))
	if r.n != 0 || r.get("t10") != nil {
		t.Fatal("paused, it keeps or answers")
	}
	r.resume()
	for i := range 200 {
		r.add(task(i, big/2))
	}
	if r.bytes > recentBytes || r.n == 0 || r.n >= 200 {
		t.Fatalf("%d bytes in %d tasks; want at most %d bytes", r.bytes, r.n, recentBytes)
	}
	sum := 0
	for _, t := range r.byID {
		sum += taskSize(t)
	}
	if sum != r.bytes || len(r.byID) != r.n {
		t.Fatalf("accounting: %d bytes counted, %d held; %d ids, %d in the ring", r.bytes, sum, len(r.byID), r.n)
	}
	if r.get("199") == nil && r.get("t199") == nil {
		t.Fatal("the newest task was not kept")
	}
}
