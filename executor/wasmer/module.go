//go:build wasmer

package wasmer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// module is a compiled module: its instrumented binary, the artifacts
// workers load, and what the checks decided about it.
type module struct {
	e             *Engine
	key           string
	wasm          []byte // instrumented, for the metered variant's compilation
	abi, entry    string
	initialize    bool
	initialMemory uint64
	hasStart      bool
	hasMemory     bool
	growGuarded   bool
	args          []string
	clock, random bool

	// closedFlag is set by Close; workers holding the module drop it when
	// they see it set.
	closedFlag *atomic.Bool

	mu         sync.Mutex
	artifacts  [1][]byte   // the unmetered variant's
	meteredJob *compileJob // the metered variant's, compiled on first use
	closed     bool
}

var _ executor.Module = (*module)(nil)

func (m *module) ABI() string   { return m.abi }
func (m *module) Entry() string { return m.entry }

// Close implements executor.Module. Runs already started finish; later runs
// fail with agent_missing. Workers forget the module the next time they are
// used.
func (m *module) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.closedFlag.Store(true)
	m.artifacts = [1][]byte{}
	return nil
}

func (m *module) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// artifact returns the compiled artifact of the variant. The metered one
// is compiled on first use, in the background: a compilation takes seconds
// on a large module, and a task whose timeout passes meanwhile must not
// abort it for the next.
func (m *module) artifact(ctx context.Context, metered bool) ([]byte, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errModuleClosed
	}
	if !metered {
		art := m.artifacts[0]
		m.mu.Unlock()
		return art, nil
	}
	job := m.meteredJob
	if job == nil || job.failed() {
		job = &compileJob{done: make(chan struct{})}
		m.meteredJob = job
		go m.compileMetered(job)
	}
	m.mu.Unlock()
	select {
	case <-job.done:
		return job.art, job.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// compileJob is a compilation in the background.
type compileJob struct {
	done chan struct{} // closed when art or err is set
	art  []byte
	err  error
}

func (j *compileJob) failed() bool {
	select {
	case <-j.done:
		return j.err != nil
	default:
		return false
	}
}

// compileMetered compiles the metered variant for job. The engine counts it
// as active, so Close waits for it (and stops it).
func (m *module) compileMetered(job *compileJob) {
	defer close(job.done)
	if !m.e.enter() {
		job.err = errPoolClosed
		return
	}
	defer m.e.leave()
	job.art, job.err = m.e.compileArtifact(m.e.closing, variantKey(m.key, true), m.wasm, nil, true, m.closedFlag)
}

var errModuleClosed = errors.New("module closed")

// run is one Run in progress, on the parent's side.
type run struct {
	m      *module
	ctx    context.Context // the caller's
	runCtx context.Context // done on timeout, cancel or engine close
	inv    *executor.Invocation
	rs     executor.RunState // rebuilt from the worker's events
	limit  uint64
	start  time.Time
	w      *proc // the worker, while the run holds it
	// started says the guest was sent to a worker; peakPages is the largest
	// memory size the worker reported meanwhile.
	started   bool
	peakPages uint32
}

// Run implements executor.Module.
func (m *module) Run(ctx context.Context, inv executor.Invocation) executor.Outcome {
	return m.run(ctx, inv, crashNone)
}

func (m *module) run(ctx context.Context, inv executor.Invocation, crash byte) (out executor.Outcome) {
	e := m.e
	r := &run{m: m, ctx: ctx, inv: &inv, start: time.Now()}
	r.rs.Init(&inv, m.abi, m.entry)
	defer func() {
		// Our own bug on the task's path: the task fails, the server goes on.
		if p := recover(); p != nil {
			if r.w != nil {
				e.pool.discard(r.w, fmt.Errorf("the run panicked: %v", p))
			}
			e.log.Error().Str("task_id", inv.TaskID).Str("panic", fmt.Sprint(p)).Msg("run panicked")
			out = r.rs.Outcome(executor.End{Err: protocol.NewTaskError(protocol.CodeInternal,
				"wasmer engine panicked: %v\n%s", p, debug.Stack()), Duration: time.Since(r.start)})
		}
	}()

	if !e.enter() {
		return r.fail(protocol.NewTaskError(protocol.CodeInternal, "the wasmer engine is closed"))
	}
	defer e.leave()
	if m.isClosed() {
		return r.fail(protocol.NewTaskError(protocol.CodeAgentMissing,
			"the agent's module was closed (unregistered or replaced)"))
	}
	metered := inv.Fuel > 0
	if metered && !e.metering {
		return r.fail(protocol.NewTaskError(protocol.CodeInternal,
			"fuel metering is not available in this wasmer library; the task asked for %d fuel", inv.Fuel))
	}
	r.limit = executor.MemoryLimit(e.opts.MaxMemoryBytes, inv.MemoryLimitBytes)
	if m.initialMemory > r.limit {
		return r.fail(protocol.NewTaskError(protocol.CodeMemoryLimit,
			"the module declares %s of initial linear memory; the task's quota is %s",
			executor.FormatBytes(m.initialMemory), executor.FormatBytes(r.limit)))
	}

	runCtx, cancel := context.WithCancel(ctx)
	if inv.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, inv.Timeout)
	}
	defer cancel()
	defer context.AfterFunc(e.closing, cancel)()
	r.runCtx = runCtx

	art, err := m.artifact(runCtx, metered)
	if err != nil {
		return r.failBefore(err)
	}
	w, err := e.pool.acquire(runCtx, e.closing)
	if err != nil {
		return r.failBefore(err)
	}
	r.w = w
	// From here on, the end of runCtx (timeout, cancel, the engine closing)
	// kills the worker, which ends the wait for its events.
	disarm := w.killOn(runCtx)
	defer disarm()
	if err := r.prepare(w, art, metered); err != nil {
		e.pool.discard(w, err)
		if runCtx.Err() != nil {
			return r.fail(r.interrupted())
		}
		return r.fail(protocol.NewTaskError(protocol.CodeInternal, "loading the module into a wasmer worker: %v", err))
	}

	q := runRequest{
		Key:         variantKey(m.key, metered),
		Metered:     metered,
		ABI:         m.abi,
		Entry:       m.entry,
		Initialize:  m.initialize,
		HasStart:    m.hasStart,
		HasMemory:   m.hasMemory,
		GrowGuarded: m.growGuarded,
		Args:        m.args,
		Clock:       m.clock,
		Random:      m.random,
		Input:       inv.Input,
		OutputLimit: inv.OutputLimitBytes,
		LogLimit:    inv.LogLimitBytes,
		QuotaPages:  r.limit / executor.WasmPageSize,
		Fuel:        inv.Fuel,
		Seed:        inv.Seed,
		Crash:       crash,
	}
	r.started = true
	if err := w.send(msgRun, q.encode()); err != nil {
		e.pool.discard(w, err)
		return r.fail(protocol.NewTaskError(protocol.CodeInternal, "sending the task to the wasmer worker: %v", err))
	}
	for {
		f, err := w.next()
		if err != nil {
			e.pool.discard(w, err)
			if runCtx.Err() != nil {
				return r.fail(r.interrupted())
			}
			e.log.Warn().Str("task_id", inv.TaskID).Err(err).Msg("wasmer worker died running a task")
			return r.fail(protocol.NewTaskError(protocol.CodeInternal, "%v", err))
		}
		if f.t == evDone {
			var done runDone
			if err := done.decode(f.payload); err != nil {
				e.pool.discard(w, err)
				return r.fail(protocol.NewTaskError(protocol.CodeInternal, "the wasmer worker's result is malformed: %v", err))
			}
			r.w = nil
			if disarm() {
				e.pool.release(w)
			} else { // the guest ended as its timeout passed: its worker is being killed
				e.pool.discard(w, errors.New("killed as its task ended"))
			}
			return r.finish(&done)
		}
		stopped, err := r.apply(f)
		if err != nil {
			e.pool.discard(w, err)
			return r.fail(protocol.NewTaskError(protocol.CodeInternal, "the wasmer worker sent a malformed event: %v", err))
		}
		if stopped {
			// The callback panicked (RunState recorded it): stop the guest.
			e.pool.discard(w, errors.New("the task's progress callback panicked"))
			return r.fail(nil)
		}
	}
}

