package sched_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a started scheduler on the memory store and the wazero engine.
type fixture struct {
	t  *testing.T
	s  *sched.Scheduler
	st store.Store
}

func start(t *testing.T, mod func(*sched.Config)) *fixture {
	t.Helper()
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() }) // after the scheduler's Stop: cleanups run last first
	return startOn(t, st, mod)
}

func agentBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "agents", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) register(name, file string) protocol.Agent {
	f.t.Helper()
	a, err := f.s.RegisterAgent(context.Background(), &protocol.RegisterParams{Name: name, Wasm: agentBytes(f.t, file)})
	if err != nil {
		f.t.Fatalf("register %s: %v", name, err)
	}
	return a
}

func (f *fixture) submit(p protocol.SubmitParams) string {
	f.t.Helper()
	if err := p.Validate(); err != nil {
		f.t.Fatal(err)
	}
	r, _, err := f.s.Submit(context.Background(), &p, nil)
	if err != nil {
		f.t.Fatalf("submit: %v", err)
	}
	return r.TaskID
}

func (f *fixture) wait(id string) protocol.Task {
	f.t.Helper()
	t, err := f.s.Wait(context.Background(), id, 30*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	if !t.State.Terminal() {
		f.t.Fatalf("task %s still %s after 30s", id, t.State)
	}
	return t
}

func ptr[T any](v T) *T { return &v }

func TestSubmitRunsToSuccess(t *testing.T) {
	f := start(t, nil)
	f.register("echo", "echo")
	id := f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`{"a":1}`)})
	task := f.wait(id)
	if task.State != protocol.StateSucceeded || task.Attempt != 1 {
		t.Fatalf("state %s attempt %d error %+v", task.State, task.Attempt, task.Error)
	}
	if string(task.Result.Output) != `{"a":1}` {
		t.Fatalf("output %q", task.Result.Output)
	}
	if task.Result.Usage.GPUUtilization != nil {
		t.Fatal("gpu_utilization must be null without a GPU")
	}
}

func TestUnknownAgentIsNotFound(t *testing.T) {
	f := start(t, nil)
	_, _, err := f.s.Submit(context.Background(), &protocol.SubmitParams{Agent: "nope"}, nil)
	if !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("got %v, want -32001", err)
	}
}

func TestRegisterConflictAndNoop(t *testing.T) {
	f := start(t, nil)
	a := f.register("x", "echo")
	b := f.register("x", "echo")
	if a.RegisteredAt != b.RegisteredAt || a.Digest != b.Digest {
		t.Fatalf("same bytes again must be a no-op: %+v vs %+v", a, b)
	}
	_, err := f.s.RegisterAgent(context.Background(), &protocol.RegisterParams{Name: "x", Wasm: agentBytes(t, "loop")})
	if !errors.Is(err, protocol.ErrConflict) {
		t.Fatalf("other bytes without replace: got %v, want -32006", err)
	}
	c, err := f.s.RegisterAgent(context.Background(), &protocol.RegisterParams{Name: "x", Wasm: agentBytes(t, "loop"), Replace: true})
	if err != nil || c.Digest == a.Digest {
		t.Fatalf("replace: %v %+v", err, c)
	}
	_, err = f.s.RegisterAgent(context.Background(), &protocol.RegisterParams{Name: "bad", Wasm: []byte("not wasm")})
	if !errors.Is(err, protocol.ErrInvalidModule) {
		t.Fatalf("garbage module: got %v, want -32003", err)
	}
}

func TestPriorityOrderAndFIFO(t *testing.T) {
	f := start(t, func(c *sched.Config) { c.Workers = 1 })
	f.register("loop", "loop")
	f.register("echo", "echo")
	// Occupy the only worker, then queue tasks of every priority.
	blocker := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000, MaxRetries: ptr(0)})
	waitState(t, f, blocker, protocol.StateRunning)

	var mu sync.Mutex
	var order []string
	sub, err := f.s.Subscribe(context.Background(), store.EventFilter{Agent: "echo"}, nil, func(ev protocol.TaskEvent) {
		if ev.State == protocol.StateRunning {
			mu.Lock()
			order = append(order, ev.TaskID)
			mu.Unlock()
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	prios := []protocol.Priority{protocol.Low, protocol.Critical, protocol.Normal, protocol.Background, protocol.High, protocol.Critical, protocol.Low}
	ids := make([]string, len(prios))
	for i, p := range prios {
		ids[i] = f.submit(protocol.SubmitParams{Agent: "echo", Priority: ptr(p), Input: json.RawMessage(`1`)})
	}
	if _, err := f.s.Cancel(context.Background(), blocker); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		f.wait(id)
	}
	want := []string{ids[1], ids[5], ids[4], ids[2], ids[0], ids[6], ids[3]}
	// A task's events may reach subscribers after task.wait has answered
	// from its committed record.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if i >= len(order) || order[i] != want[i] {
			t.Fatalf("run order:\n got %v\nwant %v", order, want)
		}
	}
}

