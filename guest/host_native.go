//go:build !wasip1

package guest

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// The native host: the agent runs as an ordinary program. The input is
// stdin, the output stdout, and everything else one line each on stderr:
//
//	info: a log line          (debug:, info:, warn:, error:)
//	progress: 0.420
//	kpi: primes=78498
//	fail: the error message   (from Fail)
//
// A message holding newlines continues on lines indented by a tab.
//
// The streams are os.Stdin, os.Stdout and os.Stderr as they are at the time
// of each call (so that replacing them, as Example tests do, works), unless
// a test of this package sets these.
var native struct {
	mu     sync.Mutex
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// newTask does nothing natively: a process runs one task, and its stdin
// can be read once.
func newTask() {}

func readInput() []byte {
	var r io.Reader = os.Stdin
	if native.stdin != nil {
		r = native.stdin
	}
	b, err := io.ReadAll(r)
	if err != nil {
		writeLog(Error, "guest: reading the input from stdin: "+err.Error())
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

func writeOutput(b []byte) {
	native.mu.Lock()
	defer native.mu.Unlock()
	var w io.Writer = os.Stdout
	if native.stdout != nil {
		w = native.stdout
	}
	w.Write(b)
}

func writeError(msg string) { stderrLine("fail: " + msg) }

func writeLog(level Level, msg string) { stderrLine(level.String() + ": " + msg) }

func reportProgress(permille int32) {
	stderrLine(fmt.Sprintf("progress: %d.%03d", permille/1000, permille%1000))
}

func reportKPI(name string, v float64) {
	stderrLine("kpi: " + name + "=" + strconv.FormatFloat(v, 'g', -1, 64))
}

func stderrLine(s string) {
	s = strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t") + "\n"
	native.mu.Lock()
	defer native.mu.Unlock()
	var w io.Writer = os.Stderr
	if native.stderr != nil {
		w = native.stderr
	}
	io.WriteString(w, s)
}
