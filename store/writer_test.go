package store

import (
	"context"
	"strings"
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
	args, _ := insertArgs(&b)
	ev := EventFor(&b, b.CreatedAt)
	payload, _ := encodeEvent(&ev)
	err = s.write(ctx, func(w *writer) error {
		if _, err := w.createTask(&b, args, &ev, payload); err != nil {
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
