//go:build wasmer

package wasmer

import (
	"context"
	"testing"
	"time"

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

// newEngine starts an engine closed at the test's end.
func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Workers == 0 {
		opts.Workers = 2
	}
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

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) executor.Engine {
		return newEngine(t, Options{MaxMemoryBytes: 256 << 20})
	})
}
