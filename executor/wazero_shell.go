package executor

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/chimera-fabric/fabric/executor/internal/instrument"
)

// The trampoline table's entries (see instrument.Options.Trampoline): the
// start function, _initialize, and the entry.
const (
	slotStart       = 0
	slotInitialize  = 1
	slotEntry       = 2
	trampolineSlots = 3
)

// shell is what a guest instance is bound to, made once and kept for
// instance after instance of a module (the instances of a module compiled
// with ReuseInstances keep theirs), so that a run builds none of it:
//   - the instance's wazero.ModuleConfig, whose stdin, stdout, stderr,
//     random source and sleep forward to the run the shell serves;
//   - the context the instance is made and called with: it carries the
//     linear memory allocator and the trampoline (by an import resolver),
//     and forwards the run's context (its cancellation, and the run itself
//     to the fabric host functions);
//   - an instance of the trampoline module, through which the guest's
//     functions are called: wazero allocates a call engine with a 10 KiB
//     stack for each function of an instance that Go calls, and the
//     trampoline's are made once per shell.
//
// A shell serves one run at a time.
type shell struct {
	m    *wazeroModule
	run  *wazeroRun // the run it serves; nil between runs
	cfg  wazero.ModuleConfig
	hctx context.Context
	mem  linearMemory

	tramp api.Module
	call0 api.Function // (slot) -> (): start, _initialize, a wasi-command's entry
	call1 api.Function // (slot) -> (i32): a fabric-v1 entry
	stack [1]uint64

	// guest is the instance; a shell keeps it between runs only for a
	// module compiled with ReuseInstances or whose instances are reset.
	guest api.Module
	// needsInit says the instance's start function and _initialize are
	// still to be called: it was just made, or reset.
	needsInit bool
	// resettable says snapshot recorded what resetInstance restores:
	// the instance's mutable globals and their values after
	// instantiation.
	resettable  bool
	globals     []api.MutableGlobal
	globalsInit []uint64
	// resetTook is how long the last reset took: the next task's
	// Outcome.Instantiate.
	resetTook time.Duration
	// wallReads and monoReads are the fake clocks' readings so far.
	wallReads, monoReads int64
}

// newShell makes a shell of m, instantiating the trampoline.
func (m *wazeroModule) newShell() (*shell, error) {
	s := &shell{m: m}
	tramp, err := m.e.rt.InstantiateModule(context.Background(), m.e.trampoline, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		return nil, err
	}
	s.tramp = tramp
	s.call0 = tramp.ExportedFunction(instrument.TrampolineCall(0))
	s.call1 = tramp.ExportedFunction(instrument.TrampolineCall(1))
	cfg := m.cfg.WithStdin((*shellStdin)(s)).WithStdout((*shellStdout)(s)).WithStderr((*shellStderr)(s))
	if !m.random {
		cfg = cfg.WithRandSource((*shellRand)(s))
	}
	if m.clock {
		cfg = cfg.WithNanosleep(func(ns int64) { s.run.nanosleep(ns) })
	} else {
		cfg = cfg.WithWalltime(s.fakeWalltime, sys.ClockResolution(time.Microsecond)).
			WithNanotime(s.fakeNanotime, sys.ClockResolution(time.Nanosecond))
	}
	s.cfg = cfg
	ctx := experimental.WithImportResolver((*shellCtx)(s), func(name string) api.Module {
		if name == instrument.TrampolineModule {
			return s.tramp
		}
		return nil
	})
	s.hctx = experimental.WithMemoryAllocator(ctx, &s.mem)
	return s, nil
}

// call calls the guest's function in the trampoline's slot: fn is call0 or
// call1; it returns call1's result.
func (s *shell) call(fn api.Function, slot uint64) (uint64, error) {
	s.stack[0] = slot
	err := fn.CallWithStack(s.hctx, s.stack[:])
	return s.stack[0], err
}

