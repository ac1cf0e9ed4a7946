package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// These rules are the engines' common ground: both engines call them, so that
// the same run gets the same limit, the same code and the same words on
// either.

// MemoryLimit is a task's linear memory cap: its quota within the server's
// ceiling, in whole pages. A zero quota means the ceiling.
func MemoryLimit(ceiling, quota uint64) uint64 {
	lim := ceiling
	if quota > 0 && quota < lim {
		lim = quota
	}
	return lim / WasmPageSize * WasmPageSize
}

// Interrupted says why a run was stopped before it ended: the caller
// cancelled (or its context expired), the engine is closing, or the task's
// timeout passed. caller is Run's context, run the run's own context (with
// the timeout).
func Interrupted(engine string, caller, run context.Context, closing bool, timeout time.Duration) *protocol.TaskError {
	switch {
	case caller.Err() != nil:
		return protocol.NewTaskError(protocol.CodeCancelled, "the task was cancelled while it ran")
	case closing:
		return protocol.NewTaskError(protocol.CodeInternal, "the %s engine closed while the task ran", engine)
	case errors.Is(run.Err(), context.DeadlineExceeded):
		return protocol.NewTaskError(protocol.CodeTimeout, "the task ran past its timeout of %s", timeout)
	}
	return protocol.NewTaskError(protocol.CodeCancelled, "the run was stopped: %v", run.Err())
}

// FormatBytes is n as "N bytes (X MiB)", as limits are named in messages.
func FormatBytes(n uint64) string {
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}
