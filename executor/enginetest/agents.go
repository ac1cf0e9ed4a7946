// Package enginetest is the conformance suite of executor.Engine. Every
// engine runs the same suite: executor/wazero_test.go for wazero, and the
// wasmer engine's tests (build tag wasmer). The agents it runs are the
// hand-written modules of testdata/agents (see its README.md).
//
//go:generate sh ../../testdata/agents/build.sh
package enginetest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// AgentsDir is the directory of the test agents, testdata/agents at the
// repository's root.
func AgentsDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("enginetest: cannot locate its own source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "agents")
}

// Agent returns the compiled test agent name (testdata/agents/name.wasm).
func Agent(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(AgentsDir(), name+".wasm"))
	if err != nil {
		t.Fatalf("test agent %s: %v", name, err)
	}
	return b
}
