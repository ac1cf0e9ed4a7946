//go:build unix

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// claimTasks are tasks of every shape a record can take: no input, an
// empty one, inputs kept in the row, apart, and too large for the queue to
// keep; labels or none; an idempotency key; a fuel quota; times with a
// monotonic reading and a zone.
func claimTasks() []TaskRecord {
	now := time.Now().In(time.FixedZone("X", 3600))
	fuel := uint64(1234)
	var out []TaskRecord
	for i, in := range [][]byte{nil, {}, []byte(`{"n":1}`), bytes.Repeat([]byte{0, 1, 2}, 700), bytes.Repeat([]byte("x"), keepInput+1)} {
		t := TaskRecord{Task: protocol.Task{TaskID: fmt.Sprintf("t%d", i), Agent: "echo", Priority: protocol.Priority(i % 5),
			MaxRetries: i, TimeoutMs: int64(1000 * i), CreatedAt: now.Add(time.Duration(i) * time.Nanosecond)},
			Input: in, InputIsJSON: i == 2, Backoff: protocol.Backoff{InitialMs: 7, MaxMs: 70, Multiplier: 1.5, Jitter: 0.25},
			Quota: protocol.Quota{MemoryMB: 32, OutputBytes: 99}, ReadyAt: now.Add(-time.Second)}
		switch i {
		case 1:
			t.Labels = map[string]string{"a": "b", "c": ""}
			t.IdempotencyKey, t.ParamsHash = "key", "hash"
		case 2:
			t.Quota.Fuel = &fuel
			t.Labels = map[string]string{}
		}
		out = append(out, t)
	}
	// What JSON would not keep as it is: labels that are not UTF-8, and
	// the &<> it escapes; and a task created with an error.
	odd := out[2]
	odd.TaskID = "t5"
	odd.Quota.Fuel = nil
	odd.Labels = map[string]string{"bad\xff": "v\xfe", "html": "<a&b>"}
	failed := out[3]
	failed.TaskID = "t6"
	failed.Error = protocol.NewTaskError(protocol.CodeTrap, "made <so>")
	return append(out, odd, failed)
}

