// Package storetest is the conformance suite every store.Store passes: the
// Memory and SQLite stores run it from their tests, and so must any other.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// Run runs the suite. open returns a new, empty store for each subtest; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Agents", testAgents},
		{"CreateTask", testCreateTask},
		{"Idempotency", testIdempotency},
		{"Inputs", testInputs},
		{"UpdateTask", testUpdateTask},
		{"ClaimOrder", testClaimOrder},
		{"Retrying", testRetrying},
		{"ClockBackwards", testClockBackwards},
		{"QueueDepthAndWaiting", testQueueDepthAndWaiting},
		{"Events", testEvents},
		{"Progress", testProgress},
		{"ListTasks", testListTasks},
		{"ListPaging", testListPaging},
		{"Recover", testRecover},
		{"Prune", testPrune},
		{"Concurrency", testConcurrency},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

// T0 is the suite's clock origin.
var T0 = time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)

func at(sec int) time.Time { return T0.Add(time.Duration(sec) * time.Second) }

// NewTask returns a task as the scheduler would hand it to CreateTask.
func NewTask(id, agent string, prio protocol.Priority) store.TaskRecord {
	return store.TaskRecord{
		Task: protocol.Task{
			TaskID:     id,
			Agent:      agent,
			Priority:   prio,
			State:      protocol.StateQueued,
			MaxRetries: 3,
			Labels:     map[string]string{},
			CreatedAt:  T0,
			TimeoutMs:  30000,
		},
		Input:       []byte(`{"n":1}`),
		InputIsJSON: true,
		Backoff:     protocol.DefaultBackoff,
		Quota:       protocol.Quota{MemoryMB: 64, OutputBytes: 1 << 20},
	}
}

var ctx = context.Background()

func create(t *testing.T, s store.Store, tr store.TaskRecord) (store.TaskRecord, protocol.TaskEvent) {
	t.Helper()
	got, ev, created, err := s.CreateTask(ctx, tr)
	if err != nil {
		t.Fatalf("CreateTask(%s): %v", tr.TaskID, err)
	}
	if !created {
		t.Fatalf("CreateTask(%s): created = false, want true", tr.TaskID)
	}
	return got, ev
}

func claim(t *testing.T, s store.Store, now time.Time) (store.TaskRecord, protocol.TaskEvent) {
	t.Helper()
	got, ev, ok, err := s.Claim(ctx, now)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if !ok {
		t.Fatalf("Claim at %v: nothing runnable, want a task", now)
	}
	return got, ev
}

func claimNone(t *testing.T, s store.Store, now time.Time) {
	t.Helper()
	got, _, ok, err := s.Claim(ctx, now)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if ok {
		t.Fatalf("Claim at %v: got task %s (%s), want nothing runnable", now, got.TaskID, got.State)
	}
}

func get(t *testing.T, s store.Store, id string) store.TaskRecord {
	t.Helper()
	got, err := s.GetTask(ctx, id)
	if err != nil {
		t.Fatalf("GetTask(%s): %v", id, err)
	}
	return got
}

func update(t *testing.T, s store.Store, tr store.TaskRecord, expect protocol.State) protocol.TaskEvent {
	t.Helper()
	ev, err := s.UpdateTask(ctx, tr, expect)
	if err != nil {
		t.Fatalf("UpdateTask(%s, %s→%s): %v", tr.TaskID, expect, tr.State, err)
	}
	return ev
}

func events(t *testing.T, s store.Store, after int64, f store.EventFilter, limit int) []protocol.TaskEvent {
	t.Helper()
	evs, err := s.Events(ctx, after, f, limit)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	return evs
}

func lastSeq(t *testing.T, s store.Store) int64 {
	t.Helper()
	n, err := s.LastSeq(ctx)
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return n
}

