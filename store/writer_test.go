//go:build unix

package store

import (
	"context"
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
	s, err := OpenSQLite(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	err = s.write(ctx, func(w *writer) error {
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
	s, err := OpenSQLite(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
