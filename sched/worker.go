package sched

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// runningTask is a task on a worker.
type runningTask struct {
	cancel context.CancelCauseFunc
	// announced is closed once the task's "running" event is published
	// (or known never to be): no progress event goes out before it, nor
	// the running event of the worker's next task.
	announced chan struct{}
	prev      chan struct{} // announced of the worker's previous task
	after     chan struct{} // the held event that made the task waiting (holdEvents), if any
	// ended tells follow that the run is over: end holds how.
	ended chan struct{}
	end   ending

	mu       sync.Mutex        // orders progress events before the final one
	progress float64           // latest reported, guarded by mu
	sent     float64           // latest stored, guarded by mu
	done     bool              // the final event is written, guarded by mu
	rec      *store.TaskRecord // the task as claimed: &task
	task     store.TaskRecord
}

// ending is how a run ended: its outcome to record, or a shutdown that
// puts the task back in the queue.
type ending struct {
	rec     store.TaskRecord // the task with the attempt's outcome
	out     executor.Outcome
	requeue bool
}

// errClaimLost stops a run whose claim did not reach the store.
var errClaimLost = errors.New("the task's claim was not recorded")

func (s *Scheduler) worker(id int) {
	defer s.wg.Done()
	ctx := context.Background()
	var last chan struct{} // the previous task's announced
	for {
		select {
		case <-s.stopping:
			return
		default:
		}
		t, started, ok, err := s.st.Claim(ctx, s.now())
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
		last = s.runTask(ctx, t, started, last)
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

// runTask runs a claimed task. The claim may not be committed yet (the
// store says so through started): the run goes ahead meanwhile, and follow
// announces the task as running once the claim is durable, after the
// worker's previous task (prev), then records the run's outcome. The worker
// never waits for a commit: it goes on to claim its next task while the
// store's writer commits this one's writes with others. runTask returns the
// task's announced.
func (s *Scheduler) runTask(ctx context.Context, t store.TaskRecord, started *store.Pending, prev chan struct{}) chan struct{} {
	runCtx, cancel := context.WithCancelCause(s.runCtx)
	defer cancel(nil)
	rt := &runningTask{cancel: cancel, task: t, progress: -1, sent: -1,
		announced: make(chan struct{}), prev: prev, ended: make(chan struct{}, 1)}
	rt.rec = &rt.task
	tp := rt.rec
	// Registered before it is announced, so that whoever hears of it can
	// cancel it.
	s.mu.Lock()
	s.run[t.TaskID] = rt
	rt.after = s.publishing[t.TaskID]
	if s.cancel[t.TaskID] {
		delete(s.cancel, t.TaskID)
		cancel(errCancel)
	}
	s.mu.Unlock()
	s.wg.Add(1)
	go s.follow(ctx, rt, started)

	var out executor.Outcome
	if e := s.acquire(t.Agent); e == nil {
		out = executor.Outcome{Err: protocol.NewTaskError(protocol.CodeAgentMissing, "agent %q is not registered", t.Agent)}
	} else {
		e.stats.started()
		out = s.execute(runCtx, e, tp, rt)
		s.release(e)
	}

	s.mu.Lock()
	delete(s.run, t.TaskID)
	delete(s.cancel, t.TaskID)
	s.mu.Unlock()

	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errClaimLost):
		return rt.announced // follow records nothing
	case errors.Is(cause, errShutdown):
		rt.end = ending{requeue: true}
		rt.ended <- struct{}{}
		return rt.announced
	case errors.Is(cause, errCancel):
		out.Err = protocol.NewTaskError(protocol.CodeCancelled, "cancelled by task.cancel while running")
	}
	// No progress event is stored after this: the final event is last.
	rt.mu.Lock()
	rt.done = true
	rt.mu.Unlock()
	rt.end = ending{rec: s.outcome(*tp, out), out: out}
	state := rt.end.rec.State
	rt.ended <- struct{}{} // follow owns rt.end from here
	if out.Err != nil {
		s.log.Info().Str("task_id", tp.TaskID).Str("agent", tp.Agent).Int("attempt", tp.Attempt).
			Str("code", out.Err.Code).Str("error", out.Err.Message).Str("state", string(state)).Msg("task attempt failed")
	} else if l := s.log.Debug(); l.Enabled() {
		l.Str("task_id", tp.TaskID).Str("agent", tp.Agent).Int("attempt", tp.Attempt).Dur("duration", out.Duration).Msg("task succeeded")
	}
	return rt.announced
}

// execute runs the guest of a task and counts the attempt.
func (s *Scheduler) execute(ctx context.Context, e *agentEntry, t *store.TaskRecord, rt *runningTask) executor.Outcome {
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
	if t.Attempt == 1 && t.StartedAt != nil {
		s.cfg.Metrics.QueueWait(t.Priority.String(), t.StartedAt.Sub(t.CreatedAt))
	}
	out := s.invoke(ctx, e.mod, inv)
	code := ""
	if out.Err != nil {
		code = out.Err.Code
	}
	s.cfg.Metrics.Attempt(t.Agent, code, out.Duration)
	if out.Instantiate > 0 {
		s.cfg.Metrics.Instantiated(out.Instantiate)
	}
	return out
}

