package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chimera-fabric/fabric/protocol"
)

// What a guest can make the host keep, beyond its task's quotas. These are
// part of the sandbox contract: every engine applies them through RunState.
const (
	// LogLineOverhead is what each log line costs against LogLimitBytes on
	// top of its message's bytes, so that a flood of empty lines is bounded
	// too (roughly the size of a line's JSON framing).
	LogLineOverhead = 32
	// MaxLogLineBytes: a longer stderr (or fabric-v1 stdout) line is split
	// into lines of this size.
	MaxLogLineBytes = 64 << 10
	// MaxErrorBytes: error_write's message is cut to this size.
	MaxErrorBytes = 64 << 10
	// MaxKPIs is the number of distinct KPI names a task may report; further
	// names are ignored.
	MaxKPIs = 64
	// MaxKPINameBytes: a longer (or empty, or non-UTF-8) KPI name is ignored.
	MaxKPINameBytes = 128
	// stderrTail is how many of the last stderr lines an exit_status message
	// quotes, each cut to stderrTailBytes.
	stderrTail      = 5
	stderrTailBytes = 256
)

// The fake clock of agents without the clock capability: the wall clock
// reads FakeWallEpoch at its first reading, the monotonic clock reads 0, and
// each clock advances by FakeClockStep at every reading; sleeping returns at
// once. A run's readings are therefore the same on every run.
var (
	FakeWallEpoch = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	FakeClockStep = time.Millisecond
)

// ErrGuestStopped is returned by RunState's stdio writers once the host has
// stopped the guest (RunState.Stopped is set). The engine must then stop the
// guest at once; the wazero engine panics out of the host call.
var ErrGuestStopped = errors.New("guest stopped by the host")

// RunState is the host's side of one run, shared by the engines: the fabric
// host functions and the WASI stdio writers act on it, it enforces the output
// and log quotas, checks every guest pointer against the guest's memory, and
// turns the run's end into an Outcome. Its zero value is ready after Init; it
// is used by one goroutine at a time, the guest's.
//
// A host function that gets a non-nil *protocol.TaskError back must stop the
// guest at once; RunState has recorded it as the run's outcome.
type RunState struct {
	inv   *Invocation
	abi   string
	entry string

	output        []byte
	logs          []protocol.LogLine
	logBytes      int64
	logsTruncated bool
	kpis          map[string]float64
	errMsg        string
	hasErrMsg     bool
	stop          *protocol.TaskError

	stdoutOut outputWriter // wasi-command stdout: the task's output
	stdoutLog logWriter    // fabric-v1 stdout: log lines
	stderr    logWriter

	tail     [stderrTail][]byte // ring of the last stderr lines
	tailNext int
	tailLen  int
}

// Init readies s for a run of inv in a module of the given ABI and entry.
// It keeps the buffers of the stderr tail of an earlier run (emptied).
func (s *RunState) Init(inv *Invocation, abi, entry string) {
	tail := s.tail
	*s = RunState{inv: inv, abi: abi, entry: entry, tail: tail}
	for i := range s.tail {
		s.tail[i] = s.tail[i][:0]
	}
	s.stdoutOut.s = s
	s.stdoutLog = logWriter{s: s}
	s.stderr = logWriter{s: s, stderr: true}
}

// Stopped returns the reason the host stopped the guest, or nil.
func (s *RunState) Stopped() *protocol.TaskError { return s.stop }

// Stop records err as the reason the guest was stopped unless one is already
// recorded, and returns the recorded one.
func (s *RunState) Stop(err *protocol.TaskError) *protocol.TaskError {
	if s.stop == nil {
		s.stop = err
	}
	return s.stop
}

// Panicked records a Go panic in a host function as the run's internal
// error, with the panic's text and stack.
func (s *RunState) Panicked(fn string, recovered any) *protocol.TaskError {
	return s.Stop(protocol.NewTaskError(protocol.CodeInternal,
		"host function %s panicked: %v\n%s", fn, recovered, debug.Stack()))
}

// guestBytes returns mem[ptr:ptr+n], or stops the guest with a trap naming
// the fabric function when that range is not inside mem. The range must lie
// inside the memory even when n is 0.
func (s *RunState) guestBytes(fn string, mem []byte, ptr, n uint32) ([]byte, *protocol.TaskError) {
	if b, ok := GuestRange(mem, ptr, n); ok {
		return b, nil
	}
	return nil, s.Stop(protocol.NewTaskError(protocol.CodeTrap,
		"fabric.%s: bytes [%d, %d) are out of bounds of the guest's %d-byte linear memory",
		fn, ptr, uint64(ptr)+uint64(n), len(mem)))
}

// GuestRange returns mem[ptr:ptr+n] when that range lies inside mem.
func GuestRange(mem []byte, ptr, n uint32) ([]byte, bool) {
	end := uint64(ptr) + uint64(n)
	if end > uint64(len(mem)) {
		return nil, false
	}
	return mem[ptr:end:end], true
}

