//go:build unix

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// A write that fails after writing part of its change rolls its whole batch
// back, and the writer's memory (seqs, queue) is reloaded to match the file.
func TestWriterAbortReloads(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	task := func(id string) TaskRecord {
		return TaskRecord{Task: protocol.Task{TaskID: id, Agent: "echo", Priority: protocol.Normal, CreatedAt: time.Unix(1, 0)}}
	}
	if _, _, _, err := s.CreateTask(ctx, task("a")); err != nil {
		t.Fatal(err)
	}

	b := task("b")
	checkNewTask(&b, time.Now)
	args, _ := insertArgs(nil, &b)
	ev := EventFor(&b, b.CreatedAt)
	payload, _ := encodeEvent(&ev)
	err := s.write(ctx, func(w *writer) error {
		if _, err := w.createTask(&b, args, &ev, payload, nil); err != nil {
			return err
		}
		panic("boom after writing")
	})
	if err == nil || !strings.Contains(err.Error(), "not committed") || !strings.Contains(err.Error(), "boom after writing") {
		t.Fatalf("err = %v; want the batch reported not committed, with the panic", err)
	}

	if _, err := s.GetTask(ctx, "b"); err == nil {
		t.Fatal("task b was committed")
	}
	if n, _ := s.LastSeq(ctx); n != 1 {
		t.Errorf("LastSeq = %d, want 1", n)
	}
	if d, _ := s.QueueDepth(ctx); d[protocol.Normal] != 1 {
		t.Errorf("QueueDepth = %v, want normal 1: the queue was not reloaded", d)
	}
	got, ev2, _, err := s.CreateTask(ctx, task("c"))
	if err != nil {
		t.Fatal(err)
	}
	if ev2.Seq != 2 || got.QueueSeq != 2 {
		t.Errorf("after the abort: seq %d, QueueSeq %d; want 2 and 2", ev2.Seq, got.QueueSeq)
	}
	for _, want := range []string{"a", "c"} {
		c, _, ok, err := s.Claim(ctx, time.Unix(2, 0))
		if err != nil || !ok || c.TaskID != want {
			t.Fatalf("Claim = %s %v %v, want %s", c.TaskID, ok, err, want)
		}
	}
	if _, _, ok, _ := s.Claim(ctx, time.Unix(2, 0)); ok {
		t.Error("a third task was claimable")
	}
}

