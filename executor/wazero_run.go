package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/chimera-fabric/fabric/executor/internal/instrument"
	"github.com/chimera-fabric/fabric/protocol"
)

// runKey is the context key of the wazeroRun that fabric host functions act on.
type runKey struct{}

// errStopGuest is panicked out of a host call to stop the guest at once; the
// reason is already recorded in the run's RunState.
var errStopGuest = errors.New("guest stopped by the host")

// wazeroRun is one task's run.
type wazeroRun struct {
	RunState
	inv       Invocation
	module    *wazeroModule
	callerCtx context.Context // Run's ctx
	// ctx is the run's context, with its timeout: the guest is stopped at
	// its next call into the host (its yield, at the latest) once ctx or the
	// engine's closing context is done.
	ctx         context.Context
	instantiate time.Duration // how long InstantiateModule or the instance's reset took (0: reused)
	rand        SeededRand
	stdin       bytes.Reader
	stdout      stopWriter
	stderr      stopWriter
}

// runPool keeps wazeroRuns (and their stderr tail buffers) between runs.
var runPool = sync.Pool{New: func() any { return new(wazeroRun) }}

// free drops what r refers to and pools it; the Outcome built from it owns
// its output, logs and KPIs.
func (r *wazeroRun) free() {
	tail := r.tail
	*r = wazeroRun{}
	r.tail = tail // emptied by Init
	runPool.Put(r)
}

// stopWriter stops the guest (by panicking out of WASI's fd_write) once
// RunState says so.
type stopWriter struct {
	r *wazeroRun
	w io.Writer
}

func (w *stopWriter) Write(p []byte) (int, error) {
	w.r.checkInterrupted()
	n, err := w.w.Write(p)
	if errors.Is(err, ErrGuestStopped) {
		panic(errStopGuest)
	}
	return n, err
}

// stopping says the guest must stop: its run's context ended (timeout or
// cancel) or the engine is closing.
func (r *wazeroRun) stopping() bool {
	return r.ctx.Err() != nil || r.module.e.isClosing()
}

// checkInterrupted stops the guest at a host call once it must stop.
func (r *wazeroRun) checkInterrupted() {
	if r.stopping() {
		r.Stop(r.module.interrupted(r.callerCtx, r))
		panic(errStopGuest)
	}
}

// nanosleep is the real sleep of agents with the clock capability; it ends
// early when the guest must stop (it is stopped at its next host call).
func (r *wazeroRun) nanosleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
	case <-r.module.e.closing.Done():
	}
}

// recoverHost ends a fabric host call that panicked: a Go panic becomes the
// task's internal error; either way the guest is stopped.
func (r *wazeroRun) recoverHost(fn string) {
	if p := recover(); p != nil {
		if p != errStopGuest {
			r.Panicked(fn, p)
		}
		panic(errStopGuest)
	}
}

// memoryOf is the calling guest's whole linear memory (nil when it has none).
func memoryOf(mod api.Module) []byte {
	m := mod.Memory()
	if m == nil {
		return nil
	}
	b, _ := m.Read(0, m.Size())
	return b
}

type fabricImpl func(r *wazeroRun, mod api.Module, stack []uint64) *protocol.TaskError

