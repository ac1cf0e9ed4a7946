package sched_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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
	open func(t testing.TB, dir string) store.Store
}{
	{"memory", func(t testing.TB, dir string) store.Store { return store.NewMemory() }},
	{"sqlite", func(t testing.TB, dir string) store.Store {
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
	return &fixture{t: t, s: startSched(t, st, mod), st: st}
}

func startSched(t testing.TB, st store.Store, mod func(*sched.Config)) *sched.Scheduler {
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
	return s
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

// Under a load of short tasks, some failing and retried, some cancelled,
// every stored event is delivered live exactly once, and each task's events
// arrive in order: queued, then running and retrying in turn, then its end.
// On SQLite the claims and outcomes commit behind the runs; the order must
// not show it.
func TestEventsOfEachTaskArriveInOrder(t *testing.T) {
	for _, sc := range schedStores {
		t.Run(sc.name, func(t *testing.T) {
			st := sc.open(t, t.TempDir())
			defer st.Close()
			f := startOn(t, st, nil)
			f.register("echo", "echo")
			f.register("fail", "exit_status")
			ctx := context.Background()
			var mu sync.Mutex
			seen := map[int64]int{}
			perTask := map[string][]protocol.TaskEvent{}
			sub, err := f.s.Subscribe(ctx, store.EventFilter{}, nil, func(ev protocol.TaskEvent) {
				mu.Lock()
				seen[ev.Seq]++
				perTask[ev.TaskID] = append(perTask[ev.TaskID], ev)
				mu.Unlock()
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()

			var ids []string
			for i := 0; i < 200; i++ {
				p := protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`{"i":1}`)}
				if i%10 == 3 {
					p = protocol.SubmitParams{Agent: "fail", MaxRetries: ptr(1), Backoff: &protocol.Backoff{InitialMs: 1, MaxMs: 2, Multiplier: 2}}
				}
				id := f.submit(p)
				ids = append(ids, id)
				if i%10 == 7 {
					if _, err := f.s.Cancel(ctx, id); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, id := range ids {
				f.wait(id)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				ls, _ := st.LastSeq(ctx)
				mu.Lock()
				n := len(seen)
				mu.Unlock()
				if int64(n) == ls {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("saw %d distinct events, the store has %d", n, ls)
				}
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			for seq, n := range seen {
				if n != 1 {
					t.Fatalf("event %d delivered %d times", seq, n)
				}
			}
			for _, id := range ids {
				evs := perTask[id]
				if len(evs) < 2 || evs[0].State != protocol.StateQueued || !evs[len(evs)-1].State.Terminal() {
					t.Fatalf("task %s: events %v", id, states(evs))
				}
				for i := 1; i < len(evs); i++ {
					prev, cur := evs[i-1], evs[i]
					ok := cur.Seq > prev.Seq
					switch cur.State {
					case protocol.StateRunning:
						ok = ok && (prev.State == protocol.StateQueued || prev.State == protocol.StateRetrying) && cur.Attempt == prev.Attempt+1
					case protocol.StateRetrying:
						ok = ok && prev.State == protocol.StateRunning
					default:
						ok = ok && cur.State.Terminal() && i == len(evs)-1
					}
					if !ok {
						t.Fatalf("task %s: events out of order: %v", id, states(evs))
					}
				}
			}
		})
	}
}

func states(evs []protocol.TaskEvent) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%d:%s/%d", ev.Seq, ev.State, ev.Attempt))
	}
	return out
}

// Stop puts a task still running back in the queue, on both stores, and a
// new scheduler on the same durable store runs it to the end.
func TestStopRequeuesAndRestartRuns(t *testing.T) {
	dir := t.TempDir()
	st := schedStores[1].open(t, dir)
	eng, err := executor.NewWazero(executor.WazeroOptions{MaxMemoryBytes: 1 << 30, MaxModuleBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	s, err := sched.New(sched.Config{Store: st, Engine: eng, Workers: 1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, s: s, st: st}
	f.register("loop", "loop")
	f.register("echo", "echo")
	id := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 2_000, MaxRetries: ptr(0)})
	waitState(t, f, id, protocol.StateRunning)
	queued := f.submit(protocol.SubmitParams{Agent: "echo"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); err == nil {
		t.Fatal("Stop must report that the drain timeout cut a task short")
	}
	for _, want := range []struct {
		id      string
		attempt int
	}{{id, 1}, {queued, 0}} {
		rec, err := st.GetTask(context.Background(), want.id)
		if err != nil || rec.State != protocol.StateQueued || rec.Attempt != want.attempt {
			t.Fatalf("after stop: %v state %s attempt %d, want queued %d", err, rec.State, rec.Attempt, want.attempt)
		}
	}
	st.Close()

	st = schedStores[1].open(t, dir)
	defer st.Close()
	f = startOn(t, st, nil)
	if task := f.wait(queued); task.State != protocol.StateSucceeded || task.Attempt != 1 {
		t.Fatalf("echo after restart: %s attempt %d", task.State, task.Attempt)
	}
	if task := f.wait(id); task.State != protocol.StateFailed || task.Attempt != 2 || task.Error.Code != protocol.CodeTimeout {
		t.Fatalf("loop after restart: %s attempt %d %+v", task.State, task.Attempt, task.Error)
	}
}
