//go:build wasmer

package wasmer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// pool owns the worker processes. Every goroutine it starts is tracked by wg
// and ends once close has killed the workers.
type pool struct {
	opts Options
	log  zerolog.Logger

	idle     chan *proc    // workers ready for a request
	spawns   chan struct{} // a worker is to be started
	closing  chan struct{} // closed by close
	spawnerd chan struct{} // closed when the spawner returns

	mu     sync.Mutex
	closed bool
	procs  map[*proc]struct{} // every live worker
	wg     sync.WaitGroup
}

var errPoolClosed = errors.New("the wasmer engine is closed")

// startPool starts opts.Workers workers and returns once they have all
// answered the handshake, with whether they can meter fuel.
func startPool(opts Options, log zerolog.Logger) (*pool, bool, error) {
	p := &pool{
		opts:     opts,
		log:      log,
		idle:     make(chan *proc, opts.Workers),
		spawns:   make(chan struct{}, opts.Workers),
		closing:  make(chan struct{}),
		spawnerd: make(chan struct{}),
		procs:    map[*proc]struct{}{},
	}
	// The first workers are started here, on the spawner's thread, so that
	// a failure is New's; the spawner then replaces lost workers.
	started := make(chan error, 1)
	var metering bool
	go p.spawner(func(spawn func() (*proc, error)) {
		for i := 0; i < opts.Workers; i++ {
			w, err := spawn()
			if err != nil {
				started <- err
				return
			}
			metering = w.metering
			p.idle <- w
		}
		started <- nil
	})
	if err := <-started; err != nil {
		_ = p.close(context.Background())
		return nil, false, err
	}
	return p, metering, nil
}

// spawner starts workers, on one OS thread that lives as long as the pool:
// a worker's Pdeathsig fires when the thread that forked it ends, and the Go
// runtime may end a thread, but not this locked one until close.
func (p *pool) spawner(first func(spawn func() (*proc, error))) {
	defer close(p.spawnerd)
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	first(p.spawn)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-p.closing:
			return
		case <-p.spawns:
		}
		for {
			w, err := p.spawn()
			if err == nil {
				p.idle <- w
				backoff = 100 * time.Millisecond
				break
			}
			if errors.Is(err, errPoolClosed) {
				return
			}
			p.log.Error().Err(err).Dur("retry_in", backoff).Msg("wasmer worker failed to start")
			select {
			case <-p.closing:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// proc is one worker process.
type proc struct {
	pool     *pool
	cmd      *exec.Cmd
	pid      int
	req      *os.File // our end of the requests pipe
	reqW     *bufio.Writer
	frames   chan frame    // from the events pipe, read by readEvents
	abandon  chan struct{} // closed when the parent stops listening
	exited   chan struct{} // closed once the process has been waited for
	exitErr  error
	stderr   tail
	metering bool
	loaded   map[string]*atomic.Bool // module variants the worker holds, and whether their module closed
	killOnce sync.Once
}

type frame struct {
	t       byte
	payload []byte
}

// spawn starts a worker and completes its handshake.
func (p *pool) spawn() (*proc, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	p.mu.Unlock()

	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting a wasmer worker: %w", err)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, fmt.Errorf("starting a wasmer worker: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		evR.Close()
		evW.Close()
		return nil, fmt.Errorf("starting a wasmer worker: %w", err)
	}
	cmd := exec.Command(p.opts.Executable, "fabric-wasmer-worker")
	cmd.Env = workerEnviron()
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{reqR, evW} // fds 3 and 4
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL, // dies with the server
		Setpgid:   true,            // a terminal's ^C is the server's to handle
	}
	err = cmd.Start()
	reqR.Close()
	evW.Close()
	errW.Close()
	if err != nil {
		reqW.Close()
		evR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting a wasmer worker (%s): %w", p.opts.Executable, err)
	}
	w := &proc{
		pool:    p,
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		req:     reqW,
		reqW:    bufio.NewWriterSize(reqW, 64<<10),
		frames:  make(chan frame, 64),
		abandon: make(chan struct{}),
		exited:  make(chan struct{}),
		loaded:  map[string]*atomic.Bool{},
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		reqW.Close()
		evR.Close()
		errR.Close()
		return nil, errPoolClosed
	}
	p.procs[w] = struct{}{}
	p.wg.Add(3)
	p.mu.Unlock()
	go w.readEvents(evR)
	go w.readStderr(errR)
	go w.wait()

	if err := w.handshake(); err != nil {
		p.forget(w)
		return nil, fmt.Errorf("wasmer worker %d: %w", w.pid, err)
	}
	p.log.Debug().Int("pid", w.pid).Msg("wasmer worker started")
	return w, nil
}