var fabricImpls = map[string]fabricImpl{
	"input_len": func(r *wazeroRun, _ api.Module, stack []uint64) *protocol.TaskError {
		stack[0] = api.EncodeI32(r.InputLen())
		return nil
	},
	"input_read": func(r *wazeroRun, mod api.Module, stack []uint64) *protocol.TaskError {
		return r.InputRead(memoryOf(mod), api.DecodeU32(stack[0]))
	},
	"output_write": func(r *wazeroRun, mod api.Module, stack []uint64) *protocol.TaskError {
		return r.OutputWrite(memoryOf(mod), api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	},
	"error_write": func(r *wazeroRun, mod api.Module, stack []uint64) *protocol.TaskError {
		return r.ErrorWrite(memoryOf(mod), api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	},
	"log": func(r *wazeroRun, mod api.Module, stack []uint64) *protocol.TaskError {
		return r.Log(memoryOf(mod), api.DecodeI32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	},
	"progress": func(r *wazeroRun, _ api.Module, stack []uint64) *protocol.TaskError {
		r.Progress(api.DecodeI32(stack[0]))
		return nil
	},
	"kpi": func(r *wazeroRun, mod api.Module, stack []uint64) *protocol.TaskError {
		return r.KPI(memoryOf(mod), api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeF64(stack[2]))
	},
}

// instantiateFabric instantiates the fabric host module, once per engine;
// its functions find their run in the call's context.
func (e *Wazero) instantiateFabric(ctx context.Context) error {
	b := e.rt.NewHostModuleBuilder(FabricModule)
	for _, f := range FabricFunctions {
		impl, ok := fabricImpls[f.Name]
		if !ok {
			return fmt.Errorf("no implementation of %s.%s", FabricModule, f.Name)
		}
		qualified := FabricModule + "." + f.Name
		fn := api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			r, ok := ctx.Value(runKey{}).(*wazeroRun)
			if !ok {
				panic(fmt.Sprintf("%s called outside a task's run", qualified))
			}
			defer r.recoverHost(qualified)
			r.checkInterrupted()
			if err := impl(r, mod, stack); err != nil {
				panic(errStopGuest)
			}
		})
		b.NewFunctionBuilder().
			WithGoModuleFunction(fn, apiTypes(f.Type.Params), apiTypes(f.Type.Results)).
			Export(f.Name)
	}
	// The function that instrumented code calls every instrument.Budget
	// checks: a safepoint for the Go runtime, and where a guest whose run
	// ended is stopped.
	yield := api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		if r, ok := ctx.Value(runKey{}).(*wazeroRun); ok {
			r.checkInterrupted()
		}
		stack[0] = instrument.Budget
	})
	b.NewFunctionBuilder().WithGoModuleFunction(yield, nil, []api.ValueType{api.ValueTypeI32}).Export(instrument.YieldName)
	_, err := b.Instantiate(ctx)
	return err
}

func apiTypes(ts []ValType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		out[i] = api.ValueType(t)
	}
	return out
}