// A caller whose context ends before the writer takes its write gets the
// context's error, and nothing is written.
func TestWriteCancelled(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tr := TaskRecord{Task: protocol.Task{TaskID: "x", Agent: "echo", Priority: protocol.Normal}}
	if _, _, _, err := s.CreateTask(cctx, tr); err != context.Canceled {
		t.Fatalf("CreateTask with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.GetTask(ctx, "x"); err == nil {
		t.Fatal("the task was written")
	}
}

// BenchmarkWriterCreate measures the writer's own work per CreateTask, all
// in one transaction: no commit, no fsync, no waiting callers. It is the
// floor under the durable store's cost per submit.
func BenchmarkWriterCreate(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	type prepared struct {
		t       TaskRecord
		args    []any
		ev      protocol.TaskEvent
		payload string
	}
	ops := make([]prepared, b.N)
	for i := range ops {
		p := &ops[i]
		p.t = TaskRecord{Task: protocol.Task{TaskID: fmt.Sprintf("%016d", i), Agent: "echo", Priority: protocol.Priority(i % 5),
			Labels: map[string]string{"batch": "nightly"}}, Input: []byte(`{"n":42}`)}
		checkNewTask(&p.t, time.Now)
		if p.args, err = insertArgs(nil, &p.t); err != nil {
			b.Fatal(err)
		}
		p.ev = EventFor(&p.t, p.t.CreatedAt)
		if p.payload, err = encodeEvent(&p.ev); err != nil {
			b.Fatal(err)
		}
	}
	var ru0, ru1 syscall.Rusage
	b.ResetTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	err = s.write(ctx, func(w *writer) error {
		for i := range ops {
			p := &ops[i]
			if _, err := w.createTask(&p.t, p.args, &p.ev, p.payload, nil); err != nil {
				return err
			}
		}
		return nil
	})
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

// openTemp opens a SQLite store in a new temporary directory, closed when
// the test ends.
func openTemp(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newTaskWrite is what CreateTask hands the writer for a new task "a".
func newTaskWrite(t *testing.T) (TaskRecord, []any, protocol.TaskEvent, string, *TaskRecord) {
	t.Helper()
	return taskWrite(t, TaskRecord{Task: protocol.Task{TaskID: "a", Agent: "echo", Priority: protocol.Normal, CreatedAt: time.Unix(1, 0)}})
}

// A write handed over while a batch runs joins that batch's transaction:
// a task claimed while its creation runs commits with it, so that whoever
// waits for the claim waits one commit, not two.
func TestWritesHandedOverDuringABatchJoinIt(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tr, args, ev, payload, rec := newTaskWrite(t)
	before := s.WriteStats()
	var started *Pending
	err := s.write(ctx, func(w *writer) error {
		if _, err := w.createTask(&tr, args, &ev, payload, rec); err != nil {
			return err
		}
		// The task is in the queue once its creation ran: claim it now,
		// as a worker would while the batch is still running.
		claimed, p, ok, err := s.Claim(ctx, time.Unix(2, 0))
		if err != nil || !ok || claimed.TaskID != "a" {
			return fmt.Errorf("Claim during the batch = %s, %v, %v; want task a", claimed.TaskID, ok, err)
		}
		started = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run, err := started.Wait()
	if err != nil || run.State != protocol.StateRunning || run.Seq != ev.Seq+1 {
		t.Fatalf("claim: %+v, %v; want the running event right after the creation's", run, err)
	}
	after := s.WriteStats()
	if c, w := after.Commits-before.Commits, after.Writes-before.Writes; c != 1 || w != 2 {
		t.Errorf("creation and claim took %d commits holding %d writes; want 1 commit of 2", c, w)
	}
	got, err := s.GetTask(ctx, "a")
	if err != nil || got.State != protocol.StateRunning || got.Attempt != 1 {
		t.Errorf("task after the commit: %s attempt %d, %v; want running attempt 1", got.State, got.Attempt, err)
	}
}

// A claim in the transaction that creates its task, when that transaction
// rolls back, fails saying that the task does not exist: the scheduler
// must not count it as waiting again.
func TestClaimRolledBackWithItsCreation(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	tr, args, ev, payload, rec := newTaskWrite(t)
	var started *Pending
	failing := getOp(ctx, func(w *writer) error { return abort(fmt.Errorf("disk on fire")) })
	failed := newPending()
	failing.pend = failed
	err := s.sendFor(ctx, "a", opCreate, 0, false, func(w *writer) error {
		if _, err := w.createTask(&tr, args, &ev, payload, rec); err != nil {
			return err
		}
		_, p, ok, err := s.Claim(ctx, time.Unix(2, 0))
		if err != nil || !ok {
			return fmt.Errorf("Claim during the batch = %v, %v", ok, err)
		}
		started = p
		// After the claim, a write that fails joins the transaction too.
		w.qmu.Lock()
		w.hand(failing)
		w.qmu.Unlock()
		return nil
	})
	if err == nil {
		t.Fatal("the creation committed with a failing write in its transaction")
	}
	if _, err := failed.Wait(); err == nil {
		t.Fatal("the failing write succeeded")
	}
	if _, err = started.Wait(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim rolled back with its task's creation: %v; want ErrNotFound", err)
	}
	if _, err := s.GetTask(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetTask after the rollback: %v; want ErrNotFound", err)
	}
	if _, _, ok, err := s.Claim(ctx, time.Unix(3, 0)); ok || err != nil {
		t.Errorf("Claim after the rollback = %v, %v; want nothing to claim", ok, err)
	}
}
