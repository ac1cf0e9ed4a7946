//go:build wasmer

package wasmer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// Options configures the wasmer engine. Zero fields take the defaults noted
// on them. MaxMemoryBytes and MaxModuleBytes mean what they mean for the
// wazero engine (executor.WazeroOptions), with the same defaults.
type Options struct {
	// MaxMemoryBytes is the server's ceiling of a task's linear memory: a
	// module declaring more initial memory is refused at Compile, and no task
	// grows past it whatever its quota. Default 1 GiB; at most 4 GiB; rounded
	// down to 64 KiB pages.
	MaxMemoryBytes uint64
	// MaxModuleBytes is the largest module Compile accepts (larger ones are
	// protocol.ErrLimit). Default 64 MiB.
	MaxModuleBytes int64
	// Workers is the number of worker processes, hence of tasks that run at
	// once; a Run beyond it waits for a worker (its timeout running). Set it
	// to the scheduler's concurrency. Default GOMAXPROCS.
	Workers int
	// Logger receives the engine's own events: workers started, crashed and
	// replaced, their stderr (at warn), refused modules (at debug).
	Logger zerolog.Logger
	// StackBytes is the native stack of the thread that runs a guest; a
	// guest that recurses past it traps with "call stack exhausted". Default
	// 8 MiB; at least 256 KiB.
	StackBytes uint64
	// WorkerDataBytes is each worker's RLIMIT_DATA, the backstop of the
	// memory quota (guest memory, compiled code and the worker's own heap
	// count against it). Default MaxMemoryBytes + 1 GiB.
	WorkerDataBytes uint64
	// Compiler is wasmer's compiler: CompilerCranelift (the default), an
	// optimizing one, or CompilerSinglepass, which compiles a large module
	// about ten times faster (a 2.6 MB Go agent: 0.75 s instead of 8 s) into
	// slower code.
	Compiler string
	// Executable is the binary a worker runs; its main must call WorkerMain
	// first. Default os.Executable(), the running binary.
	Executable string
	// CacheDir is a directory for compiled modules, so that a restarted
	// server loads its agents instead of compiling them again; "" caches
	// nothing on disk. See cache.go for what the files are keyed by.
	CacheDir string
	// StartTimeout bounds a worker's start-up handshake. Default 30 s.
	StartTimeout time.Duration

	// testHooks lets the package's tests ask a worker to crash.
	testHooks bool
}

// Compilers of Options.Compiler.
const (
	CompilerCranelift  = "cranelift"
	CompilerSinglepass = "singlepass"
)

// Defaults of Options.
const (
	DefaultStackBytes   = 8 << 20
	minStackBytes       = 256 << 10
	defaultDataOverhead = 1 << 30
	maxWasm32Memory     = 1 << 32
)

