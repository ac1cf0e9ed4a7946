package executor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/chimera-fabric/fabric/executor/internal/instrument"
	"github.com/chimera-fabric/fabric/protocol"
)

// WazeroOptions configures the wazero engine. Zero fields take the defaults
// noted on them.
type WazeroOptions struct {
	// CacheDir is a directory for wazero's compilation cache, so a restarted
	// server does not compile its agents again; "" caches nothing on disk.
	CacheDir string
	// MaxMemoryBytes is the server's ceiling of a task's linear memory: a
	// module declaring more initial memory is refused at Compile, and no task
	// grows past it whatever its quota. Default 1 GiB; at most 4 GiB (the
	// whole wasm32 address space); rounded down to 64 KiB pages.
	MaxMemoryBytes uint64
	// MaxModuleBytes is the largest module Compile accepts (larger ones are
	// protocol.ErrLimit). Default 64 MiB.
	MaxModuleBytes int64
	// Logger receives the engine's own events (refused modules at debug,
	// host-function panics at error). The zero Logger logs nothing.
	Logger zerolog.Logger
	// MaxIdleInstances is how many instances a module compiled with
	// ReuseInstances keeps idle between tasks, and how many shells (the
	// per-instance host objects every run needs) any module keeps.
	// Default: GOMAXPROCS, at least 4.
	MaxIdleInstances int
	// MaxIdleMemoryBytes bounds the linear memory of all the idle reused
	// or reset instances of the engine together; an instance that would
	// pass it is closed instead. Default 512 MiB.
	MaxIdleMemoryBytes uint64
	// FreshInstances turns instance reset off: every task of a module not
	// compiled with ReuseInstances instantiates it anew, even where
	// resetting an instance would be equivalent (see Wazero). For
	// comparisons; isolation is the same either way.
	FreshInstances bool
}

// Defaults of WazeroOptions.
const (
	DefaultMaxMemoryBytes     = 1 << 30
	DefaultMaxModuleBytes     = 64 << 20
	DefaultMaxIdleMemoryBytes = 512 << 20
	maxWasm32Memory           = 1 << 32
)