// closeInstance closes the shell's instance, if any.
func (s *shell) closeInstance() {
	if s.guest != nil {
		_ = s.guest.Close(context.Background())
		s.guest = nil
	}
	clear(s.globals)
	s.globals, s.resettable = s.globals[:0], false
}

// closeGuest closes the shell's instance, if any, and hands its memory back.
func (s *shell) closeGuest() {
	s.closeInstance()
	s.mem.release()
}

// close closes the shell: its instance and its trampoline.
func (s *shell) close() {
	s.closeGuest()
	_ = s.tramp.Close(context.Background())
}

// getShell returns an idle shell of m, or a new one.
func (m *wazeroModule) getShell() (*shell, error) {
	m.mu.Lock()
	if n := len(m.shells); n > 0 {
		s := m.shells[n-1]
		m.shells = m.shells[:n-1]
		m.mu.Unlock()
		return s, nil
	}
	m.mu.Unlock()
	return m.newShell()
}

// putShell keeps s, without an instance, for a later run, or closes it.
func (m *wazeroModule) putShell(s *shell) {
	s.closeGuest()
	s.run = nil
	m.mu.Lock()
	if !m.closed && len(m.shells) < m.e.opts.MaxIdleInstances {
		m.shells = append(m.shells, s)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	s.close()
}

// getIdle returns the most recently used idle instance (in its shell) of a
// module compiled with ReuseInstances, or reset, whose memory fits within
// limit, or nil. Idle instances over limit are closed on the way.
func (m *wazeroModule) getIdle(limit uint64) *shell {
	var over []*shell
	defer func() {
		for _, s := range over {
			m.putShell(s)
		}
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	for n := len(m.idle); n > 0; n = len(m.idle) {
		s := m.idle[n-1]
		m.idle = m.idle[:n-1]
		m.e.idleBytes.Add(-int64(s.mem.size))
		if s.mem.size <= limit {
			return s
		}
		over = append(over, s)
	}
	return nil
}

// putIdle keeps s with its instance for a later task, or, past the idle
// bounds or once the module or engine closes, closes its instance.
func (m *wazeroModule) putIdle(s *shell) {
	s.run = nil
	size := int64(s.mem.size)
	m.mu.Lock()
	keep := !m.closed && !m.e.isClosing() && len(m.idle) < m.e.opts.MaxIdleInstances
	if keep && m.e.idleBytes.Add(size) > int64(m.e.opts.MaxIdleMemoryBytes) {
		m.e.idleBytes.Add(-size)
		keep = false
	}
	if keep {
		m.idle = append(m.idle, s)
	}
	m.mu.Unlock()
	if !keep {
		m.putShell(s)
	}
}

// The forwarders a shell's config binds: each is the shell under another
// type, acting on the run the shell serves.
type (
	shellStdin  shell
	shellStdout shell
	shellStderr shell
	shellRand   shell
	shellCtx    shell
)

func (s *shellStdin) Read(p []byte) (int, error)   { return s.run.stdin.Read(p) }
func (s *shellStdout) Write(p []byte) (int, error) { return s.run.stdout.Write(p) }
func (s *shellStderr) Write(p []byte) (int, error) { return s.run.stderr.Write(p) }
func (s *shellRand) Read(p []byte) (int, error)    { return s.run.rand.Read(p) }

// shellCtx is the run's context, and carries the run for the fabric host
// functions. Between runs it is a context that is never done.
var _ context.Context = (*shellCtx)(nil)

func (c *shellCtx) ctx() context.Context {
	if c.run == nil {
		return context.Background()
	}
	return c.run.ctx
}

func (c *shellCtx) Deadline() (time.Time, bool) { return c.ctx().Deadline() }
func (c *shellCtx) Done() <-chan struct{}       { return c.ctx().Done() }
func (c *shellCtx) Err() error                  { return c.ctx().Err() }
func (c *shellCtx) Value(key any) any {
	if _, ok := key.(runKey); ok {
		if c.run == nil {
			return nil
		}
		return c.run
	}
	return c.ctx().Value(key)
}
