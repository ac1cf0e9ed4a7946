package sched_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/store"
)

// The scheduler on each store: the durable one commits claims and outcomes
// behind the runs, which the memory store never has to.
var schedStores = []struct {
	name string
	open func(t *testing.T, dir string) store.Store
}{
	{"memory", func(t *testing.T, dir string) store.Store { return store.NewMemory() }},
	{"sqlite", func(t *testing.T, dir string) store.Store {
		st, err := store.OpenSQLite(context.Background(), dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
}

// startOn is start on a given store, which the caller closes after the
// scheduler's cleanup (registered first, so run last).
func startOn(t *testing.T, st store.Store, mod func(*sched.Config)) *fixture {
	t.Helper()
	eng, err := executor.NewWazero(executor.WazeroOptions{MaxMemoryBytes: 1 << 30, MaxModuleBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sched.Config{Store: st, Engine: eng, Workers: 2, Logger: zerolog.Nop()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := sched.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		eng.Close(context.Background())
	})
	return &fixture{t: t, s: s, st: st}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// task.wait of a task this process runs is answered from the record the
// scheduler committed, not read back: it must be exactly what the store
// holds, whichever way the task ended.
func TestWaitAnswersWhatTheStoreHolds(t *testing.T) {
	for _, sc := range schedStores {
		t.Run(sc.name, func(t *testing.T) {
			st := sc.open(t, t.TempDir())
			defer st.Close()
			f := startOn(t, st, func(c *sched.Config) { c.Workers = 1 })
			f.register("echo", "echo")
			f.register("fail", "exit_status")
			f.register("loop", "loop")
			ctx := context.Background()

			blocker := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
			waitState(t, f, blocker, protocol.StateRunning)
			ids := map[string]protocol.State{
				f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`{"a":[1,2.5,"x"]}`),
					Labels: map[string]string{"k": "v"}}): protocol.StateSucceeded,
				f.submit(protocol.SubmitParams{Agent: "fail", MaxRetries: ptr(1),
					Backoff: &protocol.Backoff{InitialMs: 1, MaxMs: 2, Multiplier: 2}}): protocol.StateFailed,
			}
			cancelled := f.submit(protocol.SubmitParams{Agent: "echo"})
			ids[cancelled] = protocol.StateCancelled

			type answer struct {
				task protocol.Task
				err  error
			}
			answers := map[string]chan answer{}
			for id := range ids {
				ch := make(chan answer, 1)
				answers[id] = ch
				go func() {
					t, err := f.s.Wait(ctx, id, 30*time.Second)
					ch <- answer{t, err}
				}()
			}
			if _, err := f.s.Cancel(ctx, cancelled); err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.Cancel(ctx, blocker); err != nil {
				t.Fatal(err)
			}
			for id, want := range ids {
				a := <-answers[id]
				if a.err != nil {
					t.Fatalf("Wait %s: %v", id, a.err)
				}
				if a.task.State != want {
					t.Fatalf("task %s: %s, want %s", id, a.task.State, want)
				}
				stored, err := f.s.Task(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := jsonOf(t, a.task), jsonOf(t, stored); got != want {
					t.Errorf("task %s: Wait answered\n%s\nthe store holds\n%s", id, got, want)
				}
				// A second wait, once the task is known finished, reads it.
				again, err := f.s.Wait(ctx, id, time.Second)
				if err != nil || jsonOf(t, again) != jsonOf(t, stored) {
					t.Errorf("task %s: a later Wait answered %v %s", id, err, jsonOf(t, again))
				}
			}
		})
	}
}