func waitState(t *testing.T, f *fixture, id string, st protocol.State) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		task, err := f.s.Task(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == st {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("task %s never reached %s", id, st)
}

func TestTimeoutStopsRunawayGuest(t *testing.T) {
	f := start(t, nil)
	f.register("loop", "loop")
	id := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 200, MaxRetries: ptr(0)})
	task := f.wait(id)
	if task.State != protocol.StateFailed || task.Error == nil || task.Error.Code != protocol.CodeTimeout {
		t.Fatalf("got %s %+v, want failed with timeout", task.State, task.Error)
	}
	if !task.Error.Retryable {
		t.Fatal("a timeout is retryable")
	}
}

func TestRetriesWithBackoffThenDeadLetter(t *testing.T) {
	f := start(t, nil)
	f.register("fail", "exit_status")
	id := f.submit(protocol.SubmitParams{Agent: "fail", MaxRetries: ptr(2),
		Backoff: &protocol.Backoff{InitialMs: 5, MaxMs: 20, Multiplier: 2, Jitter: 0.5}})
	var states []protocol.State
	var mu sync.Mutex
	sub, err := f.s.Subscribe(context.Background(), store.EventFilter{TaskIDs: []string{id}}, ptr(int64(0)), func(ev protocol.TaskEvent) {
		mu.Lock()
		states = append(states, ev.State)
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	task := f.wait(id)
	if task.State != protocol.StateFailed || task.Attempt != 3 || len(task.AttemptErrors) != 3 {
		t.Fatalf("state %s attempt %d attempt_errors %d", task.State, task.Attempt, len(task.AttemptErrors))
	}
	if task.Error.Code != protocol.CodeExitStatus {
		t.Fatalf("error %+v", task.Error)
	}
	list, err := f.s.List(context.Background(), &protocol.ListParams{State: protocol.StateFailed})
	if err != nil || len(list.Tasks) != 1 || list.Tasks[0].TaskID != id {
		t.Fatalf("dead letters: %v %+v", err, list)
	}
	want := []protocol.State{"queued", "running", "retrying", "running", "retrying", "running", "failed"}
	// task.wait may answer from the committed record before the terminal
	// event has reached subscribers: wait for it, then compare.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(states)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) != len(want) {
		t.Fatalf("events %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("events %v, want %v", states, want)
		}
	}
}

func TestCancelQueuedAndRunning(t *testing.T) {
	f := start(t, func(c *sched.Config) { c.Workers = 1 })
	f.register("loop", "loop")
	running := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
	queued := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
	waitState(t, f, running, protocol.StateRunning)

	task, err := f.s.Cancel(context.Background(), queued)
	if err != nil || task.State != protocol.StateCancelled {
		t.Fatalf("cancel queued: %v %s", err, task.State)
	}
	task, err = f.s.Cancel(context.Background(), running)
	if err != nil || task.State != protocol.StateCancelled || task.Error.Code != protocol.CodeCancelled {
		t.Fatalf("cancel running: %v %+v", err, task)
	}
	again, err := f.s.Cancel(context.Background(), running)
	if err != nil || again.State != protocol.StateCancelled {
		t.Fatalf("cancel twice: %v %s", err, again.State)
	}
	if _, err := f.s.Cancel(context.Background(), "no-such-task"); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := start(t, nil)
	f.register("echo", "echo")
	p := protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`{"a": 1}`), IdempotencyKey: "k1"}
	r1, _, err := f.s.Submit(context.Background(), &p, nil)
	if err != nil || !r1.Created {
		t.Fatal(err, r1)
	}
	p2 := p
	p2.Input = json.RawMessage(`{"a":1}`) // same value, other spelling
	r2, _, err := f.s.Submit(context.Background(), &p2, nil)
	if err != nil || r2.Created || r2.TaskID != r1.TaskID {
		t.Fatalf("repeat: %v %+v", err, r2)
	}
	p3 := p
	p3.Input = json.RawMessage(`{"a":2}`)
	if _, _, err := f.s.Submit(context.Background(), &p3, nil); !errors.Is(err, protocol.ErrConflict) {
		t.Fatalf("other params: %v, want -32006", err)
	}
}

