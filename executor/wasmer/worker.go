//go:build wasmer

package wasmer

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/chimera-fabric/fabric/protocol"
)

// workerEnv marks a process as a wasmer worker; WorkerMain serves when it is
// set to workerEnvValue.
const (
	workerEnv      = "FABRIC_WASMER_WORKER"
	workerEnvValue = "1"
)

// The worker's ends of its two pipes: ExtraFiles 0 and 1 of the parent's
// exec.Cmd.
const (
	workerRequestsFD = 3
	workerEventsFD   = 4
)

// WorkerMain turns the process into a wasmer worker when the Engine started
// it (FABRIC_WASMER_WORKER=1 in its environment): it serves the Engine over
// its pipes and exits, never returning. In any other process it returns at
// once. A binary that uses the wasmer Engine must call it first thing in main
// (and a test binary, first thing in TestMain), before it parses flags or
// starts anything:
//
//	func main() {
//		wasmer.WorkerMain()
//		...
//	}
func WorkerMain() {
	if os.Getenv(workerEnv) != workerEnvValue {
		return
	}
	os.Exit(serveWorker(os.NewFile(workerRequestsFD, "fabric-requests"), os.NewFile(workerEventsFD, "fabric-events")))
}

// worker is the state of a worker process: the wasmer engines, the modules
// it holds, and the run in progress.
type worker struct {
	in       *bufio.Reader
	ev       eventWriter
	cfg      initConfig
	metering bool
	eng      *engineState // the engine every module runs in, created on first use
	modules  map[moduleKey]*heldModule
	spent    *instance // the last run's instance, to close after its reply
}

type moduleKey struct {
	key     string
	metered bool
}

// engineState is a wasmer engine, its store, and the host functions every
// instance in that store imports.
type engineState struct {
	engine  *wasmer.Engine
	store   *wasmer.Store
	funcs   []*wasmer.Function        // the host functions, kept alive
	externs map[string]unsafe.Pointer // their externs, by hostKey
}

// serveWorker runs the worker's loop and returns its exit status: 0 when the
// parent closed the requests pipe. After the handshake it serves from the
// guest thread (onGuestThread), where every guest call runs.
func serveWorker(in io.Reader, out io.Writer) int {
	w := &worker{in: bufio.NewReaderSize(in, 64<<10), modules: map[moduleKey]*heldModule{}}
	w.ev.w = bufio.NewWriterSize(out, 64<<10)
	hello, err := w.readInit()
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasmer worker: %v\n", err)
		return 1
	}
	status := 1
	if hello.Err == "" {
		err = onGuestThread(w.cfg.StackBytes, func() { status = w.serve(hello) })
		if err == nil {
			return status
		}
		hello.Err = err.Error()
	}
	if err := w.ev.send(msgHello, hello.encode(), true); err != nil {
		fmt.Fprintf(os.Stderr, "wasmer worker: %v\n", err)
	}
	fmt.Fprintf(os.Stderr, "wasmer worker: cannot serve: %s\n", hello.Err)
	return 1
}

// serve says hello and serves requests until the parent closes the pipe.
func (w *worker) serve(hello helloReply) int {
	if err := w.ev.send(msgHello, hello.encode(), true); err != nil {
		fmt.Fprintf(os.Stderr, "wasmer worker: %v\n", err)
		return 1
	}
	for {
		t, payload, err := readFrame(w.in)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "wasmer worker: reading a request: %v\n", err)
			return 1
		}
		if err := w.request(t, payload); err != nil {
			fmt.Fprintf(os.Stderr, "wasmer worker: %v\n", err)
			return 1
		}
	}
}

// readInit reads the init frame and sets the worker up; the hello to answer
// with says why it cannot serve, if it cannot.
func (w *worker) readInit() (helloReply, error) {
	t, payload, err := readFrame(w.in)
	if err != nil {
		return helloReply{}, fmt.Errorf("reading the init frame: %w", err)
	}
	if t != msgInit {
		return helloReply{}, fmt.Errorf("first frame has type %d; want init (%d)", t, msgInit)
	}
	if err := w.cfg.decode(payload); err != nil {
		return helloReply{}, fmt.Errorf("init frame: %w", err)
	}
	hello := helloReply{Version: protocolVersion, PID: int64(os.Getpid())}
	hello.Err = w.setup()
	hello.Metering = w.metering
	return hello, nil
}