// InputLen implements fabric.input_len.
func (s *RunState) InputLen() int32 { return int32(len(s.inv.Input)) }

// InputRead implements fabric.input_read: the input is copied to mem[ptr:].
func (s *RunState) InputRead(mem []byte, ptr uint32) *protocol.TaskError {
	dst, err := s.guestBytes("input_read", mem, ptr, uint32(len(s.inv.Input)))
	if err != nil {
		return err
	}
	copy(dst, s.inv.Input)
	return nil
}

// OutputWrite implements fabric.output_write.
func (s *RunState) OutputWrite(mem []byte, ptr, n uint32) *protocol.TaskError {
	b, err := s.guestBytes("output_write", mem, ptr, n)
	if err != nil {
		return err
	}
	return s.appendOutput(b)
}

// appendOutput adds b to the output; past the output quota it keeps what
// fits and stops the guest with output_limit.
func (s *RunState) appendOutput(b []byte) *protocol.TaskError {
	if s.stop != nil {
		return s.stop
	}
	if lim := s.inv.OutputLimitBytes; lim > 0 && int64(len(s.output))+int64(len(b)) > lim {
		s.output = append(s.output, b[:lim-int64(len(s.output))]...)
		return s.Stop(protocol.NewTaskError(protocol.CodeOutputLimit,
			"the agent's output passed its limit of %d bytes", lim))
	}
	s.output = append(s.output, b...)
	return nil
}

// ErrorWrite implements fabric.error_write: it sets the task's error message
// (a later call replaces it); the task then fails with agent_error.
func (s *RunState) ErrorWrite(mem []byte, ptr, n uint32) *protocol.TaskError {
	b, err := s.guestBytes("error_write", mem, ptr, n)
	if err != nil {
		return err
	}
	if len(b) > MaxErrorBytes {
		b = b[:MaxErrorBytes]
	}
	s.errMsg, s.hasErrMsg = string(b), true
	return nil
}

// Log implements fabric.log. Levels below 0 count as debug, above 3 as error.
func (s *RunState) Log(mem []byte, level int32, ptr, n uint32) *protocol.TaskError {
	b, err := s.guestBytes("log", mem, ptr, n)
	if err != nil {
		return err
	}
	level = min(max(level, 0), int32(len(protocol.LogLevels)-1))
	s.addLog(protocol.LogLevels[level], b)
	return nil
}

// Progress implements fabric.progress: permille above 1000 counts as 1000,
// a negative one is ignored. It does not allocate.
func (s *RunState) Progress(permille int32) {
	if permille < 0 || s.inv.OnProgress == nil {
		return
	}
	s.inv.OnProgress(float64(min(permille, 1000)) / 1000)
}

// KPI implements fabric.kpi. A name reported twice keeps its last value. An
// empty, overlong or non-UTF-8 name, a value that is NaN or infinite, and a
// name past the first MaxKPIs are ignored.
func (s *RunState) KPI(mem []byte, ptr, n uint32, v float64) *protocol.TaskError {
	name, err := s.guestBytes("kpi", mem, ptr, n)
	if err != nil {
		return err
	}
	if len(name) == 0 || len(name) > MaxKPINameBytes || !utf8.Valid(name) || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	if s.kpis == nil {
		s.kpis = make(map[string]float64)
	}
	if _, ok := s.kpis[string(name)]; !ok && len(s.kpis) >= MaxKPIs {
		return nil
	}
	s.kpis[string(name)] = v
	return nil
}

// addLog keeps one log line unless the log quota is spent; the first line
// that does not fit marks the logs truncated and every later one is dropped.
func (s *RunState) addLog(level string, msg []byte) {
	if s.logsTruncated {
		return
	}
	cost := int64(len(msg)) + LogLineOverhead
	if lim := s.inv.LogLimitBytes; lim > 0 && s.logBytes+cost > lim {
		s.logsTruncated = true
		return
	}
	s.logBytes += cost
	s.logs = append(s.logs, protocol.LogLine{Level: level, Msg: string(msg), At: time.Now()})
}

// Stdout is the guest's WASI stdout: the task's output for wasi-command,
// info log lines for fabric-v1 (whose output is what output_write writes).
func (s *RunState) Stdout() io.Writer {
	if s.abi == protocol.ABIWasiCommand {
		return &s.stdoutOut
	}
	return &s.stdoutLog
}

// Stderr is the guest's WASI stderr: each line is an info log line.
func (s *RunState) Stderr() io.Writer { return &s.stderr }

type outputWriter struct{ s *RunState }

func (w *outputWriter) Write(p []byte) (int, error) {
	before := len(w.s.output)
	if err := w.s.appendOutput(p); err != nil {
		return len(w.s.output) - before, ErrGuestStopped
	}
	return len(p), nil
}

