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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one worker process.
type proc struct {
	pool *pool
	cmd  *exec.Cmd
	pid  int
	req  *os.File // our end of the requests pipe
	reqW *bufio.Writer
	// ev is our end of the events pipe, in blocking mode: whoever holds the
	// worker reads its replies there, on its own thread, with no goroutine
	// or poller between (see killOn for how a read is interrupted).
	ev       *os.File
	evR      *bufio.Reader
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
	evR, evW, err := blockingPipe()
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
		pool:   p,
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		req:    reqW,
		reqW:   bufio.NewWriterSize(reqW, 64<<10),
		ev:     evR,
		evR:    bufio.NewReaderSize(evR, 64<<10),
		exited: make(chan struct{}),
		loaded: map[string]*atomic.Bool{},
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
	p.wg.Add(2)
	p.mu.Unlock()
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

// next reads the worker's next frame. It blocks until the frame arrives or
// the worker dies (killOn arms a kill to interrupt it).
func (w *proc) next() (frame, error) {
	t, payload, err := readFrame(w.evR)
	if err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, os.ErrClosed) {
		return frame{}, w.deathError()
	}
	if err != nil {
		return frame{}, fmt.Errorf("reading the wasmer worker's events: %w", err)
	}
	return frame{t, payload}, nil
}

// killOn has the worker killed when ctx ends, which ends a read of its
// events with EOF: the one way to interrupt one. disarm reports whether it
// disarmed the kill in time; false means the kill has run or is running,
// and the worker must be discarded.
func (w *proc) killOn(ctx context.Context) (disarm func() bool) {
	if ctx == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, w.kill)
}

// exchange sends a request and reads the first frame of the reply.
func (w *proc) exchange(t byte, payload []byte) (frame, error) {
	if err := w.send(t, payload); err != nil {
		// The worker is gone; say how, when it has already been reaped.
		select {
		case <-w.exited:
			return frame{}, w.deathError()
		case <-time.After(100 * time.Millisecond):
		}
		return frame{}, fmt.Errorf("writing to the worker: %w", err)
	}
	return w.next()
}

// call is exchange interrupted by the end of ctx or of closing (nil: never),
// whose error it then returns; the worker is then killed and must be
// discarded, as after any error.
func (w *proc) call(ctx, closing context.Context, t byte, payload []byte) (byte, []byte, error) {
	disarmCtx, disarmClosing := w.killOn(ctx), w.killOn(closing)
	f, err := w.exchange(t, payload)
	disarmed := disarmCtx()
	disarmed = disarmClosing() && disarmed
	if err == nil && disarmed {
		return f.t, f.payload, nil
	}
	switch {
	case ctx.Err() != nil:
		return 0, nil, ctx.Err()
	case closing != nil && closing.Err() != nil:
		return 0, nil, errPoolClosed
	case err == nil:
		return 0, nil, errors.New("the worker was killed as it answered")
	}
	return 0, nil, err
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

// kill ends the worker; its goroutines then end on their own, and a read
// of its events ends with EOF. The events pipe is closed by closeEvents,
// once nobody reads it.
func (w *proc) kill() {
	w.killOnce.Do(func() {
		_ = w.cmd.Process.Kill()
		w.req.Close()
	})
}

func (w *proc) closeEvents() { _ = w.ev.Close() }

// blockingPipe is os.Pipe in blocking mode: a read blocks its thread
// instead of parking its goroutine on the poller.
func blockingPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}

func (w *proc) dead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
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
