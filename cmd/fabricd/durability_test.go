package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/protocol"
)

// submitLoop submits echo tasks in batches until stop is closed or the
// connection fails, and returns the ids the server acknowledged.
func submitLoop(t *testing.T, c *client.Client, batch int, stop <-chan struct{}, n *atomic.Int64) []string {
	var acked []string
	for i := 0; ; i++ {
		select {
		case <-stop:
			return acked
		default:
		}
		calls := make([]client.BatchCall, batch)
		results := make([]protocol.SubmitResult, batch)
		for j := range calls {
			calls[j] = client.BatchCall{Method: "task.submit", Params: map[string]any{
				"agent": "echo", "input": map[string]int{"i": i, "j": j}, "max_retries": 5,
				"backoff": map[string]any{"initial_ms": 10, "max_ms": 50},
			}, Result: &results[j]}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.Batch(ctx, calls)
		cancel()
		if err != nil {
			return acked // the connection died with the server
		}
		for j := range calls {
			if calls[j].Error == nil {
				acked = append(acked, results[j].TaskID)
			}
		}
		if n != nil {
			n.Store(int64(len(acked)))
		}
	}
}

// TestKillNineLosesNothing is issue 3's proof: thousands of tasks submitted
// over a WebSocket, fabricd killed with SIGKILL mid-run, restarted on the
// same --data; every acknowledged task reaches a terminal state, none
// succeeds twice, and the events replay without a gap.
func TestKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	data := t.TempDir()
	s := fabricdtest.Start(t, "--data", data, "--workers", "2")
	c := dial(t, s)
	register(t, c, "echo", "echo")

	stop := make(chan struct{})
	var acked []string
	var nAcked atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); acked = submitLoop(t, c, 100, stop, &nAcked) }()
	// Kill it once a good share of the work is acknowledged (counted where
	// the client has the answers, not where the server counts submits) and
	// some has run.
	fabricdtest.WaitFor(t, 2*time.Minute, "tasks to finish before the kill", func() bool {
		if nAcked.Load() < 2000 {
			return false
		}
		var r protocol.KPIReport
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.Call(ctx, "kpi.get", nil, &r) == nil && r.Completed >= 300
	})
	s.Kill()
	close(stop)
	wg.Wait()
	if len(acked) < 2000 {
		t.Fatalf("only %d tasks acknowledged before the kill", len(acked))
	}
	t.Logf("%d tasks acknowledged before SIGKILL", len(acked))

	s2 := fabricdtest.Start(t, "--data", data, "--workers", "2")
	c2 := dial(t, s2, client.Options{BlockNotifications: true})
	for _, id := range acked {
		var task protocol.Task
		call(t, c2, "task.wait", map[string]any{"task_id": id, "timeout_ms": 120000}, &task)
		if task.State != protocol.StateSucceeded {
			t.Fatalf("task %s after restart: %s %+v", id, task.State, task.Error)
		}
	}

	// Replay every event from the start, reading as they come: the replay
	// arrives before the answer to task.subscribe.
	type result struct {
		last      int64
		succeeded map[string]int
		err       error
	}
	want := len(acked)
	res := make(chan result, 1)
	go func() {
		r := result{succeeded: map[string]int{}}
		deadline := time.After(3 * time.Minute)
		for len(r.succeeded) < want {
			select {
			case n := <-c2.Notifications():
				var ev protocol.TaskEvent
				if err := json.Unmarshal(n.Params, &ev); err != nil || n.Method != "task.event" {
					continue
				}
				if ev.Seq != r.last+1 {
					r.err = fmt.Errorf("replay jumped from seq %d to %d", r.last, ev.Seq)
					res <- r
					return
				}
				r.last = ev.Seq
				if ev.State == protocol.StateSucceeded {
					r.succeeded[ev.TaskID]++
					if r.succeeded[ev.TaskID] > 1 {
						r.err = fmt.Errorf("task %s succeeded twice", ev.TaskID)
						res <- r
						return
					}
				}
			case <-deadline:
				r.err = fmt.Errorf("replayed up to seq %d; %d of %d tasks seen succeeding", r.last, len(r.succeeded), want)
				res <- r
				return
			}
		}
		res <- r
	}()
	var sub protocol.SubscriptionResult
	call(t, c2, "task.subscribe", map[string]any{"after_seq": 0}, &sub)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := c2.Dropped(); d > 0 {
		t.Fatalf("the client dropped %d notifications; the replay check is void", d)
	}
}

