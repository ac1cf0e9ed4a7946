//go:build wasmer

package wasmer

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
)

// TestMain serves as a wasmer worker when the engine re-executes the test
// binary as one, and runs the tests otherwise.
func TestMain(m *testing.M) {
	WorkerMain()
	goleak.VerifyTestMain(m)
}

// newEngine starts an engine closed at the test's end. Its workers' stderr
// is watched: a data race reported by a worker (a -race build) fails the
// test.
func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	opts.Logger = zerolog.New(&stderrWatch{t: t})
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// stderrWatch fails its test when a worker reports a data race.
type stderrWatch struct{ t testing.TB }

func (w *stderrWatch) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("WARNING: DATA RACE")) {
		w.t.Errorf("a wasmer worker reported a data race: %s", p)
	}
	return len(p), nil
}

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) executor.Engine {
		return newEngine(t, Options{MaxMemoryBytes: 256 << 20})
	})
}

func TestConformanceSinglepass(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) executor.Engine {
		return newEngine(t, Options{MaxMemoryBytes: 256 << 20, Compiler: CompilerSinglepass})
	})
}