// A claim from the record the queue kept (tasks created by this process)
// returns exactly what a claim that reads the row returns (tasks found in
// the file at open).
func TestClaimFromKeptRecordEqualsRead(t *testing.T) {
	ctx := context.Background()
	hot, err := OpenSQLite(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer hot.Close()
	coldDir := t.TempDir()
	cold, err := OpenSQLite(ctx, coldDir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range claimTasks() {
		for _, s := range []*SQLite{hot, cold} {
			if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	cold.Close()
	if cold, err = OpenSQLite(ctx, coldDir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer cold.Close()

	now := time.Now()
	kept := 0
	for range claimTasks() {
		hot.w.qmu.Lock()
		if e, _ := hot.w.queue.pop(now); e != nil {
			if e.rec != nil {
				kept++
			}
			hot.w.queue.restore(e)
		}
		hot.w.qmu.Unlock()
		a, pa, ok, err := hot.Claim(ctx, now)
		if err != nil || !ok {
			t.Fatalf("Claim: %v %v", ok, err)
		}
		b, pb, ok, err := cold.Claim(ctx, now)
		if err != nil || !ok {
			t.Fatalf("Claim: %v %v", ok, err)
		}
		eva, erra := pa.Wait()
		evb, errb := pb.Wait()
		if erra != nil || errb != nil {
			t.Fatalf("claims did not commit: %v, %v", erra, errb)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("task %s: claimed from the kept record\n%#v\nclaimed by reading the row\n%#v", a.TaskID, a, b)
		}
		if !reflect.DeepEqual(eva, evb) {
			t.Errorf("task %s: running events differ\n%#v\n%#v", a.TaskID, eva, evb)
		}
		if got := mustGet(t, hot, a.TaskID); !reflect.DeepEqual(got, a) {
			t.Errorf("task %s: claimed\n%#v\nread back\n%#v", a.TaskID, a, got)
		}
	}
	if want := len(claimTasks()) - 1; kept != want {
		t.Errorf("%d of the claims used a kept record, want %d (all but the large input)", kept, want)
	}
}

func mustGet(t *testing.T, s Store, id string) TaskRecord {
	t.Helper()
	tr, err := s.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// A write for a waiting task takes it from the queue as it is handed over:
// a claim ordered after it cannot take the task, and the write's failure
// (here, a wrong expected state) puts it back.
func TestUpdateOfWaitingTaskOrdersBeforeClaims(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tasks := claimTasks()[:2]
	for _, tr := range tasks {
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the writer so that the cancel stays pending while claims run.
	hold, release := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(w *writer) error { close(hold); <-release; return nil })
	<-hold
	cancel := tasks[1]
	cancel.State = protocol.StateCancelled
	done := make(chan error, 1)
	go func() { _, err := s.UpdateTask(ctx, cancel, protocol.StateQueued); done <- err }()
	waitFor(t, "the cancel to be handed over", func() bool {
		s.w.qmu.Lock()
		defer s.w.qmu.Unlock()
		return len(s.w.pending) == 1
	})
	got, started, ok, err := s.Claim(ctx, time.Now())
	if err != nil || !ok || got.TaskID != tasks[0].TaskID {
		t.Fatalf("Claim = %s %v %v; want %s", got.TaskID, ok, err, tasks[0].TaskID)
	}
	if _, _, ok, _ := s.Claim(ctx, time.Now()); ok {
		t.Fatal("a claim took the task being cancelled")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := started.Wait(); err != nil {
		t.Fatal(err)
	}
	if st := mustGet(t, s, cancel.TaskID).State; st != protocol.StateCancelled {
		t.Fatalf("cancelled task is %s", st)
	}

	// An update expecting the wrong state fails and leaves the task waiting.
	third := claimTasks()[2]
	if _, _, _, err := s.CreateTask(ctx, third); err != nil {
		t.Fatal(err)
	}
	third.State = protocol.StateFailed
	if _, err := s.UpdateTask(ctx, third, protocol.StateRetrying); !errors.Is(err, ErrStateChanged) {
		t.Fatalf("UpdateTask expecting retrying: %v, want ErrStateChanged", err)
	}
	got, started, ok, err = s.Claim(ctx, time.Now())
	if err != nil || !ok || got.TaskID != third.TaskID {
		t.Fatalf("Claim after a failed update = %s %v %v; want %s", got.TaskID, ok, err, third.TaskID)
	}
	if _, err := started.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A claim whose task was created in a batch that failed loses its task:
// the claim fails alone, and the tasks the pending claims took are not
// handed out again by the reload.
func TestClaimAfterFailedBatch(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tasks := claimTasks()
	if _, _, _, err := s.CreateTask(ctx, tasks[0]); err != nil {
		t.Fatal(err)
	}
	// One batch: create tasks[1], which a claim takes before the batch
	// fails, and a claim of tasks[0] handed over during the same batch.
	b := tasks[1]
	checkNewTask(&b, time.Now)
	args, _ := insertArgs(nil, &b)
	rec, _ := recordOf(&b, args)
	ev := EventFor(&b, b.CreatedAt)
	payload, _ := encodeEvent(&ev)
	type claimed struct {
		t  TaskRecord
		p  *Pending
		ok bool
	}
	var claims []claimed
	err := s.write(ctx, func(w *writer) error {
		if _, err := w.createTask(&b, args, &ev, payload, rec); err != nil {
			return err
		}
		// Claims from another goroutine, as workers would, while the
		// batch runs.
		ch := make(chan claimed)
		go func() {
			for range 2 {
				t, p, ok, err := s.Claim(ctx, time.Now())
				if err != nil {
					panic(err)
				}
				ch <- claimed{t, p, ok}
			}
			close(ch)
		}()
		for c := range ch {
			claims = append(claims, c)
		}
		return abort(errors.New("the disk is full"))
	})
	if err == nil {
		t.Fatal("the batch committed")
	}
	if len(claims) != 2 || !claims[0].ok || !claims[1].ok {
		t.Fatalf("claims: %+v", claims)
	}
	for _, c := range claims {
		_, err := c.p.Wait()
		switch c.t.TaskID {
		case b.TaskID:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("claim of the task rolled back: %v, want not found", err)
			}
		default:
			if err != nil {
				t.Errorf("claim of %s: %v", c.t.TaskID, err)
			}
		}
	}
	if _, _, ok, _ := s.Claim(ctx, time.Now()); ok {
		t.Error("the reload handed out a task a pending claim had taken")
	}
	if tr := mustGet(t, s, tasks[0].TaskID); tr.State != protocol.StateRunning {
		t.Errorf("task %s is %s, want running", tr.TaskID, tr.State)
	}
}

// Close commits the claims still pending, which nobody waits for.
func TestCloseCommitsPendingClaims(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSQLite(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tasks := claimTasks()[:3]
	for _, tr := range tasks {
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	hold, release := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(w *writer) error { close(hold); <-release; return nil })
	<-hold
	var ps []*Pending
	for range tasks {
		_, p, ok, err := s.Claim(ctx, time.Now())
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		ps = append(ps, p)
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if _, err := p.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	s, err = OpenSQLite(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tr := range tasks {
		if got := mustGet(t, s, tr.TaskID); got.State != protocol.StateRunning || got.Attempt != 1 {
			t.Errorf("task %s after Close: %s attempt %d, want running 1", tr.TaskID, got.State, got.Attempt)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A claim and the finish of its run in one batch make one row update: the
// row goes from queued to the outcome, both events are stored in order, and
// what is read back is what two updates would have left.
func TestClaimAndFinishInOneBatch(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tasks := claimTasks()[:3]
	for _, tr := range tasks {
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	hold, release := make(chan struct{}), make(chan struct{})
	go s.write(ctx, func(w *writer) error { close(hold); <-release; return nil })
	<-hold
	type result struct {
		ev  protocol.TaskEvent
		err error
	}
	var claimed []TaskRecord
	var starts []*Pending
	var finishes []chan result
	fin := time.Now().UTC()
	for i := range tasks {
		tr, p, ok, err := s.Claim(ctx, time.Now())
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		claimed, starts = append(claimed, tr), append(starts, p)
		out := tr
		switch i {
		case 0:
			out.State, out.FinishedAt = protocol.StateSucceeded, &fin
			out.Result = &protocol.ExecutionResult{Output: []byte(`{"ok":1}`), KPIs: map[string]float64{}}
		case 1:
			at := fin.Add(time.Hour)
			out.State, out.ReadyAt, out.NextAttemptAt = protocol.StateRetrying, at, &at
			out.Error = protocol.NewTaskError(protocol.CodeTrap, "boom")
			out.AttemptErrors = []protocol.TaskError{*out.Error}
		case 2:
			// Another claim's outcome: refused, and the batch with it.
			other := fin
			out.StartedAt, out.State, out.FinishedAt = &other, protocol.StateSucceeded, &fin
		}
		ch := make(chan result, 1)
		finishes = append(finishes, ch)
		go func() { ev, err := s.UpdateTask(ctx, out, protocol.StateRunning); ch <- result{ev, err} }()
		waitFor(t, "the finish to be handed over", func() bool {
			s.w.qmu.Lock()
			defer s.w.qmu.Unlock()
			return len(s.w.pending)+len(s.w.lane) == 2*(i+1)
		})
	}
	close(release)
	for i := range tasks {
		started, err := starts[i].Wait()
		r := <-finishes[i]
		if i == 2 {
			if !errors.Is(r.err, ErrStateChanged) || err != nil {
				t.Fatalf("finish of another claim: %v (claim: %v); want ErrStateChanged and the claim committed", r.err, err)
			}
			continue
		}
		if err != nil || r.err != nil {
			t.Fatalf("task %d: claim %v, finish %v", i, err, r.err)
		}
		if r.ev.Seq <= started.Seq {
			t.Errorf("task %d: running event %d, finish event %d: out of order", i, started.Seq, r.ev.Seq)
		}
	}
	if p := s.WriteStats().Paired; p != 2 {
		t.Errorf("Paired = %d, want 2 (not the finish of another claim)", p)
	}
	got := mustGet(t, s, claimed[0].TaskID)
	if got.State != protocol.StateSucceeded || got.Attempt != 1 || got.StartedAt == nil || !got.StartedAt.Equal(*claimed[0].StartedAt) ||
		string(got.Result.Output) != `{"ok":1}` {
		t.Errorf("succeeded task read back: %+v", got)
	}
	got = mustGet(t, s, claimed[1].TaskID)
	if got.State != protocol.StateRetrying || got.Attempt != 1 || len(got.AttemptErrors) != 1 {
		t.Errorf("retrying task read back: %+v", got)
	}
	if d, _ := s.QueueDepth(ctx); d[claimed[1].Priority] != 1 {
		t.Errorf("the retry is not queued: %v", d)
	}
	got = mustGet(t, s, claimed[2].TaskID)
	if got.State != protocol.StateRunning || got.Attempt != 1 {
		t.Errorf("task whose finish was refused: %s attempt %d, want running 1", got.State, got.Attempt)
	}
	evs, err := s.Events(ctx, 0, EventFilter{TaskIDs: []string{claimed[0].TaskID, claimed[1].TaskID, claimed[2].TaskID}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, ev := range evs {
		seen = append(seen, fmt.Sprintf("%s:%s", ev.TaskID, ev.State))
	}
	want := []string{"t0:queued", "t1:queued", "t2:queued"}
	if len(evs) != 8 || fmt.Sprint(seen[:3]) != fmt.Sprint(want) {
		t.Errorf("events %v", seen)
	}
}

// The log is copied into fabric.db by the checkpointer, not by a commit:
// the writer's connection has SQLite's automatic checkpoint turned off.
func TestCheckpointerCopiesTheLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSQLite(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var auto int
	if err := s.w.conn.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("the writer's wal_autocheckpoint = %d, %v; want 0", auto, err)
	}
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, dbName))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for i := range 200 {
		tr := claimTasks()[2]
		tr.TaskID = fmt.Sprintf("c%d", i)
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a checkpoint to copy the tasks into fabric.db", func() bool {
		return s.cp.runs.Load() > 0 && size() > before
	})
}

// Once the checkpointer finds the log long, the writer checkpoints between
// two transactions and the next one starts the log over. Without that, a
// log to which a commit is added while each checkpoint runs only grows:
// SQLite starts it over only in a transaction begun with all of it copied.
// Here each round commits a task while a checkpoint runs, as a steady load
// does (the background checkpointer is off).
func TestLogStartsOver(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, t.TempDir(), Options{checkpointEvery: time.Hour, restartFrames: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	logFrames := func() int64 {
		var busy, frames, copied int64
		if err := s.cdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
			t.Fatal(err)
		}
		return frames
	}
	n := 0
	// round commits a task whose transaction is open while a checkpoint
	// copies the log; tell has the writer told the log is long first.
	round := func(tell bool) int64 {
		tr := claimTasks()[2]
		tr.TaskID = fmt.Sprintf("c%d", n)
		n++
		checkNewTask(&tr, time.Now)
		args, _ := insertArgs(nil, &tr)
		ev := EventFor(&tr, tr.CreatedAt)
		payload, _ := encodeEvent(&ev)
		held, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- s.write(ctx, func(w *writer) error {
				if _, err := w.createTask(&tr, args, &ev, payload, nil); err != nil {
					return err
				}
				close(held)
				<-release
				return nil
			})
		}()
		<-held
		frames := logFrames()
		if tell {
			s.w.logFrames.Store(1000) // as the checkpointer would
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return frames
	}
	round(false)
	var last int64
	for i := range 5 {
		f := round(false)
		if i > 0 && f <= last {
			t.Fatalf("round %d: the log went from %d to %d frames: it started over by itself", i, last, f)
		}
		last = f
	}
	round(true)  // its commit has the writer checkpoint
	round(false) // its commit starts the log over
	if f := round(false); f >= 16 || s.w.restarts.Load() != 1 {
		t.Fatalf("after the writer's checkpoint the log holds %d frames (it held %d), %d restarts; want it started over (< 16), 1", f, last, s.w.restarts.Load())
	}
}

// The checkpointer tells the writer once the log is long, after copying
// it twice (what came during the first copy, too).
func TestCheckpointerTellsTheWriter(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, t.TempDir(), Options{checkpointEvery: time.Hour, restartFrames: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 30 {
		tr := claimTasks()[2]
		tr.TaskID = fmt.Sprintf("c%d", i)
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	runs := s.cp.runs.Load()
	s.cp.tick()
	if got := s.w.logFrames.Load(); got < 16 || s.cp.runs.Load() != runs+2 {
		t.Fatalf("after a tick over a long log: the writer was told %d frames, %d runs; want >= 16, 2", got, s.cp.runs.Load()-runs)
	}
}

// UpdateTask's event is encoded from the row's encoded result and error,
// and must be exactly what encodeEvent makes of it.
func TestUpdateEventEncoding(t *testing.T) {
	at := time.Date(2031, 2, 3, 4, 5, 6, 789, time.FixedZone("Y", -3600))
	gpu := 0.25
	for i, tr := range []TaskRecord{
		{Task: protocol.Task{TaskID: "a", State: protocol.StateSucceeded, Attempt: 2, FinishedAt: &at,
			Result: &protocol.ExecutionResult{Output: []byte(`{"x":"<&>"}`), KPIs: map[string]float64{"k": 1.5},
				Logs: []protocol.LogLine{{Level: "info", Msg: "a\x01b\xff", At: at}}, DurationMs: 0.125,
				Usage: protocol.ResourceUsage{GPUUtilization: &gpu}}}},
		{Task: protocol.Task{TaskID: "b", State: protocol.StateRetrying, Attempt: 1,
			Result: &protocol.ExecutionResult{OutputBase64: []byte{0, 1, 2}},
			Error:  protocol.NewTaskError(protocol.CodeTrap, "trap <here>")}},
		{Task: protocol.Task{TaskID: "c", State: protocol.StateFailed, Attempt: 3, FinishedAt: &at,
			Error: protocol.NewTaskError(protocol.CodeTimeout, "late")}},
		{Task: protocol.Task{TaskID: "d", State: protocol.StateQueued, Attempt: 1,
			Result: &protocol.ExecutionResult{DurationMs: 1}, Error: protocol.NewTaskError(protocol.CodeTrap, "kept, not in the event")}},
		{Task: protocol.Task{TaskID: "e", State: protocol.StateCancelled}},
	} {
		m, err := mutableArgs(&tr)
		if err != nil {
			t.Fatal(err)
		}
		ev := EventFor(&tr, updateEventAt(&tr, func() time.Time { return at }))
		want, err := encodeEvent(&ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeUpdateEvent(&ev, &m)
		if err != nil || got != want {
			t.Errorf("event %d:\n got %s (%v)\nwant %s", i, got, err, want)
		}
	}
}