// prepare has the worker drop the modules closed since it last served and
// load this one's artifact if it lacks it.
func (r *run) prepare(w *proc, art []byte, metered bool) error {
	for k, closed := range w.loaded {
		if closed.Load() {
			if err := w.send(msgDrop, []byte(k)); err != nil {
				return err
			}
			delete(w.loaded, k)
		}
	}
	key := variantKey(r.m.key, metered)
	if _, ok := w.loaded[key]; ok {
		return nil
	}
	req := loadRequest{Key: key, Metered: metered, Artifact: art}
	f, err := w.exchange(msgLoad, req.encode()) // run's killOn interrupts it
	if err != nil {
		return err
	}
	var reply loadedReply
	if f.t != msgLoaded || reply.decode(f.payload) != nil {
		return fmt.Errorf("a load request got a malformed reply (type %d)", f.t)
	}
	if reply.Err != "" || reply.Invalid != "" {
		return errors.New(reply.Err + reply.Invalid)
	}
	w.loaded[key] = r.m.closedFlag
	return nil
}

// fail ends the run with err before or instead of the guest's own end. A
// guest that started used at least its initial memory and what the worker
// last reported.
func (r *run) fail(err *protocol.TaskError) executor.Outcome {
	end := executor.End{Err: err, MemoryLimitBytes: r.limit, Duration: time.Since(r.start)}
	if r.started {
		peak := max(r.m.initialMemory, uint64(r.peakPages)*executor.WasmPageSize)
		end.Usage.MemoryPeakMB = float64(peak) / (1 << 20)
	}
	return r.rs.Outcome(end)
}