// setup applies the init config and prepares wasmer; it returns why the
// worker cannot serve, or "".
func (w *worker) setup() string {
	if w.cfg.Version != protocolVersion {
		return fmt.Sprintf("protocol version %d; this worker speaks %d", w.cfg.Version, protocolVersion)
	}
	if w.cfg.DataLimit > 0 {
		lim := &syscall.Rlimit{Cur: w.cfg.DataLimit, Max: w.cfg.DataLimit}
		if err := syscall.Setrlimit(syscall.RLIMIT_DATA, lim); err != nil {
			return fmt.Sprintf("setting RLIMIT_DATA to %d: %v", w.cfg.DataLimit, err)
		}
	}
	metering, err := loadNative()
	if err != nil {
		return err.Error()
	}
	w.metering = metering
	if _, err := w.engine(); err != nil {
		return err.Error()
	}
	return ""
}

// engine returns the worker's engine, creating it on first use. Every
// module the worker runs lives in its store, metered ones included (see
// compileMetered).
func (w *worker) engine() (*engineState, error) {
	if w.eng != nil {
		return w.eng, nil
	}
	e, err := newWasmerEngine(w.cfg.Compiler, false)
	if err != nil {
		return nil, err
	}
	if e.funcs, e.externs, err = hostImports(e.store); err != nil {
		return nil, err
	}
	w.eng = e
	return e, nil
}

// newWasmerEngine creates a wasmer engine (Universal, with the compiler named)
// and its store, with the metering middleware if metered.
func newWasmerEngine(compiler string, metered bool) (es *engineState, err error) {
	defer func() {
		if p := recover(); p != nil {
			es, err = nil, fmt.Errorf("creating a wasmer engine panicked: %v", p)
		}
	}()
	cfg := wasmer.NewConfig().UseUniversalEngine()
	switch compiler {
	case CompilerCranelift:
		cfg.UseCraneliftCompiler()
	case CompilerSinglepass:
		cfg.UseSinglepassCompiler()
	default:
		return nil, fmt.Errorf("compiler %q: want %s or %s", compiler, CompilerCranelift, CompilerSinglepass)
	}
	if metered {
		pushMetering(cfg)
	}
	es = &engineState{engine: wasmer.NewEngineWithConfig(cfg)}
	es.store = wasmer.NewStore(es.engine)
	return es, nil
}

// compileMetered compiles wasm with the metering middleware and returns the
// artifact. A metering middleware serves one module only (wasmer panics on a
// second), so each compilation has an engine of its own, dropped after; the
// artifact carries the metering code and globals, and loads into the
// worker's one store like any other.
func (w *worker) compileMetered(wasm []byte) ([]byte, error) {
	if !w.metering {
		return nil, fmt.Errorf("the wasmer library has no metering middleware")
	}
	es, err := newWasmerEngine(w.cfg.Compiler, true)
	if err != nil {
		return nil, err
	}
	defer es.store.Close()
	m, err := wasmer.NewModule(es.store, wasm)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	art, err := m.Serialize()
	if err != nil {
		return nil, fmt.Errorf("serializing the compiled module: %w", err)
	}
	return art, nil
}

func (w *worker) request(t byte, payload []byte) error {
	switch t {
	case msgCompile:
		var q compileRequest
		if err := q.decode(payload); err != nil {
			return fmt.Errorf("compile request: %w", err)
		}
		reply := w.compile(&q)
		return w.ev.send(msgCompiled, reply.encode(), true)
	case msgLoad:
		var q loadRequest
		if err := q.decode(payload); err != nil {
			return fmt.Errorf("load request: %w", err)
		}
		reply := w.load(&q)
		return w.ev.send(msgLoaded, reply.encode(), true)
	case msgDrop:
		for _, metered := range []bool{false, true} {
			k := moduleKey{string(payload), metered}
			if m := w.modules[k]; m != nil {
				m.release()
				delete(w.modules, k)
			}
		}
		return nil
	case msgRun:
		var q runRequest
		if err := q.decode(payload); err != nil {
			return fmt.Errorf("run request: %w", err)
		}
		done := w.run(&q)
		err := w.ev.send(evDone, done.encode(), true)
		// Unmapping the instance's memory is the slowest part of its
		// teardown; the parent need not wait for it.
		if w.spent != nil {
			w.spent.close()
			w.spent = nil
		}
		return err
	}
	return fmt.Errorf("unknown request type %d", t)
}

