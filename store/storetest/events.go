package storetest

// Events and progress.

import (
	"errors"
	"slices"
	"testing"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

func testEvents(t *testing.T, s store.Store) {
	if n := lastSeq(t, s); n != 0 {
		t.Fatalf("LastSeq of an empty store = %d, want 0", n)
	}
	if evs := events(t, s, 0, store.EventFilter{}, 0); len(evs) != 0 {
		t.Fatalf("Events of an empty store = %v", evs)
	}
	create(t, s, NewTask("a1", "a", protocol.High))   // 1
	create(t, s, NewTask("b1", "b", protocol.Normal)) // 2
	create(t, s, NewTask("a2", "a", protocol.Low))    // 3
	a1, _ := claim(t, s, at(1))                       // 4: a1
	b1, _ := claim(t, s, at(2))                       // 5: b1
	a1.State = protocol.StateSucceeded                // 6
	update(t, s, a1, protocol.StateRunning)
	if _, err := s.AppendProgress(ctx, "b1", b1.Attempt, 0.5, at(3)); err != nil { // 7
		t.Fatalf("AppendProgress: %v", err)
	}

	all := events(t, s, 0, store.EventFilter{}, 0)
	if len(all) != 7 {
		t.Fatalf("Events: %d, want 7", len(all))
	}
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("Events[%d].Seq = %d, want %d (contiguous from 1)", i, ev.Seq, i+1)
		}
	}
	if n := lastSeq(t, s); n != 7 {
		t.Errorf("LastSeq = %d, want 7", n)
	}
	seqs := func(evs []protocol.TaskEvent) []int64 {
		out := make([]int64, len(evs))
		for i, ev := range evs {
			out[i] = ev.Seq
		}
		return out
	}
	for _, c := range []struct {
		name  string
		after int64
		f     store.EventFilter
		limit int
		want  []int64
	}{
		{"after", 4, store.EventFilter{}, 0, []int64{5, 6, 7}},
		{"limit", 0, store.EventFilter{}, 3, []int64{1, 2, 3}},
		{"after and limit", 2, store.EventFilter{}, 2, []int64{3, 4}},
		{"after the last", 7, store.EventFilter{}, 0, nil},
		{"one task", 0, store.EventFilter{TaskIDs: []string{"a1"}}, 0, []int64{1, 4, 6}},
		{"two tasks", 0, store.EventFilter{TaskIDs: []string{"b1", "a2"}}, 0, []int64{2, 3, 5, 7}},
		{"tasks repeated", 0, store.EventFilter{TaskIDs: []string{"a2", "a2"}}, 0, []int64{3}},
		{"tasks after limit", 2, store.EventFilter{TaskIDs: []string{"b1", "a1"}}, 2, []int64{4, 5}},
		{"unknown task", 0, store.EventFilter{TaskIDs: []string{"zz"}}, 0, nil},
		{"agent", 0, store.EventFilter{Agent: "a"}, 0, []int64{1, 3, 4, 6}},
		{"agent after limit", 3, store.EventFilter{Agent: "a"}, 1, []int64{4}},
		{"agent and task", 0, store.EventFilter{Agent: "b", TaskIDs: []string{"a1", "b1"}}, 0, []int64{2, 5, 7}},
		{"agent and other task", 0, store.EventFilter{Agent: "b", TaskIDs: []string{"a1"}}, 0, nil},
	} {
		if got := seqs(events(t, s, c.after, c.f, c.limit)); !slices.Equal(got, c.want) {
			t.Errorf("Events %s: seqs %v, want %v", c.name, got, c.want)
		}
	}
	ev := all[6]
	if ev.TaskID != "b1" || ev.Agent != "b" || ev.State != protocol.StateRunning || ev.Progress == nil || *ev.Progress != 0.5 || !ev.At.Equal(at(3)) {
		t.Errorf("progress event = %+v", ev)
	}
	if ev := all[5]; ev.State != protocol.StateSucceeded || ev.Attempt != 1 || ev.Agent != "a" {
		t.Errorf("update event = %+v", ev)
	}
}

func testProgress(t *testing.T, s store.Store) {
	create(t, s, NewTask("p", "echo", protocol.Normal))
	if _, err := s.AppendProgress(ctx, "p", 0, 0.1, at(1)); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("AppendProgress on a queued task: err = %v, want ErrStateChanged", err)
	}
	if _, err := s.AppendProgress(ctx, "nope", 1, 0.1, at(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AppendProgress on a missing task: err = %v, want ErrNotFound", err)
	}
	p, _ := claim(t, s, at(1))
	if _, err := s.AppendProgress(ctx, "p", p.Attempt+1, 0.1, at(1)); !errors.Is(err, store.ErrStateChanged) {
		t.Errorf("AppendProgress for another attempt: err = %v, want ErrStateChanged", err)
	}
	ev, err := s.AppendProgress(ctx, "p", p.Attempt, 0.25, at(2))
	if err != nil {
		t.Fatalf("AppendProgress: %v", err)
	}
	p25 := 0.25
	same(t, "progress event", ev, protocol.TaskEvent{Seq: 3, TaskID: "p", Agent: "echo", State: protocol.StateRunning, Attempt: 1, At: at(2), Progress: &p25})
	if got := get(t, s, "p"); got.State != protocol.StateRunning || got.Attempt != 1 {
		t.Errorf("task after progress: %s attempt %d, want unchanged", got.State, got.Attempt)
	}
}