// workerEnvVars are the variables a worker keeps from the server's
// environment: those the dynamic loader and the Go runtime read. Nothing
// else (a token, a database path) reaches a process that runs guests.
var workerEnvVars = []string{"LD_LIBRARY_PATH", "TMPDIR", "GODEBUG", "GOGC", "GOMEMLIMIT", "GOMAXPROCS",
	"GOTRACEBACK", "GORACE", "GOCOVERDIR"}

func workerEnviron() []string {
	env := []string{workerEnv + "=" + workerEnvValue}
	for _, k := range workerEnvVars {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (w *proc) handshake() error {
	cfg := initConfig{
		Version:    protocolVersion,
		DataLimit:  w.pool.opts.WorkerDataBytes,
		StackBytes: w.pool.opts.StackBytes,
		Compiler:   w.pool.opts.Compiler,
		TestHooks:  w.pool.opts.testHooks,
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.pool.opts.StartTimeout)
	defer cancel()
	t, payload, err := w.call(ctx, nil, msgInit, cfg.encode())
	if err != nil {
		return fmt.Errorf("no handshake (does the binary's main call wasmer.WorkerMain first?): %w", err)
	}
	var hello helloReply
	if t != msgHello {
		return fmt.Errorf("handshake: got a frame of type %d; want hello", t)
	}
	if err := hello.decode(payload); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if hello.Version != protocolVersion {
		return fmt.Errorf("handshake: the worker speaks protocol %d; want %d", hello.Version, protocolVersion)
	}
	if hello.Err != "" {
		return fmt.Errorf("the worker cannot serve: %s", hello.Err)
	}
	w.metering = hello.Metering
	return nil
}

// readEvents reads the worker's frames until its pipe closes.
func (w *proc) readEvents(r *os.File) {
	defer w.pool.wg.Done()
	defer close(w.frames)
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		t, payload, err := readFrame(br)
		if err != nil {
			return
		}
		select {
		case w.frames <- frame{t, payload}:
		case <-w.abandon:
			return
		}
	}
}

// readStderr keeps the worker's last stderr lines and logs each one.
func (w *proc) readStderr(r *os.File) {
	defer w.pool.wg.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		w.stderr.add(line)
		w.pool.log.Warn().Int("pid", w.pid).Str("line", line).Msg("wasmer worker stderr")
	}
	_, _ = io.Copy(io.Discard, r) // a line past 64 KiB: drain so the worker never blocks
}

func (w *proc) wait() {
	defer w.pool.wg.Done()
	w.exitErr = w.cmd.Wait()
	close(w.exited)
}

// send writes one request frame.
func (w *proc) send(t byte, payload []byte) error {
	if err := writeFrame(w.reqW, t, payload); err != nil {
		return err
	}
	return w.reqW.Flush()
}

// next returns the worker's next frame, or an error once the worker died,
// ctx ended or closing was closed (a nil closing never is).
func (w *proc) next(ctx context.Context, closing <-chan struct{}) (frame, error) {
	select {
	case f, ok := <-w.frames:
		if !ok {
			return frame{}, w.deathError()
		}
		return f, nil
	case <-ctx.Done():
		return frame{}, ctx.Err()
	case <-closing:
		return frame{}, errPoolClosed
	}
}

// call sends a request and returns the first frame of the reply.
func (w *proc) call(ctx context.Context, closing <-chan struct{}, t byte, payload []byte) (byte, []byte, error) {
	if err := w.send(t, payload); err != nil {
		// The worker is gone; say how, when it has already been reaped.
		select {
		case <-w.exited:
			return 0, nil, w.deathError()
		case <-time.After(100 * time.Millisecond):
		}
		return 0, nil, fmt.Errorf("writing to the worker: %w", err)
	}
	f, err := w.next(ctx, closing)
	return f.t, f.payload, err
}

