package storetest

// Agents and tasks: creation, idempotency, inputs, updates.

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

func testAgents(t *testing.T, s store.Store) {
	if _, err := s.GetAgent(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAgent(missing): err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteAgent(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteAgent(missing): err = %v, want ErrNotFound", err)
	}
	mk := func(name string, module string) store.AgentRecord {
		return store.AgentRecord{
			Agent: protocol.Agent{
				Name: name, Digest: "sha256:" + name, ABI: protocol.ABIFabricV1, Entry: "run",
				SizeBytes: int64(len(module)), Capabilities: []string{protocol.CapClock},
				Limits:       protocol.Limits{MemoryMB: 128, TimeoutMs: 5000, Fuel: 1e6},
				RegisteredAt: at(1),
			},
			Module: []byte(module),
		}
	}
	b, a := mk("beta", "\x00asm\x01\x00\x00\x00b"), mk("alpha", "\x00asm\x01\x00\x00\x00a")
	a.ReuseInstances = true
	for _, r := range []store.AgentRecord{b, a} {
		if err := s.PutAgent(ctx, r); err != nil {
			t.Fatalf("PutAgent(%s): %v", r.Name, err)
		}
	}
	got, err := s.GetAgent(ctx, "alpha")
	if err != nil {
		t.Fatalf("GetAgent: %v", err)
	}
	same(t, "GetAgent(alpha)", got, a)
	got.Module[0] = 'X' // must not reach the store
	again, _ := s.GetAgent(ctx, "alpha")
	same(t, "GetAgent(alpha) after the caller changed its copy", again, a)

	list, err := s.ListAgents(ctx)
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" {
		t.Fatalf("ListAgents = %v, want alpha, beta", list)
	}
	same(t, "ListAgents[1]", list[1], b)

	b2 := mk("beta", "\x00asm\x01\x00\x00\x00b2")
	b2.Capabilities = nil
	b2.Digest = "sha256:other"
	if err := s.PutAgent(ctx, b2); err != nil {
		t.Fatalf("PutAgent(replace): %v", err)
	}
	got, _ = s.GetAgent(ctx, "beta")
	same(t, "GetAgent(beta) after replace", got, b2)

	if err := s.DeleteAgent(ctx, "beta"); err != nil {
		t.Fatalf("DeleteAgent: %v", err)
	}
	if _, err := s.GetAgent(ctx, "beta"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAgent(deleted): err = %v, want ErrNotFound", err)
	}
	if list, _ = s.ListAgents(ctx); len(list) != 1 {
		t.Fatalf("ListAgents after delete: %d agents, want 1", len(list))
	}
}

