// Package guest is the Go SDK for Fabric agents: the guest side of
// GUEST_ABI.md.
//
// An agent is a Go main package built with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -o echo.wasm ./examples/echo
//
// Built that way (a wasi-command), the SDK talks to the host through the
// `fabric` import module: Input reads the task's input with input_len and
// input_read, Output appends with output_write, Fail sets the error with
// error_write, and Log, Progress and KPI map to log, progress and kpi.
//
// The same package also builds for every other platform (build constraint
// !wasip1) with a native implementation of the same calls: the input is
// read from stdin, the output written to stdout, and logs, progress, KPIs
// and the error go to stderr as one line each. An agent can therefore be run
// and unit-tested as an ordinary program (`go run ./examples/echo < in.json`)
// before it is built for the fabric.
//
// # The common case
//
//	func main() {
//		guest.Run(func(in []byte) ([]byte, error) {
//			return bytes.ToUpper(in), nil
//		})
//	}
//
// Run reads the input, calls the function, and writes its output. When the
// function returns an error, Run calls Fail with it and exits with status 1;
// the host, seeing that error_write was called, fails the task with code
// agent_error and the error's text as its message (rather than exit_status).
//
// # The fabric-v1 reactor form
//
// A module built with -buildmode=c-shared is a reactor: it exports
// _initialize (which runs the package initialisers, never main) and the
// functions marked //go:wasmexport. The fabric-v1 ABI calls the entry
// function, by default "run", of type () -> i32, where 0 means success:
//
//	//go:wasmexport run
//	func run() int32 { return guest.Handle(work) }
//
//	func main() {} // required by package main, never called
//
// built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o agent.wasm .
//
// Handle does what Run does but returns the status instead of exiting.
package guest

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"sync"
)

// Level is a log line's severity, as fabric.log numbers it.
type Level int32

// Log levels.
const (
	Debug Level = 0
	Info  Level = 1
	Warn  Level = 2
	Error Level = 3
)

var levelNames = [...]string{"debug", "info", "warn", "error"}

func (l Level) String() string {
	if l < Debug || l > Error {
		return fmt.Sprintf("Level(%d)", int32(l))
	}
	return levelNames[l]
}

var (
	inputOnce sync.Once
	input     []byte
)

// Handler computes a task's output from its input.
type Handler func(in []byte) ([]byte, error)

// Input returns the task's input. The bytes are read from the host once per
// task and the same slice is returned on every call; callers must not
// modify it. (In a reactor whose instance the host reuses for task after
// task, reuse_instances, Handle starts each task by forgetting the last
// task's input.)
func Input() []byte {
	inputOnce.Do(func() { input = readInput() })
	return input
}

// Output appends b to the task's output. It may be called any number of
// times; the output is the concatenation. Past the task's output quota the
// host stops the agent and the task fails with output_limit.
func Output(b []byte) {
	if len(b) == 0 {
		return
	}
	writeOutput(b)
}

// Fail sets the task's error message to err's text: once the agent stops,
// the task fails with code agent_error whatever the exit status. Like
// testing.T.Fail it does not stop the agent: return from the entry function
// (or let Run exit) afterwards. A later call replaces the message. A nil err
// is reported as "guest.Fail(nil)" so that the task still fails visibly.
func Fail(err error) {
	msg := "guest.Fail(nil)"
	if err != nil {
		msg = err.Error()
	}
	if msg == "" {
		msg = "agent failed with an empty error message"
	}
	writeError(msg)
}

// Progress reports how far the task has got, f from 0 (nothing done) to 1
// (done). Values outside 0..1 are clamped and NaN is ignored. The host
// receives it in permille and streams it as a task.event.
func Progress(f float64) {
	if math.IsNaN(f) {
		return
	}
	reportProgress(permille(f))
}

func permille(f float64) int32 {
	switch {
	case f <= 0:
		return 0
	case f >= 1:
		return 1000
	}
	return int32(math.Round(f * 1000))
}

// KPI records a custom metric: the host keeps it in the task's result and
// sums it into kpi.report's custom figures. NaN and the infinities are
// dropped: JSON has no spelling for them. Recording the same name twice in
// one task is up to the host.
func KPI(name string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	reportKPI(name, v)
}

// Log records a log line at the given level. Levels outside Debug..Error are
// sent as Error. The host caps the total size of a task's logs and drops
// lines past the cap.
func Log(level Level, msg string) {
	if level < Debug || level > Error {
		level = Error
	}
	writeLog(level, msg)
}

// Logf is Log with fmt.Sprintf formatting.
func Logf(level Level, format string, args ...any) {
	Log(level, fmt.Sprintf(format, args...))
}

// Handle runs h on the task's input and writes its output, returning 0.
// When h returns an error, or panics, Handle calls Fail and returns 1 (a
// panic's stack is logged at level Error first). Output written by h itself
// before failing is kept. It is the body of a fabric-v1 entry function:
//
//	//go:wasmexport run
//	func run() int32 { return guest.Handle(work) }
func Handle(h Handler) (status int32) {
	defer func() {
		if r := recover(); r != nil {
			Log(Error, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
			Fail(fmt.Errorf("panic: %v", r))
			status = 1
		}
	}()
	newTask()
	out, err := h(Input())
	if err != nil {
		Fail(err)
		return 1
	}
	Output(out)
	return 0
}

// exit is os.Exit, replaced in tests.
var exit = os.Exit

// Run is the main function of a wasi-command agent: it runs h with Handle
// and, when h failed, exits with status 1 (after Fail has set the message,
// so the task fails with agent_error). On success it returns, and main
// returning ends the agent with status 0.
func Run(h Handler) {
	if Handle(h) != 0 {
		exit(1)
	}
}
