//go:build linux

package executor

import (
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// linearMemory is the experimental.MemoryAllocator of one run: it reserves
// the task's memory quota as one PROT_NONE mapping and makes pages readable
// and writable as the guest grows, so the memory never moves, a grow past the
// quota is refused (the guest sees memory.grow return -1), and nothing of a
// run's memory outlives the run or is seen by another (each run maps fresh,
// zeroed pages). It records the high-water mark for memory_peak_mb.
//
// Free is a no-op: wazero may call it from another goroutine (a runtime
// closing) while the guest still runs, so the run unmaps the reservation
// itself with release, after its guest has stopped.
type linearMemory struct {
	limit     uint64 // the task's quota, in whole pages
	region    []byte // the reservation
	committed uint64
	peak      uint64
	refused   bool  // a grow past the quota was refused
	failed    error // mmap or mprotect failed
	allocated bool
}

var _ experimental.MemoryAllocator = (*linearMemory)(nil)

// Allocate implements experimental.MemoryAllocator. max is the memory's own
// maximum (its declared one, or 4 GiB).
func (a *linearMemory) Allocate(_, max uint64) experimental.LinearMemory {
	if a.allocated {
		a.failed = fmt.Errorf("a second linear memory was allocated; a guest has one")
		return failedMemory{}
	}
	a.allocated = true
	reserve := min(max, a.limit)
	if reserve == 0 {
		return a
	}
	b, err := unix.Mmap(-1, 0, int(reserve), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		a.failed = fmt.Errorf("reserving %s: %w", formatBytes(reserve), err)
		return a
	}
	a.region = b
	return a
}

// Reallocate implements experimental.LinearMemory.
func (a *linearMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(a.region)) {
		if a.failed == nil {
			a.refused = true
		}
		return nil
	}
	if size > a.committed {
		if err := unix.Mprotect(a.region[a.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			a.failed = fmt.Errorf("committing %s: %w", formatBytes(size), err)
			return nil
		}
		a.committed = size
	}
	a.peak = max(a.peak, size)
	return a.region[:size:size]
}

// Free implements experimental.LinearMemory; see linearMemory.
func (a *linearMemory) Free() {}

// release unmaps the reservation; the run calls it once its guest is done.
func (a *linearMemory) release() {
	if a.region != nil {
		_ = unix.Munmap(a.region)
		a.region = nil
	}
}

// failedMemory refuses every allocation.
type failedMemory struct{}

func (failedMemory) Reallocate(uint64) []byte { return nil }
func (failedMemory) Free()                    {}

// threadCPUTime is the CPU time of the calling OS thread.
func threadCPUTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