func TestQueueFullIsOverloaded(t *testing.T) {
	f := start(t, func(c *sched.Config) { c.Workers = 1; c.MaxQueued = 3 })
	f.register("loop", "loop")
	blocker := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
	waitState(t, f, blocker, protocol.StateRunning)
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 100, MaxRetries: ptr(0)}))
	}
	_, _, err := f.s.Submit(context.Background(), &protocol.SubmitParams{Agent: "loop"}, nil)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.ErrOverloaded.Code || pe.Data["retry_after_ms"] == nil {
		t.Fatalf("got %v, want -32002 with retry_after_ms", err)
	}
	f.s.Cancel(context.Background(), blocker)
	for _, id := range ids {
		if task := f.wait(id); task.Error == nil || task.Error.Code != protocol.CodeTimeout {
			t.Fatalf("accepted task %s: %+v", id, task.Error)
		}
	}
}

func TestSubscribeReplaysWithoutGapOrDuplicate(t *testing.T) {
	f := start(t, nil)
	f.register("echo", "echo")
	for i := 0; i < 20; i++ {
		f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`1`)})
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	sub, err := f.s.Subscribe(context.Background(), store.EventFilter{}, ptr(int64(0)), func(ev protocol.TaskEvent) {
		mu.Lock()
		seen[ev.Seq]++
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var last string
	for i := 0; i < 20; i++ {
		last = f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`2`)})
	}
	f.wait(last)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ls, _ := f.st.LastSeq(context.Background())
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if int64(n) == ls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("saw %d distinct events, store has %d", n, ls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("event %d delivered %d times", seq, n)
		}
	}
}

func TestUnregisterFailsWaitingTasks(t *testing.T) {
	f := start(t, func(c *sched.Config) { c.Workers = 1 })
	f.register("loop", "loop")
	f.register("echo", "echo")
	blocker := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
	waitState(t, f, blocker, protocol.StateRunning)
	id := f.submit(protocol.SubmitParams{Agent: "echo"})
	if err := f.s.UnregisterAgent(context.Background(), "echo"); err != nil {
		t.Fatal(err)
	}
	task := f.wait(id)
	if task.State != protocol.StateFailed || task.Error.Code != protocol.CodeAgentMissing || task.Error.Retryable {
		t.Fatalf("got %s %+v", task.State, task.Error)
	}
	f.s.Cancel(context.Background(), blocker)
}

func TestDrainRefusesNewWork(t *testing.T) {
	f := start(t, nil)
	f.register("echo", "echo")
	f.s.Drain()
	_, _, err := f.s.Submit(context.Background(), &protocol.SubmitParams{Agent: "echo"}, nil)
	if !errors.Is(err, protocol.ErrShuttingDown) {
		t.Fatalf("got %v, want -32007", err)
	}
	if h := f.s.Health(context.Background()); h.Status != protocol.HealthDraining {
		t.Fatalf("health %q", h.Status)
	}
}