// canon is a record's JSON with empty collections normalised, for
// comparison: stores may hand back nil or empty, UTC or local times.
func canon(t *testing.T, v any) string {
	t.Helper()
	switch r := v.(type) {
	case store.TaskRecord:
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		if len(r.Input) == 0 {
			r.Input = nil
		}
		r.CreatedAt = r.CreatedAt.UTC()
		r.ReadyAt = r.ReadyAt.UTC()
		for _, p := range []**time.Time{&r.StartedAt, &r.FinishedAt, &r.NextAttemptAt} {
			if *p != nil {
				u := (*p).UTC()
				*p = &u
			}
		}
		v = r
	case protocol.TaskEvent:
		r.At = r.At.UTC()
		v = r
	case store.AgentRecord:
		r.RegisteredAt = r.RegisteredAt.UTC()
		if len(r.Capabilities) == 0 {
			r.Capabilities = nil
		}
		v = r
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, w := canon(t, got), canon(t, want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func ids(ts []store.TaskRecord) []string {
	out := make([]string, len(ts))
	for i, tr := range ts {
		out[i] = tr.TaskID
	}
	return out
}

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

func testListTasks(t *testing.T, s store.Store) {
	if got, next, err := s.ListTasks(ctx, store.TaskFilter{}); err != nil || len(got) != 0 || next != "" {
		t.Fatalf("ListTasks of an empty store = %v %q %v", ids(got), next, err)
	}
	for i := 1; i <= 12; i++ {
		agent := "a"
		if i%3 == 0 {
			agent = "b"
		}
		tr := NewTask(fmt.Sprintf("t%02d", i), agent, protocol.Normal)
		tr.CreatedAt = at(i)
		switch {
		case i%4 == 0:
			tr.Labels = map[string]string{"env": "prod"}
		case i%4 == 1:
			tr.Labels = map[string]string{"env": "dev", "k": "v=w"}
		}
		create(t, s, tr)
	}
	// t01 and t02 run; t01 succeeds.
	t01, _ := claim(t, s, at(20))
	claim(t, s, at(21))
	t01.State = protocol.StateSucceeded
	update(t, s, t01, protocol.StateRunning)

	list := func(f store.TaskFilter) []string {
		t.Helper()
		got, next, err := s.ListTasks(ctx, f)
		if err != nil {
			t.Fatalf("ListTasks(%+v): %v", f, err)
		}
		if next != "" {
			t.Fatalf("ListTasks(%+v): next cursor %q, want none", f, next)
		}
		return ids(got)
	}
	for _, c := range []struct {
		f    store.TaskFilter
		want []string
	}{
		{store.TaskFilter{}, []string{"t12", "t11", "t10", "t09", "t08", "t07", "t06", "t05", "t04", "t03", "t02", "t01"}},
		{store.TaskFilter{State: protocol.StateQueued}, []string{"t12", "t11", "t10", "t09", "t08", "t07", "t06", "t05", "t04", "t03"}},
		{store.TaskFilter{State: protocol.StateRunning}, []string{"t02"}},
		{store.TaskFilter{State: protocol.StateSucceeded}, []string{"t01"}},
		{store.TaskFilter{State: protocol.StateFailed}, nil},
		{store.TaskFilter{Agent: "b"}, []string{"t12", "t09", "t06", "t03"}},
		{store.TaskFilter{Agent: "none"}, nil},
		{store.TaskFilter{Label: "env"}, []string{"t12", "t09", "t08", "t05", "t04", "t01"}},
		{store.TaskFilter{Label: "env=prod"}, []string{"t12", "t08", "t04"}},
		{store.TaskFilter{Label: "env=dev", State: protocol.StateQueued}, []string{"t09", "t05"}},
		{store.TaskFilter{Label: "k=v=w"}, []string{"t09", "t05", "t01"}},
		{store.TaskFilter{Label: "env="}, nil},
		{store.TaskFilter{Label: "nolabel"}, nil},
		{store.TaskFilter{Agent: "b", Label: "env=prod"}, []string{"t12"}},
	} {
		if got := list(c.f); !slices.Equal(got, c.want) {
			t.Errorf("ListTasks(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
	got, _, _ := s.ListTasks(ctx, store.TaskFilter{State: protocol.StateSucceeded})
	if len(got) == 1 {
		same(t, "listed record", got[0], get(t, s, "t01"))
	}

	for _, f := range []store.TaskFilter{
		{Cursor: "garbage"},
		{Cursor: "q1.-5"},
		{Label: "=x"},
		{State: "sleeping"},
	} {
		if _, _, err := s.ListTasks(ctx, f); !errors.Is(err, protocol.ErrInvalidParams) {
			t.Errorf("ListTasks(%+v): err = %v, want invalid params", f, err)
		}
	}
	// The limit defaults and is capped.
	if got, next, _ := s.ListTasks(ctx, store.TaskFilter{Limit: -1}); len(got) != 12 || next != "" {
		t.Errorf("ListTasks(limit -1): %d tasks, next %q; want the default limit", len(got), next)
	}
}

func testListPaging(t *testing.T, s store.Store) {
	n := 0
	add := func(k int) {
		for i := 0; i < k; i++ {
			n++
			tr := NewTask(fmt.Sprintf("t%03d", n), "echo", protocol.Normal)
			if n%2 == 0 {
				tr.Labels = map[string]string{"even": "1"}
			}
			create(t, s, tr)
		}
	}
	for _, f := range []store.TaskFilter{{Limit: 7}, {Limit: 3, Label: "even"}, {Limit: 1}} {
		add(25)
		before := map[string]bool{}
		all, _, _ := s.ListTasks(ctx, store.TaskFilter{Label: f.Label, Limit: protocol.MaxListLimit})
		for _, tr := range all {
			before[tr.TaskID] = true
		}
		seen := map[string]bool{}
		var lastSeq int64
		for page := 0; ; page++ {
			got, next, err := s.ListTasks(ctx, f)
			if err != nil {
				t.Fatalf("ListTasks page %d: %v", page, err)
			}
			if len(got) > f.Limit {
				t.Fatalf("page %d has %d tasks, over the limit %d", page, len(got), f.Limit)
			}
			for _, tr := range got {
				if seen[tr.TaskID] {
					t.Fatalf("task %s listed twice", tr.TaskID)
				}
				if page > 0 && !before[tr.TaskID] {
					t.Fatalf("task %s, added after the first page, appears on page %d", tr.TaskID, page)
				}
				if lastSeq != 0 && tr.QueueSeq >= lastSeq {
					t.Fatalf("not newest first: QueueSeq %d after %d", tr.QueueSeq, lastSeq)
				}
				lastSeq = tr.QueueSeq
				seen[tr.TaskID] = true
			}
			if next == "" {
				break
			}
			if len(got) != f.Limit {
				t.Fatalf("page %d has %d tasks and a next cursor; want full pages before the last", page, len(got))
			}
			f.Cursor = next
			add(2) // tasks arriving meanwhile go to the top, not into later pages
		}
		for id := range before {
			if !seen[id] {
				t.Fatalf("filter %+v: task %s skipped by paging", f, id)
			}
		}
	}
}

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
				tr, ev, ok, err := s.Claim(ctx, at(0))
				if err != nil {
					errs <- fmt.Errorf("Claim: %v", err)
					return
				}
				if !ok {
					time.Sleep(time.Millisecond)
					continue
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
