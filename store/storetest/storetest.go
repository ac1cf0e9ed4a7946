// Package storetest is the conformance suite every store.Store passes: the
// Memory and SQLite stores run it from their tests, and so must any other.
package storetest

import (
	"context"
	"encoding/json"
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
		{"ClaimThenWrite", testClaimThenWrite},
		{"Retrying", testRetrying},
		{"ClockBackwards", testClockBackwards},
		{"QueueDepthAndWaiting", testQueueDepthAndWaiting},
		{"Events", testEvents},
		{"Progress", testProgress},
		{"ListTasks", testListTasks},
		{"ListPaging", testListPaging},
		{"Recover", testRecover},
		{"Prune", testPrune},
		{"PruneCap", testPruneCap},
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
	got, started, ok, err := s.Claim(ctx, now)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if !ok {
		t.Fatalf("Claim at %v: nothing runnable, want a task", now)
	}
	ev, err := started.Wait()
	if err != nil {
		t.Fatalf("Claim of %s: the claim did not commit: %v", got.TaskID, err)
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