// compile compiles q.Wasm; wasmer's refusal is the reply's Err.
func (w *worker) compile(q *compileRequest) (reply compiledReply) {
	defer func() {
		if p := recover(); p != nil {
			reply = compiledReply{Err: fmt.Sprintf("the wasmer compiler panicked: %v", p)}
		}
	}()
	es, err := w.engine()
	if err != nil {
		return compiledReply{Err: err.Error()}
	}
	if len(q.Validate) > 0 {
		if err := wasmer.ValidateModule(es.store, q.Validate); err != nil {
			return compiledReply{Err: err.Error()}
		}
	}
	var m *wasmer.Module
	if q.Metered {
		art, err := w.compileMetered(q.Wasm)
		if err == nil {
			m, err = wasmer.DeserializeModule(es.store, art)
		}
		if err != nil {
			return compiledReply{Err: err.Error()}
		}
	} else if m, err = wasmer.NewModule(es.store, q.Wasm); err != nil {
		return compiledReply{Err: err.Error()}
	}
	if q.WantArtifact {
		if reply.Artifact, err = m.Serialize(); err != nil {
			m.Close()
			return compiledReply{Err: fmt.Sprintf("serializing the compiled module: %v", err)}
		}
	}
	if q.Key == "" {
		m.Close()
	} else if err := w.keep(moduleKey{q.Key, q.Metered}, es, m); err != nil {
		return compiledReply{Err: err.Error()}
	}
	return reply
}

// load deserializes an artifact this build of the worker produced, after
// validating the module it came from if asked.
func (w *worker) load(q *loadRequest) (reply loadedReply) {
	defer func() {
		if p := recover(); p != nil {
			reply = loadedReply{Err: fmt.Sprintf("deserializing the module panicked: %v", p)}
		}
	}()
	es, err := w.engine()
	if err != nil {
		return loadedReply{Err: err.Error()}
	}
	if len(q.Validate) > 0 {
		if err := wasmer.ValidateModule(es.store, q.Validate); err != nil {
			return loadedReply{Invalid: err.Error()}
		}
	}
	m, err := wasmer.DeserializeModule(es.store, q.Artifact)
	if err != nil {
		return loadedReply{Err: fmt.Sprintf("deserializing the module: %v", err)}
	}
	if err := w.keep(moduleKey{q.Key, q.Metered}, es, m); err != nil {
		return loadedReply{Err: err.Error()}
	}
	return loadedReply{}
}

// keep holds m under k (see hold), replacing what k held; it closes m if
// it cannot.
func (w *worker) keep(k moduleKey, es *engineState, m *wasmer.Module) error {
	h, err := hold(es, m)
	if err != nil {
		m.Close()
		return err
	}
	if old := w.modules[k]; old != nil {
		old.release()
	}
	w.modules[k] = h
	return nil
}

// eventWriter sends frames to the parent. Host functions (on the guest's
// thread) and the run's flusher share it.
type eventWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

// send writes a frame, flushing when asked; the first error sticks (the
// parent is gone, and the worker exits at its next request).
func (e *eventWriter) send(t byte, payload []byte, flush bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	e.err = writeFrame(e.w, t, payload)
	if e.err == nil && flush {
		e.err = e.w.Flush()
	}
	return e.err
}

func (e *eventWriter) flush() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil && e.w.Buffered() > 0 {
		e.err = e.w.Flush()
	}
}

// every calls tick and flushes e every d until stop is called, so that a
// guest's events reach the parent while it runs. A timer, not a goroutine:
// a run shorter than d costs no more than the timer.
func (e *eventWriter) every(d time.Duration, tick func()) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		tick()
		e.flush()
		t.Reset(d)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// internalDone reports a failure of the worker itself on a run's path.
func internalDone(format string, args ...any) runDone {
	return runDone{End: endError, Code: protocol.CodeInternal, Message: fmt.Sprintf(format, args...)}
}

// run runs one task; it never panics.
func (w *worker) run(q *runRequest) (done runDone) {
	defer func() {
		if p := recover(); p != nil {
			done = internalDone("the wasmer worker panicked: %v\n%s", p, debug.Stack())
		}
		currentRun.Store(nil)
	}()
	m := w.modules[moduleKey{q.Key, q.Metered}]
	if m == nil {
		return internalDone("the worker does not hold module %q", q.Key)
	}
	es, err := w.engine()
	if err != nil {
		return internalDone("%v", err)
	}
	r := newGuestRun(w, q)
	defer w.ev.every(10*time.Millisecond, r.sampleMemory)()
	currentRun.Store(r)
	return r.run(es, m)
}