// logWriter splits what a guest writes into log lines.
type logWriter struct {
	s       *RunState
	stderr  bool // keep the last lines for an exit_status message
	pending []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.s.stop != nil {
		return 0, ErrGuestStopped
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := MaxLogLineBytes - len(w.pending); len(chunk) > room {
			w.pending = append(w.pending, chunk[:room]...)
			w.flush()
			p = p[room:]
			continue
		}
		w.pending = append(w.pending, chunk...)
		if i < 0 {
			break
		}
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *logWriter) flush() {
	line := bytes.TrimSuffix(w.pending, []byte{'\r'})
	w.s.addLog("info", line)
	if w.stderr {
		s := w.s
		t := line[:min(len(line), stderrTailBytes)]
		s.tail[s.tailNext] = append(s.tail[s.tailNext][:0], t...)
		s.tailNext = (s.tailNext + 1) % stderrTail
		s.tailLen = min(s.tailLen+1, stderrTail)
	}
	w.pending = w.pending[:0]
}

// ExitStatus builds the exit_status error of a guest that exited with a
// non-zero status, quoting its last stderr lines.
func (s *RunState) ExitStatus(status uint32) *protocol.TaskError {
	s.stderr.flushPartial()
	msg := fmt.Sprintf("exit status %d", status)
	if s.tailLen > 0 {
		lines := make([]string, 0, s.tailLen)
		for i := s.tailLen; i > 0; i-- {
			lines = append(lines, string(s.tail[(s.tailNext-i+stderrTail)%stderrTail]))
		}
		msg += "; last stderr lines:\n" + strings.Join(lines, "\n")
	}
	return protocol.NewTaskError(protocol.CodeExitStatus, "%s", msg)
}

// flushPartial ends a last line written without a newline.
func (w *logWriter) flushPartial() {
	if len(w.pending) > 0 {
		w.flush()
	}
}

// End is how a run ended, as the engine saw it.
type End struct {
	// Err is the engine's account of a run that did not end normally: trap,
	// exit_status (built with RunState.ExitStatus), timeout, cancelled or
	// internal. Nil when the entry returned or the guest exited with 0.
	Err *protocol.TaskError
	// Returned says a fabric-v1 entry returned Return.
	Returned bool
	Return   int32
	// MemoryRefused says a memory.grow was refused because of the task's
	// memory quota of MemoryLimitBytes.
	MemoryRefused    bool
	MemoryLimitBytes uint64
	Usage            protocol.ResourceUsage
	Duration         time.Duration
	// Instantiate is how long making the instance took, by instantiating
	// or resetting (0: not measured, or reused).
	Instantiate time.Duration
}

// Outcome builds the run's Outcome. In order: a reason the host stopped the
// guest (a bad pointer, output_limit, a host panic) wins, then the engine's
// End.Err; a message from error_write turns a normal end or an exit_status
// into agent_error with exactly that message; a fabric-v1 entry that returned
// non-zero is agent_error. A trap, exit_status or agent_error after a
// memory.grow refused for the quota is memory_limit: a guest usually fails
// that way when it runs out of memory.
func (s *RunState) Outcome(end End) Outcome {
	s.stdoutLog.flushPartial()
	s.stderr.flushPartial()
	err := s.stop
	if err == nil {
		err = end.Err
	}
	if s.hasErrMsg && (err == nil || err.Code == protocol.CodeExitStatus) {
		err = &protocol.TaskError{Code: protocol.CodeAgentError, Message: s.errMsg,
			Retryable: protocol.Retryable(protocol.CodeAgentError)}
	}
	if err == nil && end.Returned && end.Return != 0 {
		err = protocol.NewTaskError(protocol.CodeAgentError, "%s returned %d", s.entry, end.Return)
	}
	if err != nil && end.MemoryRefused {
		switch err.Code {
		case protocol.CodeTrap, protocol.CodeExitStatus, protocol.CodeAgentError:
			err = protocol.NewTaskError(protocol.CodeMemoryLimit,
				"linear memory may not grow past the task's quota of %s; then: %s: %s",
				FormatBytes(end.MemoryLimitBytes), err.Code, err.Message)
		}
	}
	return Outcome{
		Output:        s.output,
		Logs:          s.logs,
		LogsTruncated: s.logsTruncated,
		KPIs:          s.kpis,
		Usage:         end.Usage,
		Duration:      end.Duration,
		Instantiate:   end.Instantiate,
		Err:           err,
	}
}

// SeededRand is the random source of agents without the random capability:
// a PCG seeded with the task's seed, so a run's random bytes depend only on
// Invocation.Seed. It is cheap to seed, which matters once per task.
type SeededRand struct {
	pcg  rand.PCG
	buf  [8]byte
	left int
}

// Seed resets r to the sequence of seed.
func (r *SeededRand) Seed(seed int64) {
	r.pcg.Seed(uint64(seed), 0x9e3779b97f4a7c15)
	r.left = 0
}

// Read fills p; it never fails.
func (r *SeededRand) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if r.left == 0 {
			v := r.pcg.Uint64()
			for i := range r.buf {
				r.buf[i] = byte(v >> (8 * i))
			}
			r.left = len(r.buf)
		}
		c := copy(p, r.buf[len(r.buf)-r.left:])
		r.left -= c
		p = p[c:]
	}
	return n, nil
}
