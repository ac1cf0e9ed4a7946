package storetest

// The store's lifecycle: recovery, pruning, concurrent use, closing.

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

func testRecover(t *testing.T, s store.Store) {
	for _, id := range []string{"a", "b", "c", "d"} {
		create(t, s, NewTask(id, "echo", protocol.Normal))
	}
	a, _ := claim(t, s, at(1))
	b, _ := claim(t, s, at(1))
	retry(t, s, b, at(100)) // retrying keeps its ReadyAt
	claim(t, s, at(2))      // c
	before := lastSeq(t, s)

	got, err := s.Recover(ctx, at(50))
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if g := ids(got); !slices.Equal(g, []string{"a", "c"}) {
		t.Fatalf("Recover requeued %v, want [a c]", g)
	}
	for _, tr := range got {
		if tr.State != protocol.StateQueued || tr.Attempt != 1 {
			t.Errorf("recovered %s: %s attempt %d, want queued, 1", tr.TaskID, tr.State, tr.Attempt)
		}
		same(t, "recovered record vs GetTask", get(t, s, tr.TaskID), tr)
	}
	evs := events(t, s, before, store.EventFilter{}, 0)
	if len(evs) != 2 || evs[0].TaskID != "a" || evs[1].TaskID != "c" {
		t.Fatalf("Recover's events = %+v, want one each for a and c", evs)
	}
	for _, ev := range evs {
		if ev.State != protocol.StateQueued || ev.Attempt != 1 || !ev.At.Equal(at(50)) {
			t.Errorf("Recover event %+v, want queued attempt 1 at %v", ev, at(50))
		}
	}
	if next, ok, _ := s.NextReadyAt(ctx, at(50)); !ok || !next.Equal(at(100)) {
		t.Errorf("NextReadyAt after Recover = %v %v, want the retry's %v", next, ok, at(100))
	}
	// Requeued tasks keep their place: a, c, then d.
	var order []string
	for i := 0; i < 3; i++ {
		tr, _ := claim(t, s, at(60))
		order = append(order, tr.TaskID)
		if tr.TaskID == a.TaskID && tr.Attempt != 2 {
			t.Errorf("a reclaimed at attempt %d, want 2", tr.Attempt)
		}
	}
	if !slices.Equal(order, []string{"a", "c", "d"}) {
		t.Errorf("claims after Recover = %v, want [a c d]", order)
	}
	claimNone(t, s, at(60))
	if got, _ := s.Recover(ctx, at(70)); len(got) != 3 {
		t.Errorf("second Recover requeued %d, want 3", len(got))
	}
}

func testPrune(t *testing.T, s store.Store) {
	// f1..f6 finish at 1s..6s; q stays queued, r running.
	for i := 1; i <= 6; i++ {
		tr := NewTask(fmt.Sprintf("f%d", i), "echo", protocol.Normal)
		tr.IdempotencyKey = fmt.Sprintf("key-%d", i)
		create(t, s, tr)
	}
	create(t, s, NewTask("q", "echo", protocol.Low))
	for i := 1; i <= 6; i++ {
		tr, _ := claim(t, s, at(0))
		fin := at(i)
		tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
		if i == 3 {
			tr.State = protocol.StateFailed
		}
		update(t, s, tr, protocol.StateRunning)
	}
	create(t, s, NewTask("r", "echo", protocol.Critical))
	claim(t, s, at(0))
	last := lastSeq(t, s)

	prune := func(olderThan time.Time, keep int) int {
		t.Helper()
		n, err := s.Prune(ctx, olderThan, keep)
		if err != nil {
			t.Fatalf("Prune: %v", err)
		}
		return n
	}
	if n := prune(at(1), 0); n != 0 {
		t.Fatalf("Prune(before 1s) removed %d, want 0", n)
	}
	// Older than 4s: f1, f2, f3, but keep the 4 newest (f6..f3): f1, f2.
	if n := prune(at(4), 4); n != 2 {
		t.Fatalf("Prune(4s, keep 4) removed %d, want 2", n)
	}
	for _, id := range []string{"f1", "f2"} {
		if _, err := s.GetTask(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("pruned %s: GetTask err = %v, want ErrNotFound", id, err)
		}
		if evs := events(t, s, 0, store.EventFilter{TaskIDs: []string{id}}, 0); len(evs) != 0 {
			t.Errorf("pruned %s still has %d events", id, len(evs))
		}
	}
	get(t, s, "f3")
	if n := prune(at(100), 2); n != 2 {
		t.Fatalf("Prune(100s, keep 2) removed %d, want 2 (f3, f4)", n)
	}
	if n := prune(at(100), 0); n != 2 {
		t.Fatalf("Prune(100s, keep 0) removed %d, want 2 (f5, f6)", n)
	}
	for _, id := range []string{"q", "r"} {
		get(t, s, id) // unfinished tasks stay whatever their age
		if evs := events(t, s, 0, store.EventFilter{TaskIDs: []string{id}}, 0); len(evs) == 0 {
			t.Errorf("task %s lost its events", id)
		}
	}
	if got, _, _ := s.ListTasks(ctx, store.TaskFilter{}); !slices.Equal(ids(got), []string{"r", "q"}) {
		t.Errorf("ListTasks after Prune = %v, want [r q]", ids(got))
	}
	// Seqs never go back, and pruned keys are free again.
	if n := lastSeq(t, s); n != last {
		t.Errorf("LastSeq after Prune = %d, want %d", n, last)
	}
	again := NewTask("again", "echo", protocol.Normal)
	again.IdempotencyKey = "key-6"
	_, ev := create(t, s, again)
	if ev.Seq != last+1 {
		t.Errorf("next event seq = %d, want %d", ev.Seq, last+1)
	}
}

