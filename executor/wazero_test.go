package executor_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newWazero(t testing.TB, opts executor.WazeroOptions) *executor.Wazero {
	t.Helper()
	e, err := executor.NewWazero(opts)
	if err != nil {
		t.Fatalf("NewWazero: %v", err)
	}
	return e
}

func TestWazeroConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) executor.Engine {
		return newWazero(t, executor.WazeroOptions{MaxMemoryBytes: 256 << 20})
	})
}