func testCreateTask(t *testing.T, s store.Store) {
	fuel := uint64(5000)
	tr := NewTask("t1", "echo", protocol.High)
	tr.Labels = map[string]string{"team": "a", "x": ""}
	tr.Input, tr.InputIsJSON = []byte{0, 1, 2, 255}, false
	tr.Quota.Fuel = &fuel
	tr.ParamsHash = "abc"
	tr.IdempotencyKey = ""
	got, ev := create(t, s, tr)
	if got.QueueSeq <= 0 {
		t.Errorf("QueueSeq = %d, want > 0", got.QueueSeq)
	}
	if got.State != protocol.StateQueued {
		t.Errorf("State = %s, want queued", got.State)
	}
	want := tr
	want.QueueSeq = got.QueueSeq
	want.Labels, want.Input = maps.Clone(tr.Labels), slices.Clone(tr.Input)
	same(t, "CreateTask's record", got, want)
	same(t, "GetTask", get(t, s, "t1"), want)
	same(t, "CreateTask's event", ev, protocol.TaskEvent{Seq: 1, TaskID: "t1", Agent: "echo", State: protocol.StateQueued, At: T0})
	if n := lastSeq(t, s); n != 1 {
		t.Errorf("LastSeq = %d, want 1", n)
	}

	// The caller's buffers are not the store's.
	tr.Labels["team"] = "b"
	tr.Input[0] = 9
	same(t, "GetTask after the caller changed its record", get(t, s, "t1"), want)

	// QueueSeq grows by acceptance.
	got2, ev2 := create(t, s, NewTask("t2", "echo", protocol.Low))
	if got2.QueueSeq <= got.QueueSeq {
		t.Errorf("second QueueSeq = %d, want > %d", got2.QueueSeq, got.QueueSeq)
	}
	if ev2.Seq != 2 {
		t.Errorf("second event seq = %d, want 2", ev2.Seq)
	}

	if _, _, _, err := s.CreateTask(ctx, NewTask("t1", "echo", protocol.Normal)); err == nil {
		t.Errorf("CreateTask with an existing task id: no error")
	} else if !errors.Is(err, protocol.ErrConflict) {
		t.Errorf("CreateTask with an existing task id: err = %v, want a conflict", err)
	}
	if _, _, _, err := s.CreateTask(ctx, NewTask("", "echo", protocol.Normal)); err == nil {
		t.Errorf("CreateTask without id: no error")
	}
	if _, err := s.GetTask(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTask(missing): err = %v, want ErrNotFound", err)
	}
	if n := lastSeq(t, s); n != 2 {
		t.Errorf("LastSeq after failed creates = %d, want 2", n)
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	a := NewTask("first", "echo", protocol.Normal)
	a.IdempotencyKey, a.ParamsHash = "key-1", "hash-a"
	first, _ := create(t, s, a)

	b := NewTask("second", "echo", protocol.High)
	b.IdempotencyKey, b.ParamsHash = "key-1", "hash-b"
	got, ev, created, err := s.CreateTask(ctx, b)
	if err != nil {
		t.Fatalf("CreateTask with a used key: %v", err)
	}
	if created {
		t.Fatalf("CreateTask with a used key: created = true, want false")
	}
	same(t, "CreateTask with a used key returns the first task", got, first)
	if ev.Seq != 0 {
		t.Errorf("CreateTask with a used key returned event seq %d, want none", ev.Seq)
	}
	if n := lastSeq(t, s); n != 1 {
		t.Errorf("LastSeq = %d, want 1: a repeated submit writes no event", n)
	}
	if _, err := s.GetTask(ctx, "second"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the second task was stored (err = %v)", err)
	}

	// Still deduplicated once the first task has run.
	claimed, _ := claim(t, s, at(1))
	claimed.State = protocol.StateSucceeded
	fin := at(2)
	claimed.FinishedAt = &fin
	update(t, s, claimed, protocol.StateRunning)
	got, _, created, err = s.CreateTask(ctx, b)
	if err != nil || created || got.TaskID != "first" || got.State != protocol.StateSucceeded {
		t.Errorf("CreateTask after the first finished: %s %s created=%v err=%v; want first, succeeded, false", got.TaskID, got.State, created, err)
	}

	// Other keys, and no key, are independent.
	c := NewTask("third", "echo", protocol.Normal)
	c.IdempotencyKey = "key-2"
	create(t, s, c)
	create(t, s, NewTask("fourth", "echo", protocol.Normal))
	create(t, s, NewTask("fifth", "echo", protocol.Normal))
}

// testInputs checks that inputs of every size and kind come back whole from
// every call that returns a task.
func testInputs(t *testing.T, s store.Store) {
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	inputs := map[string][]byte{"empty": nil, "small": []byte(`{"a":1}`), "edge": make([]byte, 1024), "over": make([]byte, 1025), "big": big}
	names := []string{"empty", "small", "edge", "over", "big"}
	for _, name := range names {
		tr := NewTask(name, "echo", protocol.Normal)
		tr.Input, tr.InputIsJSON = inputs[name], name == "small"
		tr.IdempotencyKey = "key-" + name
		create(t, s, tr)
	}
	check := func(how string, tr store.TaskRecord) {
		t.Helper()
		if want := inputs[tr.TaskID]; string(tr.Input) != string(want) || tr.InputIsJSON != (tr.TaskID == "small") {
			t.Errorf("%s %s: input of %d bytes (json %v), want %d bytes", how, tr.TaskID, len(tr.Input), tr.InputIsJSON, len(want))
		}
	}
	for _, name := range names {
		check("GetTask", get(t, s, name))
		again := NewTask("other-"+name, "echo", protocol.Normal)
		again.IdempotencyKey = "key-" + name
		old, _, created, err := s.CreateTask(ctx, again)
		if err != nil || created {
			t.Fatalf("CreateTask with a used key: created=%v err=%v", created, err)
		}
		check("CreateTask with a used key", old)
	}
	list, _, _ := s.ListTasks(ctx, store.TaskFilter{})
	for _, tr := range list {
		check("ListTasks", tr)
	}
	w, _ := s.Waiting(ctx, "echo")
	for _, tr := range w {
		check("Waiting", tr)
	}
	for range names {
		tr, _ := claim(t, s, at(1))
		check("Claim", tr)
		tr.Result = &protocol.ExecutionResult{OutputBase64: []byte{1, 2, 3}}
		tr.Input = nil // UpdateTask does not write the input
		tr.State = protocol.StateRunning
		if tr.TaskID == "big" || tr.TaskID == "small" {
			continue // left running for Recover
		}
		tr.State = protocol.StateSucceeded
		update(t, s, tr, protocol.StateRunning)
		check("GetTask after UpdateTask", get(t, s, tr.TaskID))
	}
	rec, err := s.Recover(ctx, at(2))
	if err != nil || len(rec) != 2 {
		t.Fatalf("Recover = %d tasks, %v; want 2", len(rec), err)
	}
	for _, tr := range rec {
		check("Recover", tr)
	}
}

func testUpdateTask(t *testing.T, s store.Store) {
	tr, _ := create(t, s, NewTask("t1", "echo", protocol.Normal))
	if _, err := s.UpdateTask(ctx, tr, protocol.StateRunning); !errors.Is(err, store.ErrStateChanged) {
		t.Fatalf("UpdateTask expecting running on a queued task: err = %v, want ErrStateChanged", err)
	}
	missing := NewTask("nope", "echo", protocol.Normal)
	if _, err := s.UpdateTask(ctx, missing, protocol.StateQueued); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateTask(missing): err = %v, want ErrNotFound", err)
	}

	run, _ := claim(t, s, at(1))
	// An outcome is for the claim it came from: another StartedAt is
	// another claim of the task.
	other := run
	otherStart := at(1).Add(time.Nanosecond)
	other.StartedAt, other.State = &otherStart, protocol.StateSucceeded
	if _, err := s.UpdateTask(ctx, other, protocol.StateRunning); !errors.Is(err, store.ErrStateChanged) {
		t.Fatalf("UpdateTask of another claim: err = %v, want ErrStateChanged", err)
	}
	other.StartedAt = nil
	if _, err := s.UpdateTask(ctx, other, protocol.StateRunning); !errors.Is(err, store.ErrStateChanged) {
		t.Fatalf("UpdateTask without the claim's StartedAt: err = %v, want ErrStateChanged", err)
	}
	out := json.RawMessage(`{"ok":true}`)
	gpu := 0.5
	fin := at(3)
	done := run
	done.State = protocol.StateSucceeded
	done.FinishedAt = &fin
	done.Labels = map[string]string{"added": "later"}
	done.Result = &protocol.ExecutionResult{
		Output:     out,
		Usage:      protocol.ResourceUsage{CPUSeconds: 1.5, MemoryPeakMB: 3, GPUUtilization: &gpu},
		KPIs:       map[string]float64{"score": 0.9},
		Logs:       []protocol.LogLine{{Level: "info", Msg: "hi", At: at(2)}},
		DurationMs: 12.5,
	}
	done.Input = []byte("not written: the input is fixed at creation")
	ev := update(t, s, done, protocol.StateRunning)
	same(t, "UpdateTask's event", ev, protocol.TaskEvent{Seq: 3, TaskID: "t1", Agent: "echo",
		State: protocol.StateSucceeded, Attempt: 1, At: fin, Result: done.Result})

	want := done
	want.Input = tr.Input
	same(t, "GetTask after UpdateTask", get(t, s, "t1"), want)

	// The compare-and-set holds against a stale expectation.
	done.State = protocol.StateFailed
	if _, err := s.UpdateTask(ctx, done, protocol.StateRunning); !errors.Is(err, store.ErrStateChanged) {
		t.Fatalf("UpdateTask with a stale state: err = %v, want ErrStateChanged", err)
	}
	if got := get(t, s, "t1"); got.State != protocol.StateSucceeded {
		t.Errorf("a failed UpdateTask wrote: state %s", got.State)
	}
	if n := lastSeq(t, s); n != 3 {
		t.Errorf("LastSeq = %d, want 3: failed updates append nothing", n)
	}

	// Cancelling a queued task takes it out of the queue.
	q, _ := create(t, s, NewTask("t2", "echo", protocol.Normal))
	q.State = protocol.StateCancelled
	q.Error = protocol.NewTaskError(protocol.CodeCancelled, "cancelled")
	q.FinishedAt = &fin
	ev = update(t, s, q, protocol.StateQueued)
	if ev.Error == nil || ev.Error.Code != protocol.CodeCancelled || ev.State != protocol.StateCancelled {
		t.Errorf("cancel event = %+v, want state cancelled with its error", ev)
	}
	claimNone(t, s, at(10))

	// A task put back in the queue is claimable again.
	r, _ := create(t, s, NewTask("t3", "echo", protocol.Normal))
	r, _ = claim(t, s, at(4))
	r.State, r.ReadyAt, r.NextAttemptAt = protocol.StateQueued, time.Time{}, nil
	ev = update(t, s, r, protocol.StateRunning)
	if ev.State != protocol.StateQueued || ev.Attempt != 1 {
		t.Errorf("requeue event = %+v, want queued at attempt 1", ev)
	}
	again, _ := claim(t, s, at(5))
	if again.TaskID != "t3" || again.Attempt != 2 {
		t.Errorf("claim after requeue: %s attempt %d, want t3 attempt 2", again.TaskID, again.Attempt)
	}
}
