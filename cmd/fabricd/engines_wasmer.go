//go:build wasmer

package main

import (
	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/wasmer"
)

// With -tags wasmer, --engine wasmer runs guests in wasmer worker processes:
// this binary re-executed, whose main hands over to wasmer.WorkerMain first.
func init() {
	preMain = append(preMain, wasmer.WorkerMain)
	engines["wasmer"] = func(o engineOptions) (executor.Engine, error) {
		return wasmer.New(wasmer.Options{
			CacheDir:       o.CacheDir,
			MaxMemoryBytes: o.MaxMemoryBytes,
			MaxModuleBytes: o.MaxModuleBytes,
			Workers:        o.Workers,
			Logger:         o.Logger,
		})
	}
}
