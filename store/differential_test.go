//go:build unix

package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
	"github.com/chimera-fabric/fabric/store/storetest"
)

// TestDifferential drives Memory and SQLite through the same random
// sequences of calls and requires the same answers from both: the
// conformance suite checks chosen cases, this checks their agreement
// everywhere else.
func TestDifferential(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			mem := store.NewMemory()
			defer mem.Close()
			sq := openSQLite(t, t.TempDir())
			defer sq.Close()
			d := &diff{t: t, rng: rand.New(rand.NewPCG(seed, 42)), stores: []store.Store{mem, sq}, now: storetest.T0}
			for i := 0; i < 300; i++ {
				d.step(i)
			}
			d.compareAll("end")
		})
	}
}

type diff struct {
	t      *testing.T
	rng    *rand.Rand
	stores []store.Store
	now    time.Time
	n      int
}

// same calls f on each store and requires equal answers.
func (d *diff) same(what string, f func(s store.Store) any) any {
	d.t.Helper()
	var first string
	var out any
	for i, s := range d.stores {
		v := f(s)
		b, err := json.Marshal(normalize(v))
		if err != nil {
			d.t.Fatal(err)
		}
		if i == 0 {
			first, out = string(b), v
		} else if string(b) != first {
			d.t.Fatalf("%s: stores disagree:\nmemory %s\nsqlite %s", what, first, b)
		}
	}
	return out
}

// errKind reduces an error to what callers may rely on.
func errKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrStateChanged):
		return "state changed"
	case errors.Is(err, store.ErrNotFound):
		return "not found"
	case errors.Is(err, protocol.ErrConflict):
		return "conflict"
	case errors.Is(err, protocol.ErrInvalidParams):
		return "invalid params"
	}
	return "error"
}