// Run implements Module.
//
// A module compiled with ReuseInstances runs the task in an idle instance
// that ran earlier tasks of the module when there is one (whose memory fits
// the task's quota), and keeps the instance idle afterwards for a later
// task, unless the run failed in any way (trap, timeout, cancel, a limit,
// an error from the agent): then it is closed. What a task finds in a
// reused instance is what the earlier ones left: its linear memory, globals
// and tables, and the fake clock's readings, which go on where they were (a
// guest's monotonic clock never goes back). What is the task's own, as in a
// fresh instance: its input (and stdin), output, logs, KPIs, progress, the
// random source (seeded with its seed), its memory quota, timeout and
// output and log limits, and its usage (memory_peak_mb is the memory's
// high-water mark during the task, counting from its size when the task
// began; the start function and _initialize run, in the task that creates
// the instance, only once).
//
// Any other module whose instances are reset (see Wazero) runs the task in
// an idle reset instance when there is one, or a new one, and after a task
// that returned (with whatever result: an error_write or a non-zero return
// is the agent's business, not a stop) resets it and keeps it idle; after
// anything else, or if the task grew the memory, it is closed. Reset or
// new, the task sees the same instance.
func (m *wazeroModule) Run(ctx context.Context, inv Invocation) (out Outcome) {
	start := time.Now()
	r := runPool.Get().(*wazeroRun)
	defer r.free()
	r.inv = inv
	r.Init(&r.inv, m.abi, m.entry)
	defer func() {
		// Our own bug on the task's path: the task fails, the server goes on.
		if p := recover(); p != nil {
			err := protocol.NewTaskError(protocol.CodeInternal, "wazero engine panicked: %v\n%s", p, debug.Stack())
			m.e.log.Error().Str("task_id", inv.TaskID).Str("panic", fmt.Sprint(p)).Msg("run panicked")
			out = r.Outcome(End{Err: err, Duration: time.Since(start)})
		}
	}()

	if !m.e.enter() {
		return r.Outcome(End{Err: protocol.NewTaskError(protocol.CodeInternal, "the wazero engine is closed")})
	}
	defer m.e.leave()
	if !m.enter() {
		return r.Outcome(End{Err: protocol.NewTaskError(protocol.CodeAgentMissing,
			"the agent's module was closed (unregistered or replaced)")})
	}
	defer m.leave()
	if inv.Fuel > 0 {
		return r.Outcome(End{Err: protocol.NewTaskError(protocol.CodeInternal,
			"fuel metering is not available in the wazero engine; the task asked for %d fuel", inv.Fuel)})
	}
	limit := MemoryLimit(m.e.opts.MaxMemoryBytes, inv.MemoryLimitBytes)
	if m.initialMemory > limit {
		return r.Outcome(End{Err: protocol.NewTaskError(protocol.CodeMemoryLimit,
			"the module declares %s of initial linear memory; the task's quota is %s",
			FormatBytes(m.initialMemory), FormatBytes(limit))})
	}

	var s *shell
	if m.reuse || m.reset {
		if s = m.getIdle(limit); s != nil && m.reset {
			r.instantiate = s.resetTook
		}
	}
	if s == nil {
		var err error
		if s, err = m.getShell(); err != nil {
			return r.Outcome(End{Err: protocol.NewTaskError(protocol.CodeInternal, "making the instance's shell: %v", err)})
		}
		if m.reuse || m.reset {
			// A later task's quota may be larger than this one's.
			s.mem.reserve = m.e.opts.MaxMemoryBytes
		}
	}
	keep := false
	defer func() {
		// Before m.leave: a closed module's last run releases its shells.
		if keep {
			m.putIdle(s)
		} else {
			m.putShell(s)
		}
	}()

	r.ctx = ctx
	if inv.Timeout > 0 {
		var cancel context.CancelFunc
		r.ctx, cancel = context.WithTimeout(ctx, inv.Timeout)
		defer cancel()
	}
	r.module, r.callerCtx = m, ctx
	r.rand.Seed(inv.Seed)
	r.stdin.Reset(inv.Input)
	r.stdout = stopWriter{r, r.Stdout()}
	r.stderr = stopWriter{r, r.Stderr()}
	s.run = r
	s.mem.begin(limit)

	end, cpu := m.measured(ctx, s, r)
	end.Usage = protocol.ResourceUsage{
		CPUSeconds:   cpu.Seconds(),
		MemoryPeakMB: float64(s.mem.peak) / (1 << 20),
	}
	end.MemoryRefused = s.mem.refused
	end.MemoryLimitBytes = limit
	if s.mem.failed != nil && end.Err == nil && r.Stopped() == nil {
		end.Err = protocol.NewTaskError(protocol.CodeInternal, "linear memory: %v", s.mem.failed)
	}
	// The guest returned by itself (whatever it returned): nothing stopped
	// it midway.
	returned := end.Err == nil && r.Stopped() == nil && s.mem.failed == nil
	end.Duration = time.Since(start)
	end.Instantiate = r.instantiate
	out = r.Outcome(end)
	switch {
	case m.reuse:
		keep = out.Err == nil && s.mem.failed == nil && s.guest != nil && !s.guest.IsClosed()
	case m.reset:
		keep = returned && s.resetInstance()
	}
	return out
}

// measured is call on an OS thread of its own, whose CPU clock measures it.
func (m *wazeroModule) measured(ctx context.Context, s *shell, r *wazeroRun) (end End, cpu time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPUTime()
	defer func() { cpu = threadCPUTime() - start }()
	return m.call(ctx, s, r), 0
}

