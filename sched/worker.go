package sched

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// runningTask is a task on a worker.
type runningTask struct {
	cancel context.CancelCauseFunc

	mu       sync.Mutex // orders progress events before the final one
	progress float64    // latest reported, guarded by mu
	sent     float64    // latest stored, guarded by mu
	done     bool       // the final event is written, guarded by mu
	rec      *store.TaskRecord
}

func (s *Scheduler) worker(id int) {
	defer s.wg.Done()
	ctx := context.Background()
	for {
		select {
		case <-s.stopping:
			return
		default:
		}
		t, ev, ok, err := s.st.Claim(ctx, s.now())
		if err != nil {
			s.storeFailed(err)
			if !s.idle(ctx, time.Second) {
				return
			}
			continue
		}
		if !ok {
			next := time.Minute
			if at, ok, err := s.st.NextReadyAt(ctx, s.now()); err == nil && ok {
				next = max(at.Sub(s.now()), time.Millisecond)
			}
			if !s.idle(ctx, next) {
				return
			}
			continue
		}
		s.depth[t.Priority].Add(-1)
		s.runTask(ctx, t, ev)
	}
}

// idle waits for a poke or d; false means the scheduler is stopping.
func (s *Scheduler) idle(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-s.wake:
		return true
	case <-timer.C:
		return true
	case <-s.stopping:
		return false
	}
}

// runTask runs a claimed task; started is its "running" event, published
// once the run is registered, so that whoever hears of it can cancel it and
// counts it as running.
func (s *Scheduler) runTask(ctx context.Context, t store.TaskRecord, started protocol.TaskEvent) {
	log := s.log.With().Str("task_id", t.TaskID).Str("agent", t.Agent).Int("attempt", t.Attempt).Logger()
	e := s.acquire(t.Agent)
	if e == nil {
		s.publish(started)
		s.finish(ctx, &t, nil, executor.Outcome{Err: protocol.NewTaskError(protocol.CodeAgentMissing, "agent %q is not registered", t.Agent)})
		return
	}
	defer s.release(e)

	runCtx, cancel := context.WithCancelCause(s.runCtx)
	defer cancel(nil)
	rt := &runningTask{cancel: cancel, rec: &t, progress: -1, sent: -1}
	s.mu.Lock()
	s.run[t.TaskID] = rt
	if s.cancel[t.TaskID] {
		delete(s.cancel, t.TaskID)
		cancel(errCancel)
	}
	s.mu.Unlock()
	e.stats.started()
	s.publish(started)

	inv := executor.Invocation{
		TaskID:           t.TaskID,
		Input:            t.Input,
		Timeout:          time.Duration(t.TimeoutMs) * time.Millisecond,
		MemoryLimitBytes: uint64(t.Quota.MemoryMB) << 20,
		OutputLimitBytes: t.Quota.OutputBytes,
		LogLimitBytes:    s.logLimit(e.agent),
		Seed:             seedFor(t.TaskID, t.Attempt),
		OnProgress: func(p float64) {
			rt.mu.Lock()
			rt.progress = p
			rt.mu.Unlock()
		},
	}
	if t.Quota.Fuel != nil {
		inv.Fuel = *t.Quota.Fuel
	}
	log.Debug().Msg("task started")
	if t.Attempt == 1 && t.StartedAt != nil {
		s.cfg.Metrics.QueueWait(t.Priority.String(), t.StartedAt.Sub(t.CreatedAt))
	}
	out := s.invoke(runCtx, e.mod, inv)
	code := ""
	if out.Err != nil {
		code = out.Err.Code
	}
	s.cfg.Metrics.Attempt(t.Agent, code, out.Duration)
	if out.Instantiate > 0 {
		s.cfg.Metrics.Instantiated(out.Instantiate)
	}

	s.mu.Lock()
	delete(s.run, t.TaskID)
	delete(s.cancel, t.TaskID)
	s.mu.Unlock()

	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errShutdown):
		s.requeue(ctx, rt)
		return
	case errors.Is(cause, errCancel):
		out.Err = protocol.NewTaskError(protocol.CodeCancelled, "cancelled by task.cancel while running")
	}
	s.finish(ctx, &t, rt, out)
	if out.Err != nil {
		log.Info().Str("code", out.Err.Code).Str("error", out.Err.Message).Str("state", string(t.State)).Msg("task attempt failed")
	} else {
		log.Debug().Dur("duration", out.Duration).Msg("task succeeded")
	}
}

// invoke runs the guest; a panic on our side of the call becomes the task's
// internal error, with its stack, and the worker goes on.
func (s *Scheduler) invoke(ctx context.Context, m executor.Module, inv executor.Invocation) (out executor.Outcome) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str("task_id", inv.TaskID).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("panic while running a task")
			out = executor.Outcome{Err: protocol.NewTaskError(protocol.CodeInternal, "panic in the fabric while running the task: %v", r)}
		}
	}()
	return m.Run(ctx, inv)
}

func (s *Scheduler) logLimit(a protocol.Agent) int64 {
	if a.Limits.LogBytes > 0 {
		return a.Limits.LogBytes
	}
	return s.cfg.Limits.MaxLogBytes
}

// seedFor derives the deterministic random seed of an attempt.
func seedFor(taskID string, attempt int) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", taskID, attempt)
	return int64(h.Sum64() & math.MaxInt64)
}

