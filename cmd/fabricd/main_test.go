package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fabricdtest.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