// follow announces a claimed task and records how its run ended, in the
// store's order: the "running" event once the claim is durable, then the
// outcome, announced (event, waiters, KPIs) once durable. A crash before
// the outcome commits runs the task again, as for any task left running.
//
// A run that ends before its claim commits has its outcome written at once:
// the write is ordered after the claim, and UpdateTask refuses it unless
// the task is running that very claim (its StartedAt), so an outcome never
// lands without its claim, nor on a later claim of the same task. The two
// commits are then announced in order.
func (s *Scheduler) follow(ctx context.Context, rt *runningTask, started *store.Pending) {
	defer s.wg.Done()
	announced := false
	select {
	case <-started.Done():
		if !s.announce(rt, started) {
			return
		}
		announced = true
		<-rt.ended
	case <-rt.ended:
	}
	end := &rt.end
	if end.requeue {
		if announced || s.announce(rt, started) {
			s.requeue(ctx, rt)
		}
		return
	}

	id := rt.rec.TaskID
	rec := &end.rec
	if rec.State == protocol.StateRetrying {
		// The retry can be claimed as soon as it is written.
		held := s.holdEvents(id)
		defer s.releaseEvents(id, held)
	}
	ev, err := s.st.UpdateTask(ctx, *rec, protocol.StateRunning)
	if !announced && !s.announce(rt, started) {
		if err == nil {
			s.storeFailed(fmt.Errorf("task %s: an outcome was recorded for a claim that was not", id))
		}
		return
	}
	if err != nil {
		s.forget(id)
		s.storeFailed(fmt.Errorf("recording the outcome of task %s: %w", id, err))
		return
	}
	if rec.State == protocol.StateRetrying {
		s.depth[rec.Priority].Add(1)
		s.poke() // an idle worker re-arms its timer for the retry
	}
	s.finished(rec, &end.out)
	if rec.State.Terminal() {
		s.wakeWaiters(id, &rec.Task)
	}
	s.publish(ev)
}

// announce waits for a task's claim to commit and publishes its running
// event, after the worker's previous task's and after the event that made
// the task waiting. false means that the claim did not reach the store: the
// run is stopped and nothing of it is recorded.
func (s *Scheduler) announce(rt *runningTask, started *store.Pending) bool {
	defer close(rt.announced)
	ev, err := started.Wait()
	if rt.prev != nil {
		<-rt.prev
	}
	if err != nil {
		// Not ours to run: the store holds the task as before the claim
		// (it runs again), or as a write ordered before it left it.
		rt.mu.Lock()
		rt.done = true
		rt.mu.Unlock()
		rt.cancel(errClaimLost)
		// Counted back into the queue, where the claim took it from:
		// unless a write ordered before the claim changed it, which
		// counted it itself. A task whose creation was rolled back
		// (ErrNotFound) is counted out by its Submit.
		if !errors.Is(err, store.ErrStateChanged) {
			s.depth[rt.rec.Priority].Add(1)
			if !errors.Is(err, store.ErrNotFound) {
				s.poke()
			}
		}
		s.storeFailed(fmt.Errorf("claiming task %s: %w", rt.rec.TaskID, err))
		return false
	}
	if rt.after != nil {
		<-rt.after // what made it waiting goes out first
	}
	s.publish(ev)
	return true
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

// outcome is the task t after an attempt that ended with out: succeeded,
// retrying after backoff, or failed.
func (s *Scheduler) outcome(t store.TaskRecord, out executor.Outcome) store.TaskRecord {
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
	t.AttemptErrors = slices.Clone(t.AttemptErrors)
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
	return t
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
	select {
	case <-rt.announced:
	default:
		return // progress goes out after the running event
	}
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

// countFinished counts a finished task toward the next prune, and wakes
// pruneLoop once Retention.Max/8 have finished since the last.
func (s *Scheduler) countFinished() {
	limit := s.cfg.Retention.Max
	if limit <= 0 {
		return
	}
	if s.doneSincePrune.Add(1) >= int64(max(limit/8, 1)) {
		select {
		case s.pruneSoon <- struct{}{}:
		default: // a prune is due already
		}
	}
}

// pruneLoop removes finished tasks in the background: at start, on its
// timer, and when countFinished says Retention.Max may be passed. Each
// Prune removes in batches, so the queue is not held up for long.
func (s *Scheduler) pruneLoop() {
	defer s.wg.Done()
	r := s.cfg.Retention
	every := r.Interval
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for first := true; ; first = false {
		capped := false // woken by countFinished: routine, not logged at info
		if !first {
			select {
			case <-s.stopping:
				return
			case <-tick.C:
			case <-s.pruneSoon:
				capped = true
			}
		}
		s.doneSincePrune.Store(0)
		n, err := s.prune(r)
		if err != nil {
			s.storeFailed(fmt.Errorf("pruning finished tasks: %w", err))
			continue
		}
		if n > 0 {
			lvl := s.log.Info()
			if capped {
				lvl = s.log.Debug()
			}
			lvl.Int("tasks", n).Msg("pruned finished tasks")
		}
	}
}

// prune applies r once: by age (keeping r.Keep), then the cap r.Max.
func (s *Scheduler) prune(r Retention) (int, error) {
	s.recent.pause() // it must not answer for a task pruned now
	defer s.recent.resume()
	n := 0
	if r.Keep > 0 || r.MaxAge > 0 {
		cutoff := s.now().Add(-r.MaxAge)
		if r.MaxAge == 0 {
			cutoff = s.now()
		}
		k, err := s.st.Prune(context.Background(), cutoff, r.Keep)
		n += k
		if err != nil {
			return n, err
		}
	}
	if r.Max > 0 {
		k, err := s.st.Prune(context.Background(), store.AnyAge, r.Max)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