// finish records an attempt's outcome: success, a retry after backoff, or
// failure.
func (s *Scheduler) finish(ctx context.Context, t *store.TaskRecord, rt *runningTask, out executor.Outcome) {
	now := s.now().UTC()
	res := &protocol.ExecutionResult{
		Usage:         out.Usage,
		KPIs:          out.KPIs,
		Logs:          out.Logs,
		DurationMs:    float64(out.Duration.Microseconds()) / 1000,
		LogsTruncated: out.LogsTruncated,
	}
	if res.KPIs == nil {
		res.KPIs = map[string]float64{}
	}
	if res.Logs == nil {
		res.Logs = []protocol.LogLine{}
	}
	res.SetOutput(out.Output)
	t.Result = res
	t.Error = out.Err
	switch {
	case out.Err == nil:
		t.State = protocol.StateSucceeded
		t.FinishedAt, t.NextAttemptAt = &now, nil
	case out.Err.Retryable && t.Attempt <= t.MaxRetries:
		t.AttemptErrors = append(t.AttemptErrors, *out.Err)
		t.State = protocol.StateRetrying
		at := now.Add(t.Backoff.Delay(t.Attempt, s.uniform()))
		t.ReadyAt, t.NextAttemptAt = at, &at
	default:
		t.AttemptErrors = append(t.AttemptErrors, *out.Err)
		t.State = protocol.StateFailed
		if out.Err.Code == protocol.CodeCancelled {
			t.State = protocol.StateCancelled
		}
		t.FinishedAt, t.NextAttemptAt = &now, nil
	}
	if rt != nil {
		// No progress event is stored after this: the final event is last.
		rt.mu.Lock()
		rt.done = true
		rt.mu.Unlock()
	}
	// The worker does not wait for the outcome's commit: it goes on to claim
	// its next task while the store's writer commits this one together
	// with other writes. Nothing is announced (event, waiters, KPIs) until
	// the commit is durable; a crash before it runs the task again, as for
	// any task left running.
	rec := *t
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ev, err := s.st.UpdateTask(ctx, rec, protocol.StateRunning)
		if err != nil {
			s.forget(rec.TaskID)
			s.storeFailed(fmt.Errorf("recording the outcome of task %s: %w", rec.TaskID, err))
			return
		}
		if rec.State == protocol.StateRetrying {
			s.depth[rec.Priority].Add(1)
			s.poke() // an idle worker re-arms its timer for the retry
		}
		s.finished(&rec, &out)
		if rec.State.Terminal() {
			s.wakeWaiters(rec.TaskID, &rec.Task)
		}
		s.publish(ev)
	}()
}

// requeue puts a task stopped by shutdown back in the queue.
func (s *Scheduler) requeue(ctx context.Context, rt *runningTask) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.done = true
	t := *rt.rec
	t.State, t.ReadyAt, t.NextAttemptAt = protocol.StateQueued, time.Time{}, nil
	ev, err := s.st.UpdateTask(ctx, t, protocol.StateRunning)
	if err != nil {
		// Recover puts it back at the next start all the same.
		s.storeFailed(fmt.Errorf("requeueing task %s at shutdown: %w", t.TaskID, err))
		return
	}
	s.depth[t.Priority].Add(1)
	s.publish(ev)
	s.log.Info().Str("task_id", t.TaskID).Msg("task requeued at shutdown")
}

// finished updates KPIs and stats after a transition, and wakes waiters of
// terminal tasks.
func (s *Scheduler) finished(t *store.TaskRecord, out *executor.Outcome) {
	now := s.now()
	s.mu.Lock()
	e := s.agents[t.Agent]
	s.mu.Unlock()
	if e != nil && out != nil {
		e.stats.ended(t, out, now)
	} else if e != nil && t.State.Terminal() {
		e.stats.ended(t, nil, now)
	}
	if !t.State.Terminal() {
		return
	}
	s.cfg.Metrics.TaskFinished(t.Priority.String(), t.Agent, string(t.State))
	var custom map[string]float64
	if t.Result != nil {
		custom = t.Result.KPIs
	}
	s.kpi.completed(now, now.Sub(t.CreatedAt), t.State, custom)
}

// progressLoop stores the latest progress of each running task at most once
// per ProgressInterval: a guest flooding progress costs one event per
// interval, never an unbounded buffer.
func (s *Scheduler) progressLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.ProgressInterval)
	defer tick.Stop()
	ctx := context.Background()
	var batch []*runningTask
	for {
		select {
		case <-s.stopping:
			return
		case <-tick.C:
		}
		batch = batch[:0]
		s.mu.Lock()
		for _, rt := range s.run {
			batch = append(batch, rt)
		}
		s.mu.Unlock()
		for _, rt := range batch {
			s.flushProgress(ctx, rt)
		}
	}
}

func (s *Scheduler) flushProgress(ctx context.Context, rt *runningTask) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.done || rt.progress < 0 || rt.progress == rt.sent {
		return
	}
	ev, err := s.st.AppendProgress(ctx, rt.rec.TaskID, rt.rec.Attempt, rt.progress, s.now().UTC())
	if err != nil {
		s.storeFailed(err)
		return
	}
	rt.sent = rt.progress
	s.publish(ev)
}

// pruneLoop removes old finished tasks in the background.
func (s *Scheduler) pruneLoop() {
	defer s.wg.Done()
	r := s.cfg.Retention
	every := r.Interval
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stopping:
			return
		case <-tick.C:
		}
		cutoff := s.now().Add(-r.MaxAge)
		if r.MaxAge == 0 {
			cutoff = s.now()
		}
		n, err := s.st.Prune(context.Background(), cutoff, r.Keep)
		if err != nil {
			s.storeFailed(fmt.Errorf("pruning finished tasks: %w", err))
			continue
		}
		if n > 0 {
			s.log.Info().Int("tasks", n).Msg("pruned finished tasks")
		}
	}
}