// deathError describes how the worker ended, with its last stderr lines.
func (w *proc) deathError() error {
	select {
	case <-w.exited:
	case <-time.After(2 * time.Second): // its pipe closed but it lingers
	}
	how := "it closed its pipe"
	if st := w.cmd.ProcessState; st != nil {
		how = st.String()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = "killed by signal " + ws.Signal().String()
		}
	}
	msg := fmt.Sprintf("the wasmer worker (pid %d) died: %s", w.pid, how)
	crash, last := w.stderr.report()
	if crash != "" {
		msg += ": " + crash
	}
	if last != "" {
		msg += "; its last stderr lines:\n" + last
	}
	return errors.New(msg)
}

// kill ends the worker; its goroutines then end on their own.
func (w *proc) kill() {
	w.killOnce.Do(func() {
		close(w.abandon)
		_ = w.cmd.Process.Kill()
		w.req.Close()
	})
}

func (w *proc) dead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// acquire takes an idle worker, waiting for one until ctx ends or the
// engine closes. A worker found dead is replaced and skipped.
func (p *pool) acquire(ctx context.Context, closing context.Context) (*proc, error) {
	for {
		select {
		case w := <-p.idle:
			if w.dead() {
				p.discard(w, errors.New("found dead while idle"))
				continue
			}
			return w, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-closing.Done():
			return nil, errPoolClosed
		case <-p.closing:
			return nil, errPoolClosed
		}
	}
}

// release returns a healthy worker to the pool.
func (p *pool) release(w *proc) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.discard(w, errPoolClosed)
		return
	}
	p.idle <- w // never blocks: at most opts.Workers workers exist
}

// forget kills a worker and reports whether it was live (not yet
// forgotten) in an open pool.
func (p *pool) forget(w *proc) bool {
	w.kill()
	p.mu.Lock()
	defer p.mu.Unlock()
	_, live := p.procs[w]
	delete(p.procs, w)
	return live && !p.closed
}

// discard kills a worker and has the spawner start its replacement.
func (p *pool) discard(w *proc, why error) {
	if !p.forget(w) {
		return
	}
	p.log.Info().Int("pid", w.pid).AnErr("reason", why).Msg("wasmer worker discarded; starting another")
	select {
	case p.spawns <- struct{}{}:
	default: // cannot happen: one pending spawn per lost worker, at most Workers
	}
}

// close kills every worker and waits for the pool's goroutines.
func (p *pool) close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
	procs := make([]*proc, 0, len(p.procs))
	for w := range p.procs {
		procs = append(procs, w)
	}
	p.procs = map[*proc]struct{}{}
	p.mu.Unlock()
	for _, w := range procs {
		w.kill()
	}
	done := make(chan struct{})
	go func() {
		<-p.spawnerd
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wasmer engine: waiting for the workers to exit: %w", ctx.Err())
	}
}

// tail keeps what a worker wrote to stderr that explains its death: the
// first lines of a crash report (a Go fatal error or panic, a signal, a Rust
// panic), whose top says what happened, and the last lines.
type tail struct {
	mu    sync.Mutex
	crash []string
	lines []string
}

const (
	tailLines     = 10
	crashLines    = 3
	tailLineBytes = 512
)

// crashMarkers begin the first line of a crash report.
var crashMarkers = []string{"panic:", "fatal error:", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT",
	"unexpected signal", "thread '"}

func (t *tail) add(line string) {
	if len(line) > tailLineBytes {
		line = line[:tailLineBytes] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.crash) == 0 {
		for _, m := range crashMarkers {
			if strings.HasPrefix(line, m) {
				t.crash = append(t.crash, line)
				break
			}
		}
	} else if len(t.crash) < crashLines && line != "" {
		t.crash = append(t.crash, line)
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

// report returns the crash report's first lines (joined with "; ") and the
// last lines.
func (t *tail) report() (crash, last string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.crash, "; "), strings.Join(t.lines, "\n")
}