// normalize clears what may legitimately differ: the time an UpdateTask
// event was stored, empty versus nil inputs.
func normalize(v any) any {
	switch x := v.(type) {
	case []store.TaskRecord:
		out := make([]store.TaskRecord, len(x))
		for i, tr := range x {
			out[i] = normalize(tr).(store.TaskRecord)
		}
		return out
	case store.TaskRecord:
		if len(x.Input) == 0 {
			x.Input = nil
		}
		return x
	case []protocol.TaskEvent:
		out := make([]protocol.TaskEvent, len(x))
		for i, ev := range x {
			out[i] = normalize(ev).(protocol.TaskEvent)
		}
		return out
	case protocol.TaskEvent:
		x.At = time.Time{}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

var agents = []string{"a", "b", "c"}

func (d *diff) pick(s []string) string { return s[d.rng.IntN(len(s))] }

func (d *diff) step(i int) {
	d.t.Helper()
	r := d.rng
	// The clock mostly moves on, sometimes stands, once in a while goes back.
	switch x := r.IntN(20); {
	case x == 0:
		d.now = d.now.Add(-time.Duration(r.IntN(3)) * time.Second)
	case x < 12:
		d.now = d.now.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
	}
	now := d.now
	what := fmt.Sprintf("step %d", i)
	switch op := r.IntN(100); {
	case op < 30: // create
		d.n++
		tr := storetest.NewTask(fmt.Sprintf("t%03d", d.n), d.pick(agents), protocol.Priority(r.IntN(5)))
		tr.CreatedAt = now
		if r.IntN(3) == 0 {
			tr.Labels = map[string]string{"env": d.pick([]string{"prod", "dev"})}
		}
		if r.IntN(4) == 0 {
			tr.IdempotencyKey = fmt.Sprintf("k%d", r.IntN(10))
		}
		if r.IntN(5) == 0 {
			tr.ReadyAt = now.Add(time.Duration(r.IntN(4)) * time.Second)
		}
		d.same(what+" create", func(s store.Store) any {
			got, ev, created, err := s.CreateTask(ctx, tr)
			return []any{got, ev, created, errKind(err)}
		})
	case op < 50: // claim
		d.same(what+" claim", func(s store.Store) any {
			got, started, ok, err := s.Claim(ctx, now)
			var ev protocol.TaskEvent
			if ok {
				ev, err = started.Wait()
			}
			return []any{got, ev, ok, errKind(err)}
		})
	case op < 75: // finish, retry or requeue a running task
		running := d.same(what+" running", func(s store.Store) any {
			l, _, _ := s.ListTasks(ctx, store.TaskFilter{State: protocol.StateRunning, Limit: 1000})
			return l
		}).([]store.TaskRecord)
		if len(running) == 0 {
			return
		}
		tr := running[r.IntN(len(running))]
		fin := now
		switch r.IntN(4) {
		case 0:
			tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
			tr.Result = &protocol.ExecutionResult{Output: json.RawMessage(`{"ok":1}`), KPIs: map[string]float64{"k": 1}}
		case 1:
			tr.State, tr.FinishedAt = protocol.StateFailed, &fin
			tr.Error = protocol.NewTaskError(protocol.CodeTrap, "boom")
			tr.AttemptErrors = append(tr.AttemptErrors, *tr.Error)
		case 2:
			at := now.Add(time.Duration(r.IntN(5000)) * time.Millisecond)
			tr.State, tr.ReadyAt, tr.NextAttemptAt = protocol.StateRetrying, at, &at
		case 3:
			tr.State, tr.ReadyAt, tr.NextAttemptAt = protocol.StateQueued, time.Time{}, nil
		}
		expect := protocol.StateRunning
		if r.IntN(10) == 0 {
			expect = protocol.StateQueued // stale
		}
		d.same(what+" update", func(s store.Store) any {
			ev, err := s.UpdateTask(ctx, tr, expect)
			return []any{ev, errKind(err)}
		})
	case op < 82: // cancel a waiting task
		agent := d.pick(agents)
		waiting := d.same(what+" waiting", func(s store.Store) any {
			w, err := s.Waiting(ctx, agent)
			return []any{w, errKind(err)}
		}).([]any)[0].([]store.TaskRecord)
		if len(waiting) == 0 {
			return
		}
		tr := waiting[r.IntN(len(waiting))]
		prev := tr.State
		fin := now
		tr.State, tr.FinishedAt, tr.NextAttemptAt = protocol.StateCancelled, &fin, nil
		d.same(what+" cancel", func(s store.Store) any {
			ev, err := s.UpdateTask(ctx, tr, prev)
			return []any{ev, errKind(err)}
		})
	case op < 88: // progress
		id := fmt.Sprintf("t%03d", 1+r.IntN(max(d.n, 1)))
		attempt := 1 + r.IntN(2)
		d.same(what+" progress", func(s store.Store) any {
			ev, err := s.AppendProgress(ctx, id, attempt, 0.5, now)
			return []any{ev, errKind(err)}
		})
	case op < 92: // prune
		older := now.Add(-time.Duration(r.IntN(10)) * time.Second)
		keep := r.IntN(6)
		d.same(what+" prune", func(s store.Store) any {
			n, err := s.Prune(ctx, older, keep)
			return []any{n, errKind(err)}
		})
	case op < 94:
		d.same(what+" recover", func(s store.Store) any {
			got, err := s.Recover(ctx, now)
			return []any{got, errKind(err)}
		})
	default:
		d.compareAll(what)
	}
}

func (d *diff) compareAll(what string) {
	d.t.Helper()
	now := d.now
	d.same(what+" next ready", func(s store.Store) any {
		at, ok, err := s.NextReadyAt(ctx, now)
		return []any{at, ok, errKind(err)}
	})
	d.same(what+" depth", func(s store.Store) any {
		dep, err := s.QueueDepth(ctx)
		return []any{fmt.Sprint(dep), errKind(err)}
	})
	d.same(what+" last seq", func(s store.Store) any {
		n, err := s.LastSeq(ctx)
		return []any{n, errKind(err)}
	})
	for _, f := range []store.TaskFilter{
		{Limit: 5}, {State: protocol.StateQueued, Limit: 4}, {State: protocol.StateSucceeded},
		{Agent: "b", Limit: 3}, {Label: "env", Limit: 2}, {Label: "env=prod"}, {Agent: "a", State: protocol.StateRetrying},
	} {
		// Every page, following the cursors.
		for page := 0; page < 100; page++ {
			var next string
			d.same(fmt.Sprintf("%s list %+v", what, f), func(s store.Store) any {
				l, c, err := s.ListTasks(ctx, f)
				next = c
				return []any{l, c, errKind(err)}
			})
			if next == "" {
				break
			}
			f.Cursor = next
		}
	}
	last, _ := d.stores[0].LastSeq(ctx)
	after := int64(d.rng.IntN(int(last) + 1))
	for _, f := range []store.EventFilter{{}, {Agent: "c"}, {TaskIDs: []string{"t001", "t005", "t010"}}, {TaskIDs: []string{"t002"}, Agent: "a"}} {
		for _, limit := range []int{0, 3} {
			d.same(fmt.Sprintf("%s events after %d %+v limit %d", what, after, f, limit), func(s store.Store) any {
				evs, err := s.Events(ctx, after, f, limit)
				return []any{evs, errKind(err)}
			})
		}
	}
	for _, a := range agents {
		d.same(what+" waiting "+a, func(s store.Store) any {
			w, err := s.Waiting(ctx, a)
			return []any{w, errKind(err)}
		})
	}
}