// Validate checks o and fills in its defaults.
func (o *Options) Validate() error {
	if o.MaxMemoryBytes == 0 {
		o.MaxMemoryBytes = executor.DefaultMaxMemoryBytes
	}
	if o.MaxMemoryBytes > maxWasm32Memory {
		return fmt.Errorf("MaxMemoryBytes: want at most %d (4 GiB); got %d", uint64(maxWasm32Memory), o.MaxMemoryBytes)
	}
	o.MaxMemoryBytes = o.MaxMemoryBytes / executor.WasmPageSize * executor.WasmPageSize
	if o.MaxMemoryBytes == 0 {
		return fmt.Errorf("MaxMemoryBytes: want at least one page (%d bytes)", executor.WasmPageSize)
	}
	if o.MaxModuleBytes == 0 {
		o.MaxModuleBytes = executor.DefaultMaxModuleBytes
	}
	if o.MaxModuleBytes < 0 {
		return fmt.Errorf("MaxModuleBytes: want a positive size; got %d", o.MaxModuleBytes)
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Workers < 0 {
		return fmt.Errorf("Workers: want a positive number of worker processes; got %d", o.Workers)
	}
	if o.StackBytes == 0 {
		o.StackBytes = DefaultStackBytes
	}
	if o.StackBytes < minStackBytes {
		return fmt.Errorf("StackBytes: want at least %d (256 KiB); got %d", minStackBytes, o.StackBytes)
	}
	switch o.Compiler {
	case "":
		o.Compiler = CompilerCranelift
	case CompilerCranelift, CompilerSinglepass:
	default:
		return fmt.Errorf("Compiler: want %q or %q; got %q", CompilerCranelift, CompilerSinglepass, o.Compiler)
	}
	if o.WorkerDataBytes == 0 {
		o.WorkerDataBytes = o.MaxMemoryBytes + defaultDataOverhead
	}
	if o.WorkerDataBytes < o.MaxMemoryBytes {
		return fmt.Errorf("WorkerDataBytes: want at least MaxMemoryBytes (%d); got %d", o.MaxMemoryBytes, o.WorkerDataBytes)
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("Executable: cannot find the running binary: %w", err)
		}
		o.Executable = exe
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.StartTimeout < 0 {
		return fmt.Errorf("StartTimeout: want a positive duration; got %s", o.StartTimeout)
	}
	return nil
}

// Engine is the wasmer executor.Engine (build tag "wasmer"). It keeps a pool
// of worker processes and runs each task in one of them, in a fresh instance
// of the module; see the package documentation for why processes.
//
// How it holds a guest to the contract of GUEST_ABI.md, and to the same
// outcomes as the wazero engine:
//   - imports: the fabric functions and a wasi_snapshot_preview1 of its own
//     (wasi.go) that mirrors wazero's for the file table the wazero engine
//     configures: stdin is the input, stdout and stderr go to the run, no
//     files, no environment, no sockets, argv is the agent's name.
//   - clock and random: the fake clock and the seeded random source of
//     executor (FakeWallEpoch, SeededRand) unless the module has the
//     capability.
//   - timeout and cancel: wasmer-go cannot interrupt a guest, so the parent
//     kills the worker (SIGKILL) and starts another; the outcome is timeout
//     or cancelled, with the output and logs the worker had streamed.
//   - memory: the module is instrumented so that memory.grow refuses to grow
//     past the task's quota and records the refusal (a failing run after one
//     is memory_limit); each worker also has an RLIMIT_DATA.
//   - stack: a worker serves from one native thread of StackBytes (the guest
//     thread), on which every guest call runs from the same depth; deeper
//     recursion traps with "call stack exhausted", and the thread goes on.
//   - crashes: a worker that dies during a task (a fault in native code, the
//     RLIMIT_DATA, a kill from outside) fails that task as internal and is
//     replaced; the engine goes on serving.
//   - fuel: wasmer's metering middleware, one point per operator, in a
//     separately compiled variant of the module that only runs that set
//     Invocation.Fuel (metering costs several times the speed of a loop).
//
// ResourceUsage: cpu_seconds is the CPU time the worker's guest thread spent
// instantiating and running the guest (host calls included); memory_peak_mb is the linear memory's
// final (hence largest) size; fuel_consumed is set on metered runs.
type Engine struct {
	opts     Options
	log      zerolog.Logger
	pool     *pool
	metering bool
	wasi     map[string]executor.Signature
	nextKey  atomic.Uint64

	// closing is cancelled by Close, stopping every running guest.
	closing  context.Context
	stopRuns context.CancelFunc

	mu     sync.Mutex
	closed bool
	active int           // Compile and Run calls in progress
	idle   chan struct{} // closed once closed and active == 0
}

var (
	_ executor.Engine  = (*Engine)(nil)
	_ executor.Meterer = (*Engine)(nil)
)

// New starts a wasmer engine and its worker processes. It fails if a worker
// cannot start, notably when the binary's main does not call WorkerMain.
func New(opts Options) (*Engine, error) {
	if os.Getenv(workerEnv) != "" {
		return nil, fmt.Errorf("wasmer engine: this process is a wasmer worker (%s is set) whose main did not call wasmer.WorkerMain first", workerEnv)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("wasmer engine: %w", err)
	}
	e := &Engine{opts: opts, log: opts.Logger, wasi: wasiSignatures()}
	e.closing, e.stopRuns = context.WithCancel(context.Background())
	p, metering, err := startPool(opts, e.log)
	if err != nil {
		e.stopRuns()
		return nil, fmt.Errorf("wasmer engine: %w", err)
	}
	e.pool, e.metering = p, metering
	return e, nil
}

// Name implements executor.Engine.
func (e *Engine) Name() string { return "wasmer" }

// Metering implements executor.Meterer: true when the wasmer library has its
// metering middleware, as the one wasmer-go v1.0.4 ships does.
func (e *Engine) Metering() bool { return e.metering }

// MaxMemoryBytes is the engine's ceiling of a task's linear memory.
func (e *Engine) MaxMemoryBytes() uint64 { return e.opts.MaxMemoryBytes }

func (e *Engine) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.active++
	return true
}

func (e *Engine) leave() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active--
	if e.closed && e.active == 0 && e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
}

func (e *Engine) isClosing() bool { return e.closing.Err() != nil }