// failBefore ends a run that could not start: its context ended, the engine
// closed, the module was closed.
func (r *run) failBefore(err error) executor.Outcome {
	switch {
	case errors.Is(err, errModuleClosed):
		return r.fail(protocol.NewTaskError(protocol.CodeAgentMissing,
			"the agent's module was closed (unregistered or replaced)"))
	case r.runCtx.Err() != nil || errors.Is(err, errPoolClosed):
		return r.fail(r.interrupted())
	}
	return r.fail(protocol.NewTaskError(protocol.CodeInternal, "%v", err))
}

// interrupted says why the run's context ended: the caller cancelled (or
// its context expired), the engine is closing, or the task's timeout passed.
func (r *run) interrupted() *protocol.TaskError {
	return executor.Interrupted("wasmer", r.ctx, r.runCtx, r.m.e.isClosing(), r.inv.Timeout)
}

// apply replays one of the guest's host calls on the parent's RunState. It
// reports stopped when the replay stopped the guest on the parent's side: the
// caller's OnProgress panicked.
func (r *run) apply(f frame) (stopped bool, err error) {
	d := &dec{b: f.payload}
	switch f.t {
	case evOutput:
		b := d.bytes()
		if d.done() == nil {
			r.rs.OutputWrite(b, 0, uint32(len(b)))
		}
	case evError:
		b := d.bytes()
		if d.done() == nil {
			r.rs.ErrorWrite(b, 0, uint32(len(b)))
		}
	case evLog:
		level, b := int32(d.u32()), d.bytes()
		if d.done() == nil {
			r.rs.Log(b, level, 0, uint32(len(b)))
		}
	case evKPI:
		name, v := d.bytes(), d.f64()
		if d.done() == nil {
			r.rs.KPI(name, 0, uint32(len(name)), v)
		}
	case evProgress:
		p := int32(d.u32())
		if d.done() == nil {
			return r.progress(p), nil
		}
	case evMemory:
		pages := d.u32()
		if d.done() == nil {
			r.peakPages = max(r.peakPages, pages)
		}
	case evStdout, evStderr:
		b := d.bytes()
		if d.done() == nil {
			w := r.rs.Stdout()
			if f.t == evStderr {
				w = r.rs.Stderr()
			}
			_, _ = w.Write(b) // a stop is recorded in rs
		}
	default:
		return false, fmt.Errorf("unknown event type %d", f.t)
	}
	return false, d.done()
}

// progress reports progress to the caller; a panic in its callback is the
// run's internal error, as a panic in a host function is.
func (r *run) progress(permille int32) (stopped bool) {
	defer func() {
		if p := recover(); p != nil {
			r.rs.Panicked(executor.FabricModule+".progress", p)
			stopped = true
		}
	}()
	r.rs.Progress(permille)
	return false
}

// finish builds the Outcome from the worker's account of the run's end.
func (r *run) finish(d *runDone) executor.Outcome {
	if d.StopCode != "" {
		r.rs.Stop(&protocol.TaskError{Code: d.StopCode, Message: d.StopMessage, Retryable: protocol.Retryable(d.StopCode)})
	}
	end := executor.End{
		MemoryRefused:    d.MemoryRefused,
		MemoryLimitBytes: r.limit,
		Usage: protocol.ResourceUsage{
			CPUSeconds:   float64(d.CPUNanos) / 1e9,
			MemoryPeakMB: float64(d.PeakBytes) / (1 << 20),
		},
	}
	if d.Metered {
		fuel := d.FuelConsumed
		end.Usage.FuelConsumed = &fuel
	}
	switch d.End {
	case endReturned:
		end.Returned, end.Return = true, d.Return
	case endExit:
		end.Err = r.rs.ExitStatus(d.ExitStatus)
	case endError:
		end.Err = &protocol.TaskError{Code: d.Code, Message: d.Message, Retryable: protocol.Retryable(d.Code)}
	}
	end.Duration = time.Since(r.start)
	return r.rs.Outcome(end)
}
