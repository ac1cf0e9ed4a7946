//go:build wasmer

package main

import (
	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/wasmer"
)

// With -tags wasmer, fabricd offers --engine wasmer. Its guests run in
// worker processes that are this binary re-executed: WorkerMain, first thing
// in main, makes such a process serve as a worker instead of as fabricd.
func init() {
	preMain = append(preMain, wasmer.WorkerMain)
	engines["wasmer"] = func(o engineOptions) (executor.Engine, error) {
		return wasmer.New(wasmer.Options{
			MaxMemoryBytes: o.MaxMemoryBytes,
			MaxModuleBytes: o.MaxModuleBytes,
			Workers:        o.Workers,
			Logger:         o.Logger,
			CacheDir:       o.CacheDir,
		})
	}
}