func TestStopRequeuesRunningTasks(t *testing.T) {
	eng, err := executor.NewWazero(executor.WazeroOptions{MaxMemoryBytes: 1 << 30, MaxModuleBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	st := store.NewMemory()
	defer st.Close()
	s, err := sched.New(sched.Config{Store: st, Engine: eng, Workers: 1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, s: s, st: st}
	f.register("loop", "loop")
	id := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
	waitState(t, f, id, protocol.StateRunning)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); err == nil {
		t.Fatal("Stop must report that the drain timeout cut a task short")
	}
	rec, err := st.GetTask(context.Background(), id)
	if err != nil || rec.State != protocol.StateQueued || rec.Attempt != 1 {
		t.Fatalf("after stop: %v state %s attempt %d", err, rec.State, rec.Attempt)
	}
}

func TestWaitTimeoutReturnsTaskAsItStands(t *testing.T) {
	f := start(t, func(c *sched.Config) { c.Workers = 1 })
	f.register("loop", "loop")
	id := f.submit(protocol.SubmitParams{Agent: "loop", TimeoutMs: 60_000})
	task, err := f.s.Wait(context.Background(), id, 20*time.Millisecond)
	if err != nil || task.State.Terminal() {
		t.Fatalf("%v %s", err, task.State)
	}
	f.s.Cancel(context.Background(), id)
}

func TestProgressFloodIsCoalesced(t *testing.T) {
	f := start(t, func(c *sched.Config) { c.ProgressInterval = 20 * time.Millisecond })
	f.register("pf", "progressflood")
	id := f.submit(protocol.SubmitParams{Agent: "pf", TimeoutMs: 2000, MaxRetries: ptr(0)})
	task := f.wait(id)
	evs, err := f.st.Events(context.Background(), 0, store.EventFilter{TaskIDs: []string{id}}, 100000)
	if err != nil {
		t.Fatal(err)
	}
	progress := 0
	for _, ev := range evs {
		if ev.Progress != nil {
			progress++
		}
	}
	// At most one per interval over the run, however many the guest sent.
	limit := int(task.Result.DurationMs/20) + 3
	if progress > limit {
		t.Fatalf("%d progress events over %.0fms; want at most %d", progress, task.Result.DurationMs, limit)
	}
}

func TestKPIReport(t *testing.T) {
	f := start(t, nil)
	f.register("echo", "echo")
	for i := 0; i < 5; i++ {
		f.wait(f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`1`)}))
	}
	r := f.s.KPI(context.Background())
	if r.Submitted != 5 || r.Completed != 5 || r.Failed != 0 || r.Workers != 2 || len(r.QueueDepth) != 5 {
		t.Fatalf("%+v", r)
	}
	if len(r.Agents) != 1 || r.Agents[0].Succeeded != 5 || r.Agents[0].TasksTotal != 5 {
		t.Fatalf("agents %+v", r.Agents)
	}
}

func TestRetentionPrunesFinishedTasks(t *testing.T) {
	f := start(t, func(c *sched.Config) {
		c.Retention = sched.Retention{Keep: 2, Interval: 10 * time.Millisecond}
	})
	f.register("echo", "echo")
	var ids []string
	for i := 0; i < 6; i++ {
		id := f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`1`)})
		f.wait(id)
		ids = append(ids, id)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := f.s.List(context.Background(), &protocol.ListParams{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Tasks) == 2 {
			if list.Tasks[0].TaskID != ids[5] || list.Tasks[1].TaskID != ids[4] {
				t.Fatalf("kept %s, %s; want the newest two", list.Tasks[0].TaskID, list.Tasks[1].TaskID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks kept, want 2", len(list.Tasks))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.s.Task(context.Background(), ids[0]); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("a pruned task: %v, want -32001", err)
	}
}

// Retention.Max holds under a flood of tiny tasks: with the timer out of
// the way (an hour), the count of finished tasks alone starts the prunes,
// and it comes within Max + Max/8 (the slack before a prune starts) with no
// per-task prune.
func TestRetentionMaxCapsFinishedTasks(t *testing.T) {
	const limit, n = 40, 600
	f := start(t, func(c *sched.Config) {
		c.Retention = sched.Retention{Max: limit, Interval: time.Hour}
	})
	f.register("echo", "echo")
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, f.submit(protocol.SubmitParams{Agent: "echo", Input: json.RawMessage(`1`)}))
	}
	for _, id := range ids[n-limit:] {
		f.wait(id) // the newest may still be pruned by the time a later one ends
	}
	finished := func() (done, all int) {
		for cursor := ""; ; {
			page, next, err := f.st.ListTasks(context.Background(), store.TaskFilter{Cursor: cursor, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range page {
				all++
				if tr.State.Terminal() {
					done++
				}
			}
			if cursor = next; cursor == "" {
				return done, all
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		done, all := finished() // a task claimed before the newest may still run
		if done == all && done <= limit+limit/8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d finished tasks kept (%d unfinished), want at most %d (Max %d + Max/8)", done, all-done, limit+limit/8, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.s.Task(context.Background(), ids[0]); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("a pruned task: %v, want -32001", err)
	}
	if _, err := f.s.Wait(context.Background(), ids[0], time.Second); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("task.wait of a pruned task: %v, want -32001", err)
	}
}