// Validate checks o and fills its defaults.
func (o *WazeroOptions) Validate() error {
	if o.MaxMemoryBytes == 0 {
		o.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	if o.MaxMemoryBytes > maxWasm32Memory {
		return fmt.Errorf("MaxMemoryBytes: want at most %d (4 GiB); got %d", uint64(maxWasm32Memory), o.MaxMemoryBytes)
	}
	o.MaxMemoryBytes = o.MaxMemoryBytes / WasmPageSize * WasmPageSize
	if o.MaxMemoryBytes == 0 {
		return fmt.Errorf("MaxMemoryBytes: want at least one page (%d bytes)", WasmPageSize)
	}
	if o.MaxModuleBytes == 0 {
		o.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if o.MaxModuleBytes < 0 {
		return fmt.Errorf("MaxModuleBytes: want a positive size; got %d", o.MaxModuleBytes)
	}
	if o.MaxIdleInstances < 0 {
		return fmt.Errorf("MaxIdleInstances: want 0 (the default) or more; got %d", o.MaxIdleInstances)
	}
	if o.MaxIdleInstances == 0 {
		o.MaxIdleInstances = max(4, runtime.GOMAXPROCS(0))
	}
	if o.MaxIdleMemoryBytes == 0 {
		o.MaxIdleMemoryBytes = DefaultMaxIdleMemoryBytes
	}
	return nil
}

// Wazero is the default Engine, built on wazero (pure Go, no cgo) with its
// optimizing compiler. A module is compiled once by Compile; every Run gets
// an instance in the state a fresh instantiation leaves, so no two runs
// share any state, unless the module was compiled with ReuseInstances (see
// Run for what that shares).
//
// Instance reset: where it is provably equivalent, an instance whose task
// returned normally is reset in place to that state and kept for a later
// task instead of closed (instantiating is most of a small task's cost):
// its linear memory is rewritten to the image instantiation made, its
// mutable globals (exported for the host by the instrumenter, non-exported
// ones included) are set to the values instantiation gave them, its fake
// clock starts over, and the next task calls the start function and
// _initialize again, as after instantiation. Compile decides whether a
// module is eligible (see resetBlocker): every other piece of an
// instance's state must be one no guest can change: no instruction that
// changes a table, an element segment or a data segment, no exported
// table, no v128 global, and only WASI functions that leave the WASI
// context as they found it (no fd_close, fd_renumber, path_open and the
// like). After a trap, a timeout, a cancel, any host-side stop, an exit,
// or a task that grew its memory (a memory cannot shrink), the instance
// is closed, and the next task instantiates afresh.
//
// The sandbox it gives a guest (GUEST_ABI.md):
//   - imports: the fabric functions and wazero's wasi_snapshot_preview1, with
//     no preopened directory, no environment variables, no sockets and one
//     argument (argv[0], the agent's name); stdin is the task's input;
//     stdout is the output of a wasi-command (and log lines for fabric-v1);
//     each stderr line is an info log line.
//   - clock: without the clock capability a fake clock (see FakeWallEpoch);
//     with it the host's wall and monotonic clocks and real sleeps, which a
//     timeout or cancel interrupts.
//   - random: without the random capability a SeededRand seeded with
//     Invocation.Seed; with it crypto/rand.
//   - memory: each run's linear memory is a fresh mmap reservation of the
//     task's quota (pooled, and zeroed in between), committed as the guest
//     grows; a grow past the quota fails (memory.grow returns -1) and makes
//     a failing run memory_limit.
//   - data: Compile merges nearby data segments (instrument.MergeData),
//     keeping the memory image, since instantiation applies them one by one.
//   - calls: the guest's start function, _initialize and entry are called
//     through a trampoline module's table (instrument.Trampoline), one
//     instance of which serves instance after instance: wazero allocates a
//     10 KiB call stack for every exported function it is asked for.
//   - time: Compile instruments the module (package instrument) so that
//     the guest calls the host at least every instrument.Budget function
//     entries, loop iterations or straight-line stretches; there a guest
//     whose timeout passed, whose ctx was cancelled or whose engine is
//     closing is stopped, so any runaway guest, looping or recursing, stops
//     within microseconds. The same calls let the Go runtime stop the world
//     for its garbage collector while guests run (compiled code has no
//     safepoint of its own).
//   - stack: wazero's call stack is capped (tens of MB); unbounded recursion
//     traps with a "call stack exhausted" message.
//
// ResourceUsage, as measured:
//   - cpu_seconds: the CPU time of the OS thread that ran the guest, read
//     with CLOCK_THREAD_CPUTIME_ID before and after the run while the
//     goroutine is locked to that thread. It covers instantiation, the
//     guest's code and the host functions it called (and any Go runtime work,
//     such as GC assists, done on that thread meanwhile). Linux only; 0
//     elsewhere.
//   - memory_peak_mb: the high-water mark of the linear memory, in MiB.
//   - network_tx_bytes, network_rx_bytes, disk_io_ops: 0, and truly so: the
//     guest has no socket and no file to do I/O on.
//   - gpu_utilization: nil (no GPU).
//   - fuel_consumed: nil; wazero does not meter instructions (Metering is
//     false) and a Run with Invocation.Fuel set fails as internal.
type Wazero struct {
	opts  WazeroOptions
	log   zerolog.Logger
	rt    wazero.Runtime
	cache wazero.CompilationCache
	wasi  map[string]Signature
	// trampoline is compiled once; each shell has an instance of it.
	trampoline wazero.CompiledModule
	// idleBytes is the linear memory of the idle reused instances.
	idleBytes atomic.Int64

	// closing is cancelled by Close, stopping every running guest.
	closing  context.Context
	stopRuns context.CancelFunc

	mu            sync.Mutex
	closed        bool
	modules       map[*wazeroModule]struct{} // compiled and not released
	active        int                        // Compile and Run calls in progress
	idle          chan struct{}              // closed once closed and active == 0
	runtimeClosed bool
	closeErr      error
}

var _ Engine = (*Wazero)(nil)

// NewWazero starts a wazero engine.
func NewWazero(opts WazeroOptions) (*Wazero, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("wazero engine: %w", err)
	}
	ctx := context.Background()
	// Not WithCloseOnContextDone: see instrument's package documentation.
	cfg := wazero.NewRuntimeConfigCompiler()
	e := &Wazero{opts: opts, log: opts.Logger, modules: map[*wazeroModule]struct{}{}}
	if opts.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wazero engine: compilation cache in %q: %w", opts.CacheDir, err)
		}
		e.cache = cache
		cfg = cfg.WithCompilationCache(cache)
	}
	e.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		e.closeRuntime(ctx)
		return nil, fmt.Errorf("wazero engine: instantiating %s: %w", WASIModule, err)
	}
	e.wasi = make(map[string]Signature)
	for name, def := range e.rt.Module(WASIModule).ExportedFunctionDefinitions() {
		e.wasi[name] = Signature{Params: valTypes(def.ParamTypes()), Results: valTypes(def.ResultTypes())}
	}
	if err := e.instantiateFabric(ctx); err != nil {
		e.closeRuntime(ctx)
		return nil, fmt.Errorf("wazero engine: instantiating %s: %w", FabricModule, err)
	}
	tramp, err := e.rt.CompileModule(ctx, instrument.Trampoline(trampolineSlots, nil, []byte{byte(I32)}))
	if err != nil {
		e.closeRuntime(ctx)
		return nil, fmt.Errorf("wazero engine: compiling the trampoline: %w", err)
	}
	e.trampoline = tramp
	e.closing, e.stopRuns = context.WithCancel(context.Background())
	return e, nil
}