// Compile implements executor.Engine. It refuses what the wazero engine
// refuses, for the same reasons (executor.CheckModule), and a module wasmer
// cannot compile, with protocol.ErrInvalidModule; a module over
// MaxModuleBytes is protocol.ErrLimit. It compiles the module in a worker and
// keeps the compiled artifact, which other workers load instead of compiling.
func (e *Engine) Compile(ctx context.Context, spec executor.ModuleSpec) (mod executor.Module, err error) {
	if !e.enter() {
		return nil, protocol.Errorf(protocol.ErrShuttingDown, "the wasmer engine is closed")
	}
	defer e.leave()
	defer func() {
		if err != nil {
			e.log.Debug().Str("agent", spec.Name).Err(err).Msg("module refused")
		}
	}()

	clock, random, err := executor.CheckSpec(spec, e.opts.MaxModuleBytes)
	if err != nil {
		return nil, err
	}

	// As in the wazero engine: the ABI's verdict first; a malformed binary
	// gets the compiler's message, the inspection's only if wasmer accepts.
	info, inspectErr := executor.InspectModule(spec.Wasm)
	var checked executor.CheckedModule
	if inspectErr == nil {
		if checked, err = executor.CheckModule(info, spec, e.wasi, e.opts.MaxMemoryBytes); err != nil {
			return nil, err
		}
	}
	var ins *instrumented
	if inspectErr == nil {
		ins, inspectErr = instrument(spec.Wasm)
	}
	if inspectErr != nil {
		if err := e.validate(ctx, spec.Wasm); err != nil {
			return nil, err
		}
		return nil, protocol.Errorf(protocol.ErrInvalidModule, "%v", inspectErr)
	}

	sum := sha256.Sum256(spec.Wasm)
	key := fmt.Sprintf("m%d-%s", e.nextKey.Add(1), hex.EncodeToString(sum[:6]))
	closedFlag := new(atomic.Bool)
	art, err := e.artifactFor(ctx, key, ins, spec.Wasm, closedFlag)
	if err != nil {
		return nil, err
	}
	m := &module{
		e:             e,
		key:           key,
		wasm:          ins.Wasm,
		abi:           checked.ABI,
		entry:         checked.Entry,
		initialize:    checked.Initialize,
		initialMemory: checked.InitialMemoryBytes,
		hasStart:      ins.HasStart,
		hasMemory:     ins.HasMemory,
		growGuarded:   ins.GrowGuarded,
		clock:         clock,
		random:        random,
		closedFlag:    closedFlag,
	}
	m.artifacts[0] = art
	if spec.Name != "" {
		m.args = []string{spec.Name}
	}
	return m, nil
}

// validate compiles wasm in a worker to learn wasmer's verdict on it.
func (e *Engine) validate(ctx context.Context, wasm []byte) error {
	_, err := e.compileArtifact(ctx, "", wasm, nil, false, nil)
	return err
}

// compileArtifact compiles wasm in a worker, after validating original (if
// not nil), keeps the result under key (unless key is "") until closed is
// set, and returns the serialized artifact.
func (e *Engine) compileArtifact(ctx context.Context, key string, wasm, original []byte, metered bool, closed *atomic.Bool) ([]byte, error) {
	p, err := e.pool.acquire(ctx, e.closing)
	if err != nil {
		if errors.Is(err, errPoolClosed) || e.isClosing() {
			return nil, protocol.Errorf(protocol.ErrShuttingDown, "the wasmer engine is closed")
		}
		return nil, fmt.Errorf("waiting for a wasmer worker to compile the module: %w", err)
	}
	req := compileRequest{Key: key, Metered: metered, WantArtifact: key != "", Wasm: wasm, Validate: original}
	t, payload, err := p.call(ctx, e.closing, msgCompile, req.encode())
	if err != nil {
		e.pool.discard(p, err)
		if ctx.Err() != nil || e.isClosing() {
			return nil, fmt.Errorf("compiling the module: %w", err)
		}
		// The module made the compiler crash the worker: refuse it.
		return nil, protocol.Errorf(protocol.ErrInvalidModule, "compiling the module crashed the wasmer worker: %v", err)
	}
	var reply compiledReply
	if t != msgCompiled || reply.decode(payload) != nil {
		e.pool.discard(p, fmt.Errorf("a compile request got a frame of type %d", t))
		return nil, protocol.Errorf(protocol.ErrInternal, "the wasmer worker answered a compile request with a malformed frame")
	}
	if reply.Err == "" && key != "" {
		p.loaded[key] = closed
	}
	e.pool.release(p)
	if reply.Err != "" {
		return nil, protocol.Errorf(protocol.ErrInvalidModule, "%s", reply.Err)
	}
	return reply.Artifact, nil
}

// variantKey names a module's unmetered or metered variant in a worker.
func variantKey(key string, metered bool) string {
	if metered {
		return key + "+fuel"
	}
	return key
}

// Close implements executor.Engine: it stops every running guest (their
// outcome is internal: the engine closed under them), waits for them and for
// any Compile in progress, then stops every worker. If ctx ends first it
// returns ctx's error; Close may be called again.
func (e *Engine) Close(ctx context.Context) error {
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
			return fmt.Errorf("wasmer engine: closing while runs are active: %w", ctx.Err())
		}
	}
	return e.pool.close(ctx)
}
