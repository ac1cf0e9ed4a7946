//go:build unix

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Tasks created, claimed and finished in one transaction are inserted once,
// in their final state (sqlite_rowbuf.go): what reads return afterwards,
// tasks and events, is what they return for the same lives written over
// separate transactions. Every way a buffered row can end is here: merged
// with a success, a retry and a failure; a claim that is not finished in
// the transaction; a finish of another claim (refused, the rows flushed
// first); progress (the rows flushed first); an idempotency key looked up
// among rows not yet inserted; and a task whose input is kept apart (not
// buffered).
func TestCreateClaimFinishInOneTransaction(t *testing.T) {
	ctx := context.Background()
	var tasks []TaskRecord
	for _, tr := range claimTasks() {
		switch {
		case len(tr.Input) > keepInput: // claimed by a read, which waits for its commit
		case tr.IdempotencyKey != "":
			// First: its creation, looking its key up, inserts the rows
			// buffered before it.
			tr.Priority = protocol.Critical
			tasks = append([]TaskRecord{tr}, tasks...)
		case !inputInline(tr.Input):
			// Not buffered: claimed last, after the buffered rows have
			// seen every way to end.
			tr.Priority = protocol.Background
			tasks = append(tasks, tr)
		default:
			tr.Priority = protocol.Critical
			tasks = append(tasks, tr)
		}
	}
	fin := time.Unix(1_900_000_000, 0).UTC()
	claimAt := fin.Add(-time.Second)
	// outcome is what the run of the i-th task claimed ends with (the
	// first four are buffered); ok is false for a task left running, and
	// refused for a finish of another claim. The fourth is given progress
	// first: that, a write of a buffered row, inserts the rows.
	outcome := func(i int, tr TaskRecord) (out TaskRecord, ok, refused bool) {
		out = tr
		switch i {
		case 0, 5:
			out.State, out.FinishedAt = protocol.StateSucceeded, &fin
			out.Result = &protocol.ExecutionResult{Output: []byte(fmt.Sprintf(`{"i":%d}`, i)), KPIs: map[string]float64{"k": 1.5}}
		case 1:
			at := fin.Add(time.Hour)
			out.State, out.ReadyAt, out.NextAttemptAt = protocol.StateRetrying, at, &at
			out.Error = protocol.NewTaskError(protocol.CodeTrap, "boom")
			out.AttemptErrors = []protocol.TaskError{*out.Error}
		case 2:
			out.State, out.FinishedAt = protocol.StateFailed, &fin
			out.Error = protocol.NewTaskError(protocol.CodeTimeout, "slow <op>")
			out.AttemptErrors = []protocol.TaskError{*out.Error}
			out.Labels = map[string]string{"after": "run"}
		case 3:
			other := fin
			out.StartedAt, out.State, out.FinishedAt = &other, protocol.StateSucceeded, &fin
			return out, true, true
		case 4:
			return out, false, false
		}
		return out, true, false
	}
	// live runs every task's life on s: created, claimed, given progress
	// and finished; in one transaction, or each step committed in turn.
	live := func(s *SQLite, oneTx bool) (claimed []TaskRecord) {
		var starts []*Pending
		var ends []chan error
		finish := func(i int, tr TaskRecord) {
			out, ok, refused := outcome(i, tr)
			if !ok {
				return
			}
			ch := make(chan error, 1)
			ends = append(ends, ch)
			go func() {
				_, err := s.UpdateTask(ctx, out, protocol.StateRunning)
				if refused && errors.Is(err, ErrStateChanged) {
					err = nil
				} else if refused {
					err = fmt.Errorf("the finish of another claim of %s: %v; want ErrStateChanged", out.TaskID, err)
				}
				ch <- err
			}()
		}
		handed := func(n int) func() bool {
			return func() bool {
				s.w.qmu.Lock()
				defer s.w.qmu.Unlock()
				return len(s.w.pending)+len(s.w.lane) >= n
			}
		}
		if oneTx {
			progress := 0
			err := s.write(ctx, func(w *writer) error {
				for _, tr := range tasks {
					tr, args, ev, payload, rec := taskWrite(t, tr)
					if _, err := w.createTask(&tr, args, &ev, payload, rec); err != nil {
						return err
					}
				}
				for i := range tasks {
					tr, p, ok, err := s.Claim(ctx, claimAt)
					if err != nil || !ok {
						return fmt.Errorf("claim %d: %v %v", i, ok, err)
					}
					claimed, starts = append(claimed, tr), append(starts, p)
					if i == 3 {
						// Progress of a buffered task: the rows go in first.
						go s.AppendProgress(ctx, tr.TaskID, 1, 0.5, claimAt)
						progress = 1
						waitFor(t, "the progress to be handed over", handed(len(starts)+len(ends)+progress))
					}
					finish(i, tr)
					waitFor(t, "the finish to be handed over", handed(len(starts)+len(ends)+progress))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		} else {
			for _, tr := range tasks {
				if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tasks {
				tr, p, ok, err := s.Claim(ctx, claimAt)
				if err != nil || !ok {
					t.Fatalf("claim %d: %v %v", i, ok, err)
				}
				if _, err := p.Wait(); err != nil {
					t.Fatal(err)
				}
				if i == 3 {
					if _, err := s.AppendProgress(ctx, tr.TaskID, 1, 0.5, claimAt); err != nil {
						t.Fatal(err)
					}
				}
				claimed, starts = append(claimed, tr), append(starts, p)
				n := len(ends)
				finish(i, tr)
				if len(ends) > n { // one at a time
					if err := <-ends[n]; err != nil {
						t.Fatal(err)
					}
					ends[n] <- nil
				}
			}
		}
		for _, p := range starts {
			if _, err := p.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		for _, ch := range ends {
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
		return claimed
	}
	type state struct {
		tasks   []TaskRecord
		claimed []TaskRecord
		events  map[string][]string
		pruned  int
		rows    int // events rows
		evs     int // events in them
		stats   WriteStats
	}
	run := func(oneTx bool) state {
		s, err := OpenSQLite(ctx, t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		before := s.WriteStats()
		var st state
		st.claimed = live(s, oneTx)
		st.stats = s.WriteStats()
		st.stats.Commits -= before.Commits
		st.stats.Paired -= before.Paired
		st.events = map[string][]string{}
		for _, tr := range tasks {
			st.tasks = append(st.tasks, mustGet(t, s, tr.TaskID))
			evs, err := s.Events(ctx, 0, EventFilter{TaskIDs: []string{tr.TaskID}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				ev.Seq = 0
				if ev.State == protocol.StateRetrying {
					ev.At = time.Time{} // UpdateTask's clock
				}
				b, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				st.events[tr.TaskID] = append(st.events[tr.TaskID], string(b))
			}
		}
		// The key finds its task, whichever way it was written.
		again := tasks[0]
		again.TaskID = "another"
		if got, _, created, err := s.CreateTask(ctx, again); err != nil || created || got.TaskID != tasks[0].TaskID {
			t.Errorf("creating again with key %q: %s, created %v, %v; want %s", again.IdempotencyKey, got.TaskID, created, err, tasks[0].TaskID)
		}
		st.rows, st.evs = checkEventPages(t, s)
		// Prune finds the finished ones (done_at).
		if st.pruned, err = s.Prune(ctx, AnyAge, 0); err != nil {
			t.Fatal(err)
		}
		return st
	}
	want, got := run(false), run(true)
	for i := range want.tasks {
		if !reflect.DeepEqual(got.tasks[i], want.tasks[i]) {
			t.Errorf("task %s written in one transaction:\n%+v\nover several:\n%+v", tasks[i].TaskID, got.tasks[i], want.tasks[i])
		}
	}
	if !reflect.DeepEqual(got.events, want.events) {
		t.Errorf("events written in one transaction:\n%v\nover several:\n%v", got.events, want.events)
	}
	if got.rows >= got.evs || want.rows != want.evs {
		t.Errorf("events rows: %d for %d events in one transaction, %d for %d over several; want fewer rows in one (a task's events together), as many over several",
			got.rows, got.evs, want.rows, want.evs)
	}
	if got.stats.Commits != 1 {
		t.Errorf("%d commits; want the one transaction", got.stats.Commits)
	}
	if got.stats.Once != 2 || want.stats.Once != 0 {
		t.Errorf("%d tasks written once in one transaction, %d over several; want the 2 finished of buffered rows, and none", got.stats.Once, want.stats.Once)
	}
	if got.stats.Paired != 4 {
		t.Errorf("%d claims merged with their finish; want 4 (3 of buffered rows)", got.stats.Paired)
	}
	if got.pruned != want.pruned || got.pruned != 3 {
		t.Errorf("Prune of every finished task removed %d written in one transaction, %d over several; want 3", got.pruned, want.pruned)
	}
	if id := got.claimed[4].TaskID; mustState(got.tasks, id) != protocol.StateRunning {
		t.Errorf("task %s, claimed, not finished, in the transaction: %s; want running", id, mustState(got.tasks, id))
	}
}

// taskWrite is what CreateTask hands the writer for a new task tr.
func taskWrite(t *testing.T, tr TaskRecord) (TaskRecord, []any, protocol.TaskEvent, string, *TaskRecord) {
	t.Helper()
	if err := checkNewTask(&tr, time.Now); err != nil {
		t.Fatal(err)
	}
	args, err := insertArgs(nil, &tr)
	if err != nil {
		t.Fatal(err)
	}
	ev := EventFor(&tr, tr.CreatedAt)
	payload, err := encodeEvent(&ev)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recordOf(&tr, args)
	if err != nil {
		t.Fatal(err)
	}
	return tr, args, ev, payload, rec
}

func mustState(tasks []TaskRecord, id string) protocol.State {
	for _, tr := range tasks {
		if tr.TaskID == id {
			return tr.State
		}
	}
	return ""
}

// The writes of a running task pass the creations pending before them
// (hand): a claim and finish handed over after a creation still run first,
// in their order, and merge.
func TestRunningTaskWritesPassPendingOnes(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tasks := claimTasks()
	a, b := tasks[0], tasks[2]
	if _, _, _, err := s.CreateTask(ctx, a); err != nil {
		t.Fatal(err)
	}
	hold, release := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(w *writer) error { close(hold); <-release; return nil })
	<-hold
	handed := func(n int) func() bool {
		return func() bool {
			s.w.qmu.Lock()
			defer s.w.qmu.Unlock()
			return len(s.w.pending)+len(s.w.lane) == n
		}
	}
	created := make(chan protocol.TaskEvent, 1)
	go func() {
		_, ev, _, err := s.CreateTask(ctx, b)
		if err != nil {
			t.Error(err)
		}
		created <- ev
	}()
	waitFor(t, "the creation to be handed over", handed(1))
	claimed, started, ok, err := s.Claim(ctx, time.Now())
	if err != nil || !ok || claimed.TaskID != a.TaskID {
		t.Fatalf("Claim = %s, %v, %v; want %s", claimed.TaskID, ok, err, a.TaskID)
	}
	fin := time.Now().UTC()
	claimed.State, claimed.FinishedAt = protocol.StateSucceeded, &fin
	claimed.Result = &protocol.ExecutionResult{Output: []byte(`1`), KPIs: map[string]float64{}}
	finished := make(chan protocol.TaskEvent, 1)
	go func() {
		ev, err := s.UpdateTask(ctx, claimed, protocol.StateRunning)
		if err != nil {
			t.Error(err)
		}
		finished <- ev
	}()
	waitFor(t, "the finish to be handed over", handed(3))
	before := s.WriteStats().Paired
	close(release)
	run, err := started.Wait()
	if err != nil {
		t.Fatal(err)
	}
	end, queued := <-finished, <-created
	if !(run.Seq < end.Seq && end.Seq < queued.Seq) {
		t.Errorf("seqs: %s running %d, finished %d, %s queued %d; want the running task's writes first, in order",
			a.TaskID, run.Seq, end.Seq, b.TaskID, queued.Seq)
	}
	if p := s.WriteStats().Paired - before; p != 1 {
		t.Errorf("%d claims merged with their finish; want 1", p)
	}
	if got := mustGet(t, s, a.TaskID); got.State != protocol.StateSucceeded {
		t.Errorf("%s: %s; want succeeded", a.TaskID, got.State)
	}
}

// checkEventPages reads every event after every seq, whole and in pages of
// 2, and checks them against one read of all: a row holding several events
// (flushEvents) is read from its middle too. It returns the rows and
// events stored.
func checkEventPages(t *testing.T, s *SQLite) (rows, evs int) {
	t.Helper()
	ctx := context.Background()
	all, err := s.Events(ctx, 0, EventFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d; want seqs 1, 2, 3...", i, ev.Seq)
		}
	}
	for after := range int64(len(all)) {
		got, err := s.Events(ctx, after, EventFilter{}, 0)
		if err != nil || !reflect.DeepEqual(got, all[after:]) {
			t.Fatalf("Events after %d = %d events, %v; want the %d after it", after, len(got), err, len(all)-int(after))
		}
		var paged []protocol.TaskEvent
		for next := after; ; {
			page, err := s.Events(ctx, next, EventFilter{}, 2)
			if err != nil || len(page) > 2 {
				t.Fatalf("a page of 2 after %d: %d events, %v", next, len(page), err)
			}
			if len(page) == 0 {
				break
			}
			paged, next = append(paged, page...), page[len(page)-1].Seq
		}
		if !reflect.DeepEqual(paged, all[after:]) {
			t.Fatalf("Events after %d in pages of 2 = %d events; want %d", after, len(paged), len(all)-int(after))
		}
	}
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows, len(all)
}

// A write of a buffered task that is not its claim or merged finish (here
// a cancel while it waits, in the transaction that creates it) inserts the
// buffered rows first and then updates the row in the file.
func TestCancelOfBufferedTask(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tr, args, ev, payload, rec := newTaskWrite(t)
	cancelled := make(chan error, 1)
	err := s.write(ctx, func(w *writer) error {
		if _, err := w.createTask(&tr, args, &ev, payload, rec); err != nil {
			return err
		}
		if w.buffered("a") == nil {
			return fmt.Errorf("the new task's row is not buffered")
		}
		out := tr
		now := time.Now().UTC()
		out.State, out.FinishedAt = protocol.StateCancelled, &now
		go func() { _, err := s.UpdateTask(ctx, out, protocol.StateQueued); cancelled <- err }()
		waitFor(t, "the cancel to be handed over", func() bool {
			s.w.qmu.Lock()
			defer s.w.qmu.Unlock()
			return len(s.w.pending) == 1
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-cancelled; err != nil {
		t.Fatalf("cancel in the creating transaction: %v", err)
	}
	if got := mustGet(t, s, "a"); got.State != protocol.StateCancelled {
		t.Errorf("task: %s; want cancelled", got.State)
	}
	if _, _, ok, err := s.Claim(ctx, time.Now()); ok || err != nil {
		t.Errorf("Claim after the cancel = %v, %v; want nothing to claim", ok, err)
	}
	evs, err := s.Events(ctx, 0, EventFilter{TaskIDs: []string{"a"}}, 0)
	if err != nil || len(evs) != 2 || evs[0].State != protocol.StateQueued || evs[1].State != protocol.StateCancelled {
		t.Errorf("events: %+v, %v; want queued, cancelled", evs, err)
	}
	if st := s.WriteStats(); st.Commits != 1 || st.Once != 0 {
		t.Errorf("%d commits, %d tasks written once; want 1 and 0", st.Commits, st.Once)
	}
}

// While the writer would wait for a transaction's unfinished tasks, it
// inserts the rows and events of those that finished (flushDone): they read
// back as if inserted at the commit, and the unfinished one stays buffered
// until then.
func TestFinishedRowsInsertedWhileWaiting(t *testing.T) {
	defer func(n int) { ripeFlush = n }(ripeFlush)
	ripeFlush = 1
	ctx := context.Background()
	s := openTemp(t)
	var ends []chan error
	var claimed []TaskRecord
	err := s.write(ctx, func(w *writer) error {
		for i := range 5 {
			tr, args, ev, payload, rec := taskWrite(t, TaskRecord{Task: protocol.Task{TaskID: fmt.Sprintf("t%d", i), Agent: "echo", CreatedAt: time.Unix(1, 0)}})
			if _, err := w.createTask(&tr, args, &ev, payload, rec); err != nil {
				return err
			}
		}
		for i := range 5 {
			tr, _, ok, err := s.Claim(ctx, time.Unix(2, 0))
			if err != nil || !ok {
				return fmt.Errorf("claim %d: %v %v", i, ok, err)
			}
			claimed = append(claimed, tr)
			if i >= 3 {
				continue // left running
			}
			fin := time.Unix(3, 0).UTC()
			tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
			tr.Result = &protocol.ExecutionResult{Output: []byte(fmt.Sprint(i)), KPIs: map[string]float64{}}
			ch := make(chan error, 1)
			ends = append(ends, ch)
			go func() { _, err := s.UpdateTask(ctx, tr, protocol.StateRunning); ch <- err }()
		}
		waitFor(t, "the finishes to be handed over", func() bool {
			s.w.qmu.Lock()
			defer s.w.qmu.Unlock()
			return len(s.w.lane) == 8
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range ends {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.WriteStats(); st.Commits != 1 || st.Once != 3 {
		t.Errorf("%d commits, %d tasks written once; want 1 and 3", st.Commits, st.Once)
	}
	want := map[string]string{"t0": "queued running succeeded", "t1": "queued running succeeded", "t2": "queued running succeeded",
		"t3": "queued running", "t4": "queued running"}
	for id, states := range want {
		got := mustGet(t, s, id)
		evs, err := s.Events(ctx, 0, EventFilter{TaskIDs: []string{id}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for i, ev := range evs {
			seen = append(seen, string(ev.State))
			if i > 0 && ev.Seq != evs[i-1].Seq+1 {
				t.Errorf("%s: seqs %d then %d; want a task's events in a transaction together", id, evs[i-1].Seq, ev.Seq)
			}
		}
		if strings.Join(seen, " ") != states || string(got.State) != strings.Fields(states)[len(strings.Fields(states))-1] {
			t.Errorf("%s: %s, events %v; want events %s", id, got.State, seen, states)
		}
	}
	// The finished tasks' events were inserted before the running ones'.
	if evs, err := s.Events(ctx, 9, EventFilter{}, 0); err != nil || len(evs) != 4 || evs[0].TaskID != "t3" || evs[2].TaskID != "t4" {
		t.Errorf("events after 9: %+v, %v; want t3's two, then t4's", evs, err)
	}
	if rows, evs := checkEventPages(t, s); rows != 5 || evs != 13 {
		t.Errorf("%d events rows for %d events; want 5 for 13", rows, evs)
	}
}
