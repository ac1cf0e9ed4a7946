//go:build !linux

package executor

import (
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory is the portable stand-in of the Linux allocator (see
// memory_linux.go): it enforces the quota and records the high-water mark,
// but grows by copying into a larger Go slice.
type linearMemory struct {
	limit   uint64
	reserve uint64 // unused: the memory moves as it grows
	buf     []byte
	size    uint64
	peak    uint64
	refused bool
	failed  error
}

var _ experimental.MemoryAllocator = (*linearMemory)(nil)

func (a *linearMemory) begin(limit uint64) {
	a.limit, a.peak, a.refused = limit, a.size, false
}

func (a *linearMemory) Allocate(_, _ uint64) experimental.LinearMemory { return a }

func (a *linearMemory) Reallocate(size uint64) []byte {
	if size > a.limit {
		a.refused = true
		return nil
	}
	if size > uint64(len(a.buf)) {
		b := make([]byte, size)
		copy(b, a.buf)
		a.buf = b
	}
	a.size = size
	a.peak = max(a.peak, size)
	return a.buf[:size:size]
}

func (a *linearMemory) Free()    {}
func (a *linearMemory) release() { *a = linearMemory{} }

// threadCPUTime is not measured outside Linux: cpu_seconds is 0 there.
func threadCPUTime() time.Duration { return 0 }