func valTypes(ts []api.ValueType) []ValType {
	out := make([]ValType, len(ts))
	for i, t := range ts {
		out[i] = ValType(t)
	}
	return out
}

// Name implements Engine.
func (e *Wazero) Name() string { return "wazero" }

// Metering reports whether the engine can meter fuel: wazero cannot, so a
// scheduler must refuse quota.fuel (and an agent's fuel limit) up front.
func (e *Wazero) Metering() bool { return false }

// MaxMemoryBytes is the engine's ceiling of a task's linear memory.
func (e *Wazero) MaxMemoryBytes() uint64 { return e.opts.MaxMemoryBytes }

// enter counts a Compile or Run in; it fails once Close has begun.
func (e *Wazero) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.active++
	return true
}

func (e *Wazero) leave() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active--
	if e.closed && e.active == 0 && e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
}

func (e *Wazero) isClosing() bool { return e.closing.Err() != nil }

// Compile implements Engine. It refuses, with protocol.ErrInvalidModule, a
// module that is not WebAssembly or fails wazero's validation, and one that
// breaks CheckModule's rules; a module over MaxModuleBytes is
// protocol.ErrLimit.
func (e *Wazero) Compile(ctx context.Context, spec ModuleSpec) (mod Module, err error) {
	if !e.enter() {
		return nil, protocol.Errorf(protocol.ErrShuttingDown, "the wazero engine is closed")
	}
	defer e.leave()
	defer func() {
		if err != nil {
			e.log.Debug().Str("agent", spec.Name).Err(err).Msg("module refused")
		}
	}()

	clock, random, err := CheckSpec(spec, e.opts.MaxModuleBytes)
	if err != nil {
		return nil, err
	}

	// wazero never sees a module that InspectModule refused: its decoder
	// allocates by declared counts, so a malformed module of a few bytes
	// could make it allocate gigabytes.
	info, err := InspectModule(spec.Wasm)
	if err != nil {
		return nil, inspectError(err)
	}
	checked, err := CheckModule(info, spec, e.wasi, e.opts.MaxMemoryBytes)
	if err != nil {
		return nil, err
	}
	initialize := ""
	if checked.Initialize {
		initialize = InitializeExport
	}
	reset := ""
	switch {
	case spec.ReuseInstances:
		reset = "the module reuses instances"
	case e.opts.FreshInstances:
		reset = "the engine runs every task in a fresh instance (FreshInstances)"
	default:
		reset = resetBlocker(info)
	}
	inst, err := instrument.Instrument(spec.Wasm, instrument.Options{
		Trampoline:    []string{initialize, checked.Entry},
		ExportGlobals: reset == "",
	})
	if err != nil {
		// Let wazero's validation name the problem; if it accepts the
		// module, refuse it for the instrumenter's reason.
		if compiled, cerr := e.compile(ctx, spec.Wasm); cerr != nil {
			return nil, cerr
		} else {
			_ = compiled.Close(ctx)
		}
		return nil, protocol.Errorf(protocol.ErrInvalidModule, "instrumenting the module: %v", err)
	}
	// Instantiation applies data segments one by one; a Go agent has tens
	// of thousands. Merged, they are a few, with the same memory image.
	wasm, _, _, err := instrument.MergeData(inst.Wasm)
	if err != nil {
		return nil, protocol.Errorf(protocol.ErrInvalidModule, "merging the module's data segments: %v", err)
	}
	compiled, err := e.compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	if reset == "" {
		reset = globalsBlocker(inst)
	}

	m := &wazeroModule{
		e:             e,
		compiled:      compiled,
		abi:           checked.ABI,
		entry:         checked.Entry,
		initialize:    checked.Initialize,
		start:         inst.HasStart,
		initialMemory: checked.InitialMemoryBytes,
		clock:         clock,
		random:        random,
		reuse:         spec.ReuseInstances,
		reset:         reset == "",
		notReset:      reset,
	}
	if reset == "" {
		m.globals = make([]string, len(inst.Globals))
		for i, g := range inst.Globals {
			m.globals[i] = instrument.GlobalExport(g.Index)
		}
	}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions()
	if spec.Name != "" {
		cfg = cfg.WithArgs(spec.Name)
	}
	if clock {
		cfg = cfg.WithSysWalltime().WithSysNanotime()
	}
	if random {
		cfg = cfg.WithRandSource(rand.Reader)
	}
	m.cfg = cfg
	if m.reset {
		e.log.Debug().Str("agent", spec.Name).Msg("instances are reset in place between tasks")
	} else {
		e.log.Debug().Str("agent", spec.Name).Str("why", reset).Msg("every task gets a new instance")
	}
	e.mu.Lock()
	e.modules[m] = struct{}{}
	e.mu.Unlock()
	return m, nil
}