// TestSIGTERMDrainsAndLosesNothing: SIGTERM with tasks in flight exits 0,
// refuses new work while draining, and every accepted task completes after
// a restart.
func TestSIGTERMDrainsAndLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	data := t.TempDir()
	s := fabricdtest.Start(t, "--data", data, "--workers", "1", "--drain-timeout", "300ms")
	c := dial(t, s)
	register(t, c, "loop", "loop")
	register(t, c, "echo", "echo")
	var ids []string
	for i := 0; i < 3; i++ {
		var r protocol.SubmitResult
		call(t, c, "task.submit", map[string]any{"agent": "loop", "timeout_ms": 1000, "max_retries": 0}, &r)
		ids = append(ids, r.TaskID)
	}
	for i := 0; i < 20; i++ {
		var r protocol.SubmitResult
		call(t, c, "task.submit", map[string]any{"agent": "echo", "input": i}, &r)
		ids = append(ids, r.TaskID)
	}
	s.Cmd.Process.Signal(syscall.SIGTERM)
	fabricdtest.WaitFor(t, time.Minute, "draining", func() bool { return strings.Contains(s.Log(), "draining") })
	if resp, err := http.Get("http://" + s.Addr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz while draining: %d, want 503", resp.StatusCode)
		}
	}
	// While it drains, new work is refused with -32007 (or the connection
	// is already closed).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := c.Call(ctx, "task.submit", map[string]any{"agent": "echo"}, nil)
	cancel()
	var pe *protocol.Error
	if err == nil || (errors.As(err, &pe) && pe.Code != -32007) {
		t.Errorf("submit while draining: %v, want -32007", err)
	}
	if code := s.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, s.Log())
	}

	s2 := fabricdtest.Start(t, "--data", data, "--workers", "2")
	c2 := dial(t, s2)
	for i, id := range ids {
		var task protocol.Task
		call(t, c2, "task.wait", map[string]any{"task_id": id, "timeout_ms": 60000}, &task)
		want := protocol.StateSucceeded
		if i < 3 {
			want = protocol.StateFailed // the loops time out, wherever they ran
		}
		if task.State != want {
			t.Errorf("task %d (%s): %s %+v, want %s", i, id, task.State, task.Error, want)
		}
	}
}

// TestSecondSignalStopsAtOnce: a second SIGTERM cuts the drain short; the
// running task is requeued durably, not lost.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	data := t.TempDir()
	s := fabricdtest.Start(t, "--data", data, "--workers", "1", "--drain-timeout", "10m")
	c := dial(t, s)
	register(t, c, "loop", "loop")
	var r protocol.SubmitResult
	call(t, c, "task.submit", map[string]any{"agent": "loop", "timeout_ms": 600000}, &r)
	fabricdtest.WaitFor(t, time.Minute, "the loop to run", func() bool {
		var task protocol.Task
		call(t, c, "task.get", map[string]any{"task_id": r.TaskID}, &task)
		return task.State == protocol.StateRunning
	})
	s.Cmd.Process.Signal(syscall.SIGTERM)
	fabricdtest.WaitFor(t, time.Minute, "draining", func() bool { return strings.Contains(s.Log(), "draining") })
	began := time.Now()
	s.Cmd.Process.Signal(syscall.SIGTERM)
	if code := s.ExitCode(); code != 0 {
		t.Fatalf("exit code %d\n%s", code, s.Log())
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Fatalf("the second signal took %s to stop fabricd", d)
	}

	s2 := fabricdtest.Start(t, "--data", data, "--workers", "1")
	c2 := dial(t, s2)
	var task protocol.Task
	call(t, c2, "task.get", map[string]any{"task_id": r.TaskID}, &task)
	if task.State != protocol.StateQueued && task.State != protocol.StateRunning {
		t.Fatalf("after a hard stop the task is %s, want it back in the queue", task.State)
	}
	call(t, c2, "task.cancel", map[string]any{"task_id": r.TaskID}, &task)
}
