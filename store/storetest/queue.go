package storetest

// The queue: claim order, retries, ready times, depth.

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// A write made for a claimed task as soon as Claim returns, before the
// claim is known committed, comes after the claim: the outcome of a short
// run needs no wait for its claim's commit. The claim then reports its
// commit, with the event that precedes the outcome's.
func testClaimThenWrite(t *testing.T, s store.Store) {
	for _, id := range []string{"a", "b", "c"} {
		create(t, s, NewTask(id, "echo", protocol.Normal))
	}
	type result struct {
		started *store.Pending
		ev      protocol.TaskEvent
		err     error
	}
	var results []result
	for i := range 3 {
		tr, started, ok, err := s.Claim(ctx, at(1))
		if err != nil || !ok {
			t.Fatalf("Claim: %v %v", ok, err)
		}
		fin := at(2)
		switch i {
		case 0:
			tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
		case 1:
			tr.State, tr.ReadyAt, tr.NextAttemptAt = protocol.StateRetrying, fin, &fin
		case 2:
			tr.State, tr.ReadyAt = protocol.StateQueued, time.Time{}
		}
		ev, err := s.UpdateTask(ctx, tr, protocol.StateRunning)
		results = append(results, result{started, ev, err})
	}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("write %d right after its claim: %v", i, r.err)
		}
		ev, err := r.started.Wait()
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		if ev.State != protocol.StateRunning || ev.Seq == 0 || ev.Seq >= r.ev.Seq {
			t.Errorf("claim %d: event %+v, then the write's %d: want running, before", i, ev, r.ev.Seq)
		}
	}
	if got := get(t, s, "a"); got.State != protocol.StateSucceeded || got.Attempt != 1 {
		t.Errorf("a: %s attempt %d, want succeeded 1", got.State, got.Attempt)
	}
	if d, _ := s.QueueDepth(ctx); d[protocol.Normal] != 2 {
		t.Errorf("QueueDepth = %v, want 2 normal (b retrying, c queued)", d)
	}
	if n := lastSeq(t, s); n != 9 {
		t.Errorf("LastSeq = %d, want 9", n)
	}
}

func testClaimOrder(t *testing.T, s store.Store) {
	claimNone(t, s, at(0))
	for _, c := range []struct {
		id string
		p  protocol.Priority
	}{
		{"n1", protocol.Normal}, {"l1", protocol.Low}, {"h1", protocol.High}, {"n2", protocol.Normal},
		{"c1", protocol.Critical}, {"b1", protocol.Background}, {"h2", protocol.High}, {"n3", protocol.Normal},
	} {
		create(t, s, NewTask(c.id, "echo", c.p))
	}
	want := []string{"c1", "h1", "h2", "n1", "n2", "n3", "l1", "b1"}
	var got []string
	for i := range want {
		now := at(10 + i)
		tr, ev := claim(t, s, now)
		got = append(got, tr.TaskID)
		if tr.State != protocol.StateRunning || tr.Attempt != 1 || tr.StartedAt == nil || !tr.StartedAt.Equal(now) {
			t.Errorf("claimed %s: state %s attempt %d started %v; want running, 1, %v", tr.TaskID, tr.State, tr.Attempt, tr.StartedAt, now)
		}
		if ev.TaskID != tr.TaskID || ev.State != protocol.StateRunning || ev.Attempt != 1 || !ev.At.Equal(now) || ev.Agent != "echo" {
			t.Errorf("claim event = %+v; want %s running attempt 1 at %v", ev, tr.TaskID, now)
		}
		same(t, "claimed task vs GetTask", get(t, s, tr.TaskID), tr)
	}
	if !slices.Equal(got, want) {
		t.Errorf("claim order = %v, want %v", got, want)
	}
	claimNone(t, s, at(100))
}

// retry makes a running task retrying until ready.
func retry(t *testing.T, s store.Store, tr store.TaskRecord, ready time.Time) store.TaskRecord {
	t.Helper()
	tr.State = protocol.StateRetrying
	tr.ReadyAt = ready
	tr.NextAttemptAt = &ready
	tr.Error = protocol.NewTaskError(protocol.CodeTrap, "boom")
	tr.AttemptErrors = append(tr.AttemptErrors, *tr.Error)
	ev := update(t, s, tr, protocol.StateRunning)
	if ev.State != protocol.StateRetrying || ev.Error == nil {
		t.Errorf("retry event = %+v, want retrying with the error", ev)
	}
	return tr
}