// compile runs wazero's compiler, turning its failures, even a panic, into
// ErrInvalidModule.
func (e *Wazero) compile(ctx context.Context, wasm []byte) (c wazero.CompiledModule, err error) {
	defer func() {
		if p := recover(); p != nil {
			c, err = nil, protocol.Errorf(protocol.ErrInvalidModule, "the compiler failed on the module: %v", p)
		}
	}()
	c, err = e.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, protocol.Errorf(protocol.ErrInvalidModule, "%v", err)
	}
	return c, nil
}

// Close implements Engine: it stops every running guest (their outcome is
// internal: the engine closed under them), waits for them and for any
// Compile in progress, then releases every compiled module. If ctx ends
// first it returns ctx's error and leaves the runtime open (a guest may still
// be executing its code); Close may be called again.
func (e *Wazero) Close(ctx context.Context) error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		e.idle = make(chan struct{})
		if e.active == 0 {
			close(e.idle)
			e.idle = nil
		}
	}
	idle := e.idle
	e.mu.Unlock()
	e.stopRuns()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("wazero engine: closing while runs are active: %w", ctx.Err())
		}
	}
	// Modules left open still hold shells, and reused instances their
	// memory: hand it back before the runtime goes.
	e.mu.Lock()
	mods := make([]*wazeroModule, 0, len(e.modules))
	for m := range e.modules {
		mods = append(mods, m)
	}
	e.mu.Unlock()
	for _, m := range mods {
		m.releaseShells()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.runtimeClosed {
		e.closeErr = e.closeRuntime(ctx)
	}
	return e.closeErr
}

// closeRuntime closes the runtime and the cache; call it with e.mu held or
// before e is shared.
func (e *Wazero) closeRuntime(ctx context.Context) error {
	e.runtimeClosed = true
	err := e.rt.Close(ctx)
	if e.cache != nil {
		err = errors.Join(err, e.cache.Close(ctx))
	}
	return err
}

// wazeroModule is a compiled module.
type wazeroModule struct {
	e             *Wazero
	compiled      wazero.CompiledModule
	cfg           wazero.ModuleConfig // the base of every shell's config
	abi, entry    string
	initialize    bool
	start         bool // the module has a start function (trampoline slot 0)
	initialMemory uint64
	clock, random bool
	reuse         bool // ModuleSpec.ReuseInstances
	// reset says instances are reset in place after a task that returned
	// normally (see Wazero); notReset says why not when they are not.
	reset    bool
	notReset string
	globals  []string // the exports of the mutable globals, for reset
	// instances counts the instances made (for tests: how many tasks ran
	// in a new instance rather than a reset one).
	instances atomic.Int64
	// image is the linear memory instantiation makes (taken from the
	// first instance), for reset.
	image atomic.Pointer[memImage]

	mu       sync.Mutex
	closed   bool
	active   int
	released bool
	shells   []*shell // idle shells without an instance
	idle     []*shell // idle shells with a reused or reset instance, most recent last
}

func (m *wazeroModule) ABI() string   { return m.abi }
func (m *wazeroModule) Entry() string { return m.entry }

func (m *wazeroModule) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.active++
	return true
}

func (m *wazeroModule) leave() {
	m.mu.Lock()
	m.active--
	last := m.closed && m.active == 0
	m.mu.Unlock()
	if last {
		m.release(context.Background())
	}
}

// Close implements Module. Runs already started finish first; the compiled
// code is released when the last of them ends. Later runs fail with
// agent_missing.
func (m *wazeroModule) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	idle := m.active == 0
	m.mu.Unlock()
	if idle {
		return m.release(ctx)
	}
	return nil
}

func (m *wazeroModule) release(ctx context.Context) error {
	m.releaseShells()
	m.e.mu.Lock()
	defer m.e.mu.Unlock()
	delete(m.e.modules, m)
	if m.released || m.e.runtimeClosed { // the runtime released it already
		return nil
	}
	m.released = true
	return m.compiled.Close(ctx)
}

// releaseShells closes the module's idle shells and instances, handing
// their memory back.
func (m *wazeroModule) releaseShells() {
	m.mu.Lock()
	shells := append(m.shells, m.idle...)
	for _, s := range m.idle {
		m.e.idleBytes.Add(-int64(s.mem.size))
	}
	m.shells, m.idle = nil, nil
	m.mu.Unlock()
	for _, s := range shells {
		s.close()
	}
}