// call runs the task's entry in s's instance, instantiating the module
// first when s has none, and calling its start function and, for a
// fabric-v1 reactor, _initialize when the instance is new or reset. A
// module neither compiled with ReuseInstances nor reset gets a fresh
// instance, which is closed before call returns; the others leave the
// instance in s for the caller to keep or close.
func (m *wazeroModule) call(ctx context.Context, s *shell, r *wazeroRun) End {
	if r.stopping() {
		return End{Err: m.interrupted(ctx, r)}
	}
	if s.guest == nil {
		s.resetClock()
		began := time.Now()
		mod, err := m.e.rt.InstantiateModule(s.hctx, m.compiled, s.cfg)
		r.instantiate = time.Since(began)
		m.instances.Add(1)
		if err != nil {
			return End{Err: m.classify(ctx, r, err, "instantiating the module: ")}
		}
		s.guest = mod
		s.needsInit = true
		switch {
		case m.reset:
			s.snapshot()
		case !m.reuse:
			defer s.closeInstance() // its memory goes back with the shell
		}
	}
	if s.needsInit {
		s.needsInit = false
		if m.start {
			if _, err := s.call(s.call0, slotStart); err != nil {
				return End{Err: m.classify(ctx, r, err, "start function: ")}
			}
		}
		if m.initialize {
			if _, err := s.call(s.call0, slotInitialize); err != nil {
				return End{Err: m.classify(ctx, r, err, InitializeExport+": ")}
			}
		}
	}
	fn := s.call0
	if m.abi == protocol.ABIFabricV1 {
		fn = s.call1
	}
	res, err := s.call(fn, slotEntry)
	if err != nil {
		return End{Err: m.classify(ctx, r, err, "")}
	}
	if r.stopping() {
		// It ended after it was told to stop (say, out of a sleep that the
		// timeout cut short): it did not finish in time.
		return End{Err: m.interrupted(ctx, r)}
	}
	if m.abi == protocol.ABIFabricV1 {
		return End{Returned: true, Return: api.DecodeI32(res)}
	}
	return End{}
}

// classify turns the error of a guest call into the task's error, or nil
// for a guest that exited with status 0. ctx is the caller's context.
func (m *wazeroModule) classify(ctx context.Context, r *wazeroRun, err error, where string) *protocol.TaskError {
	if r.Stopped() != nil {
		return nil // the host stopped it; RunState has the reason
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		if exit.ExitCode() == 0 {
			return nil
		}
		return r.ExitStatus(exit.ExitCode())
	}
	msg := withoutTrampoline(err.Error())
	switch {
	case msg == "stack overflow" || strings.HasPrefix(msg, "wasm error: stack overflow"):
		return protocol.NewTaskError(protocol.CodeTrap,
			"%scall stack exhausted (stack overflow): the guest recursed too deeply\n%s", where, msg)
	case strings.HasPrefix(msg, "wasm error: "):
		return protocol.NewTaskError(protocol.CodeTrap, "%s%s", where, msg)
	case errors.Is(err, errStopGuest):
		// Stopped by a writer without a recorded reason: cannot happen, but
		// never report a stop as success.
		return protocol.NewTaskError(protocol.CodeInternal, "%sguest stopped without a reason: %v", where, err)
	case strings.HasPrefix(where, "instantiating"):
		// Instantiation fails on the module's own terms, such as a data
		// segment outside its memory: the guest's failure, a trap.
		return protocol.NewTaskError(protocol.CodeTrap, "%s%s", where, msg)
	}
	return protocol.NewTaskError(protocol.CodeInternal, "%s%s", where, msg)
}

// withoutTrampoline drops the trampoline's frames from the stack trace of
// a trap: the guest's functions are called through it, which is the host's
// business.
func withoutTrampoline(msg string) string {
	for {
		i := strings.Index(msg, "\n"+instrument.TrampolineFrame)
		if i < 0 {
			return msg
		}
		j := strings.IndexByte(msg[i+1:], '\n')
		if j < 0 {
			return msg[:i]
		}
		msg = msg[:i] + msg[i+1+j:]
	}
}

// interrupted says why a run's context ended: the caller cancelled (or its
// context expired), the engine is closing, or the task's timeout passed.
func (m *wazeroModule) interrupted(ctx context.Context, r *wazeroRun) *protocol.TaskError {
	return Interrupted("wazero", ctx, r.ctx, m.e.isClosing(), r.inv.Timeout)
}