func testRetrying(t *testing.T, s store.Store) {
	if _, ok, err := s.NextReadyAt(ctx, at(0)); err != nil || ok {
		t.Fatalf("NextReadyAt on an empty store: ok=%v err=%v, want false", ok, err)
	}
	hi, _ := create(t, s, NewTask("hi", "echo", protocol.High))
	hi, _ = claim(t, s, at(1))
	retry(t, s, hi, at(10))
	create(t, s, NewTask("lo", "echo", protocol.Low))

	if next, ok, err := s.NextReadyAt(ctx, at(2)); err != nil || !ok || !next.Equal(at(10)) {
		t.Fatalf("NextReadyAt = %v %v %v, want %v", next, ok, err, at(10))
	}
	// Not before ReadyAt, even though its priority is higher.
	lo, _ := claim(t, s, at(5))
	if lo.TaskID != "lo" {
		t.Fatalf("claim at 5s: %s, want lo (hi is not ready)", lo.TaskID)
	}
	claimNone(t, s, at(9))
	if next, ok, _ := s.NextReadyAt(ctx, at(9)); !ok || !next.Equal(at(10)) {
		t.Fatalf("NextReadyAt(9s) = %v %v, want %v", next, ok, at(10))
	}
	if _, ok, _ := s.NextReadyAt(ctx, at(10)); ok {
		t.Fatalf("NextReadyAt(10s): ok, want none: the retry is runnable then")
	}
	got, ev := claim(t, s, at(10))
	if got.TaskID != "hi" || got.Attempt != 2 || got.NextAttemptAt != nil || !got.ReadyAt.IsZero() {
		t.Fatalf("claim at 10s: %s attempt %d next %v ready %v; want hi, 2, nil, zero", got.TaskID, got.Attempt, got.NextAttemptAt, got.ReadyAt)
	}
	if len(got.AttemptErrors) != 1 || got.AttemptErrors[0].Code != protocol.CodeTrap {
		t.Errorf("attempt errors after the retry = %+v, want the trap", got.AttemptErrors)
	}
	if ev.Attempt != 2 {
		t.Errorf("claim event attempt = %d, want 2", ev.Attempt)
	}

	// A ready retry competes by priority and original QueueSeq.
	a, _ := create(t, s, NewTask("a", "echo", protocol.Normal))
	create(t, s, NewTask("b", "echo", protocol.Normal))
	a, _ = claim(t, s, at(20))
	if a.TaskID != "a" {
		t.Fatalf("claimed %s, want a", a.TaskID)
	}
	retry(t, s, a, at(21))
	create(t, s, NewTask("c", "echo", protocol.Normal))
	var order []string
	for i := 0; i < 3; i++ {
		tr, _ := claim(t, s, at(30))
		order = append(order, tr.TaskID)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(order, want) {
		t.Errorf("claim order after a retry = %v, want %v", order, want)
	}
}

func testClockBackwards(t *testing.T, s store.Store) {
	create(t, s, NewTask("r", "echo", protocol.Normal))
	r, _ := claim(t, s, at(0))
	retry(t, s, r, at(10))
	if _, ok, _ := s.NextReadyAt(ctx, at(20)); ok {
		t.Fatalf("NextReadyAt(20s): want none")
	}
	// The clock goes back: the task is not runnable at 5s.
	if next, ok, _ := s.NextReadyAt(ctx, at(5)); !ok || !next.Equal(at(10)) {
		t.Fatalf("NextReadyAt(5s) after NextReadyAt(20s) = %v %v, want %v", next, ok, at(10))
	}
	claimNone(t, s, at(5))
	got, _ := claim(t, s, at(10))
	if got.TaskID != "r" {
		t.Fatalf("claimed %s, want r", got.TaskID)
	}
}

func testQueueDepthAndWaiting(t *testing.T, s store.Store) {
	depth := func() map[protocol.Priority]int {
		t.Helper()
		d, err := s.QueueDepth(ctx)
		if err != nil {
			t.Fatalf("QueueDepth: %v", err)
		}
		return d
	}
	zero := map[protocol.Priority]int{protocol.Critical: 0, protocol.High: 0, protocol.Normal: 0, protocol.Low: 0, protocol.Background: 0}
	if d := depth(); !maps.Equal(d, zero) {
		t.Fatalf("QueueDepth of an empty store = %v, want %v", d, zero)
	}
	create(t, s, NewTask("h1", "a", protocol.High))
	create(t, s, NewTask("n1", "b", protocol.Normal))
	create(t, s, NewTask("n2", "a", protocol.Normal))
	create(t, s, NewTask("n3", "a", protocol.Normal))
	h1, _ := claim(t, s, at(1)) // running: not counted
	retry(t, s, h1, at(50))     // retrying: counted
	n1, _ := claim(t, s, at(2))
	n1.State = protocol.StateFailed
	update(t, s, n1, protocol.StateRunning)

	want := maps.Clone(zero)
	want[protocol.High], want[protocol.Normal] = 1, 2
	if d := depth(); !maps.Equal(d, want) {
		t.Errorf("QueueDepth = %v, want %v", d, want)
	}

	w, err := s.Waiting(ctx, "a")
	if err != nil {
		t.Fatalf("Waiting: %v", err)
	}
	if got := ids(w); !slices.Equal(got, []string{"h1", "n2", "n3"}) {
		t.Errorf("Waiting(a) = %v, want [h1 n2 n3]", got)
	}
	if w, _ := s.Waiting(ctx, "b"); len(w) != 0 {
		t.Errorf("Waiting(b) = %v, want none (n1 failed)", ids(w))
	}
	if w, _ := s.Waiting(ctx, "zzz"); len(w) != 0 {
		t.Errorf("Waiting(unknown agent) = %v, want none", ids(w))
	}
}