func testConcurrency(t *testing.T, s store.Store) {
	const producers, perProducer, claimers = 8, 40, 6
	total := producers * perProducer
	var wg sync.WaitGroup
	errs := make(chan error, producers+claimers)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perProducer; i++ {
				tr := NewTask(fmt.Sprintf("p%d-%d", p, i), "echo", protocol.Priority(i%5))
				if _, _, created, err := s.CreateTask(ctx, tr); err != nil || !created {
					errs <- fmt.Errorf("CreateTask(%s): created=%v err=%v", tr.TaskID, created, err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	var seqs []int64
	deadline := time.Now().Add(2 * time.Minute)
	for c := 0; c < claimers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				n := len(claimed)
				mu.Unlock()
				if n >= total {
					return
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("claimed %d of %d tasks before the deadline", n, total)
					return
				}
				tr, started, ok, err := s.Claim(ctx, at(0))
				if err != nil {
					errs <- fmt.Errorf("Claim: %v", err)
					return
				}
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				ev, err := started.Wait()
				if err != nil {
					errs <- fmt.Errorf("Claim of %s did not commit: %v", tr.TaskID, err)
					return
				}
				tr.State = protocol.StateSucceeded
				ev2, err := s.UpdateTask(ctx, tr, protocol.StateRunning)
				if err != nil {
					errs <- fmt.Errorf("UpdateTask(%s): %v", tr.TaskID, err)
					return
				}
				mu.Lock()
				claimed[tr.TaskID]++
				seqs = append(seqs, ev.Seq, ev2.Seq)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(claimed) != total {
		t.Fatalf("claimed %d distinct tasks, want %d", len(claimed), total)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("task %s claimed %d times", id, n)
		}
	}
	all := events(t, s, 0, store.EventFilter{}, 0)
	if len(all) != 3*total {
		t.Fatalf("%d events, want %d", len(all), 3*total)
	}
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: seqs must be unique and gap-free", i, ev.Seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	if len(slices.Compact(seqs)) != 2*total {
		t.Errorf("the seqs returned to callers repeat")
	}
	if n := lastSeq(t, s); n != int64(3*total) {
		t.Errorf("LastSeq = %d, want %d", n, 3*total)
	}
	if d, _ := s.QueueDepth(ctx); d[protocol.Normal] != 0 {
		t.Errorf("QueueDepth after all ran = %v", d)
	}
}

func testClosed(t *testing.T, s store.Store) {
	create(t, s, NewTask("t", "echo", protocol.Normal))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	tr := NewTask("u", "echo", protocol.Normal)
	calls := map[string]error{}
	_, _, _, calls["CreateTask"] = s.CreateTask(ctx, tr)
	_, calls["UpdateTask"] = s.UpdateTask(ctx, tr, protocol.StateQueued)
	_, calls["AppendProgress"] = s.AppendProgress(ctx, "t", 1, 0.5, at(1))
	_, calls["GetTask"] = s.GetTask(ctx, "t")
	_, _, calls["ListTasks"] = s.ListTasks(ctx, store.TaskFilter{})
	_, _, _, calls["Claim"] = s.Claim(ctx, at(1))
	_, _, calls["NextReadyAt"] = s.NextReadyAt(ctx, at(1))
	_, calls["QueueDepth"] = s.QueueDepth(ctx)
	_, calls["Waiting"] = s.Waiting(ctx, "echo")
	_, calls["Events"] = s.Events(ctx, 0, store.EventFilter{}, 0)
	_, calls["LastSeq"] = s.LastSeq(ctx)
	_, calls["Recover"] = s.Recover(ctx, at(1))
	_, calls["Prune"] = s.Prune(ctx, at(1), 0)
	calls["PutAgent"] = s.PutAgent(ctx, store.AgentRecord{Agent: protocol.Agent{Name: "x"}})
	_, calls["GetAgent"] = s.GetAgent(ctx, "x")
	_, calls["ListAgents"] = s.ListAgents(ctx)
	calls["DeleteAgent"] = s.DeleteAgent(ctx, "x")
	calls["Close"] = s.Close()
	for name, err := range calls {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

// testPruneCap: Prune(AnyAge, n) keeps the n newest finished tasks whatever
// their age (--retain-max) and never an unfinished one; it removes more
// tasks than one of the SQLite store's batches.
func testPruneCap(t *testing.T, s store.Store) {
	const finished, limit = 1200, 100
	create(t, s, NewTask("q", "echo", protocol.Low))
	create(t, s, NewTask("r", "echo", protocol.Critical))
	claim(t, s, at(0)) // r runs
	retry := NewTask("y", "echo", protocol.Critical)
	create(t, s, retry)
	y, _ := claim(t, s, at(0))
	next := at(1 << 20)
	y.State, y.NextAttemptAt, y.ReadyAt = protocol.StateRetrying, &next, next
	update(t, s, y, protocol.StateRunning)
	// Finish in an order unlike creation: task i finishes at (i*7)%n s.
	for i := range finished {
		create(t, s, NewTask(fmt.Sprintf("f%04d", i), "echo", protocol.Normal))
	}
	for range finished {
		tr, _ := claim(t, s, at(0))
		var i int
		fmt.Sscanf(tr.TaskID, "f%d", &i)
		fin := at(1 + (i*7)%finished)
		tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
		update(t, s, tr, protocol.StateRunning)
	}
	n, err := s.Prune(ctx, store.AnyAge, limit)
	if err != nil {
		t.Fatalf("Prune(AnyAge, %d): %v", limit, err)
	}
	if n != finished-limit {
		t.Fatalf("Prune(AnyAge, %d) removed %d, want %d", limit, n, finished-limit)
	}
	var want []string
	for i := range finished {
		if 1+(i*7)%finished > finished-limit {
			want = append(want, fmt.Sprintf("f%04d", i))
		}
	}
	var got []string
	for cursor := ""; ; {
		page, next, err := s.ListTasks(ctx, store.TaskFilter{State: protocol.StateSucceeded, Cursor: cursor, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page)...)
		if cursor = next; cursor == "" {
			break
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("after Prune(AnyAge, %d): %d finished tasks left, want the %d newest", limit, len(got), len(want))
	}
	for _, id := range []string{"q", "r", "y"} {
		get(t, s, id) // unfinished tasks stay
	}
	evs := events(t, s, 0, store.EventFilter{}, 0)
	for _, ev := range evs {
		if ev.State == protocol.StateSucceeded && !slices.Contains(want, ev.TaskID) {
			t.Fatalf("pruned %s left its event %d", ev.TaskID, ev.Seq)
		}
	}
	if n, err := s.Prune(ctx, store.AnyAge, limit); err != nil || n != 0 {
		t.Fatalf("second Prune(AnyAge, %d) = %d, %v; want 0", limit, n, err)
	}
	if n, err := s.Prune(ctx, store.AnyAge, 0); err != nil || n != limit {
		t.Fatalf("Prune(AnyAge, 0) = %d, %v; want %d", n, err, limit)
	}
	get(t, s, "q")
}
