// Package executor runs agents' WebAssembly modules in sandboxes.
//
// Engine has two implementations run through one conformance suite: wazero
// (the default, pure Go) and wasmer (cgo, build tag "wasmer"). An engine
// compiles a module once, at agent.register, and runs every task in a fresh
// instance of it, or in one reset in place to exactly a fresh instance's
// state (wazero, where the module allows it), or, for a module compiled
// with ReuseInstances, possibly in one that ran its earlier tasks.
package executor

import (
	"context"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Engine compiles and runs WebAssembly modules.
type Engine interface {
	// Name is the engine's name as --engine spells it.
	Name() string
	// Compile validates and compiles a module. An unusable module (not
	// WebAssembly, fails validation, imports outside GUEST_ABI.md, no entry)
	// is refused with an error wrapping protocol.ErrInvalidModule that names
	// the problem.
	Compile(ctx context.Context, spec ModuleSpec) (Module, error)
	// Close releases the engine and every module it compiled. Running
	// guests are stopped (their runs fail); calling Close again is harmless.
	Close(ctx context.Context) error
}

// Meterer is implemented by an engine that knows whether it can meter fuel.
// A scheduler refuses quota.fuel (and an agent's fuel limit) on an engine
// that does not implement it or whose Metering is false.
type Meterer interface {
	Metering() bool
}

// ModuleSpec describes a module to compile.
type ModuleSpec struct {
	Name         string
	Wasm         []byte
	ABI          string   // "" detects it from the exports
	Entry        string   // "" for the ABI's default ("run" or "_start")
	Capabilities []string // protocol.CapClock, protocol.CapRandom
	// ReuseInstances lets the engine run a task in an instance that ran
	// earlier tasks of this module (never two at once), keeping its linear
	// memory and globals, instead of a fresh one: faster, and less
	// isolated, since a task can see what earlier tasks left. Only for
	// fabric-v1 modules (CheckModule refuses it for a wasi-command, whose
	// _start runs once per instance). An engine that cannot reuse
	// instances runs every task fresh, which honours it too.
	ReuseInstances bool
}

// Module is a compiled module. Run may be called concurrently; each call runs
// in its own instance. Unless the module was compiled with ReuseInstances,
// that instance is fresh, or indistinguishable from a fresh one to the
// guest, and shares no state with any other; with it, the instance may have
// run earlier tasks of the module, one at a time.
type Module interface {
	ABI() string
	Entry() string
	// Run runs one task. It never panics and never returns a Go error: every
	// failure, the host's own included, is an Outcome with Err set.
	Run(ctx context.Context, inv Invocation) Outcome
	// Close releases the module once its runs in progress end; a Run after
	// Close fails with CodeAgentMissing. Calling Close again is harmless.
	Close(ctx context.Context) error
}

// Invocation is one task's run. A zero limit means none (MemoryLimitBytes:
// the engine's ceiling), so a scheduler must set every limit it means to
// enforce.
type Invocation struct {
	TaskID string
	Input  []byte
	// Timeout bounds the run's wall-clock time; the guest is stopped when it
	// passes and the outcome is CodeTimeout. Cancelling ctx stops the guest
	// too, with CodeCancelled.
	Timeout          time.Duration
	MemoryLimitBytes uint64 // linear memory cap; growing past it is CodeMemoryLimit
	OutputLimitBytes int64  // past it: CodeOutputLimit
	LogLimitBytes    int64  // logs past it are dropped, and LogsTruncated is set
	// Fuel caps the instructions run, on an engine whose Metering is true;
	// 0 is unmetered. An engine that cannot meter fails a run that sets it.
	Fuel uint64
	// Seed seeds the deterministic random source of agents without the
	// random capability.
	Seed int64
	// OnProgress is called with 0..1 when the guest reports progress. It is
	// called on the guest's goroutine and must not block.
	OnProgress func(p float64)
}

// Outcome is what a run produced.
type Outcome struct {
	Output        []byte
	Logs          []protocol.LogLine
	LogsTruncated bool
	KPIs          map[string]float64
	Usage         protocol.ResourceUsage
	Duration      time.Duration
	// Instantiate is how long making the task's sandbox instance took:
	// instantiating the module, or resetting an instance in place to the
	// same state (wazero; measured when the reset was made, after the
	// instance's previous task); 0 when the engine does not measure it or
	// the instance was reused (ReuseInstances).
	Instantiate time.Duration
	Err         *protocol.TaskError // nil on success
}

// CheckSpec applies the rules every engine applies to a ModuleSpec before it
// looks at the module's contents: the module is not empty and at most
// maxBytes (else protocol.ErrLimit), and every capability is one GUEST_ABI.md
// names. It reports which capabilities are granted.
func CheckSpec(spec ModuleSpec, maxBytes int64) (clock, random bool, err error) {
	if len(spec.Wasm) == 0 {
		return false, false, protocol.Errorf(protocol.ErrInvalidModule, "the module is empty")
	}
	if int64(len(spec.Wasm)) > maxBytes {
		return false, false, protocol.Errorf(protocol.ErrLimit, "the module is %d bytes; the server's limit is %d",
			len(spec.Wasm), maxBytes)
	}
	for _, c := range spec.Capabilities {
		switch c {
		case protocol.CapClock:
			clock = true
		case protocol.CapRandom:
			random = true
		default:
			return false, false, protocol.Errorf(protocol.ErrInvalidParams, "capabilities: want %q or %q; got %q",
				protocol.CapClock, protocol.CapRandom, c)
		}
	}
	return clock, random, nil
}
