// Package wasmer is Fabric's second executor.Engine, built on wasmer
// (github.com/wasmerio/wasmer-go, cgo) and compiled only with the build tag
// "wasmer"; without it this package is empty.
//
// Guests never run in the server's process. The Engine keeps a pool of worker
// processes (the server's own binary, re-executed with FABRIC_WASMER_WORKER
// set, whose main calls WorkerMain first thing) and talks to them over pipes.
// A worker that runs past its task's timeout, or whose task is cancelled, is
// killed and replaced; a worker that crashes in native code takes only its
// own task down. Linear memory is held to the task's quota by instrumenting
// the module (every memory.grow goes through a guard that knows the quota),
// with an RLIMIT_DATA on the worker as a backstop.
//
// The engine runs the same conformance suite as the wazero engine
// (executor/enginetest) and gives the same outcomes: see RATIONALE.md and the
// Engine type for how each limit is enforced.
package wasmer
