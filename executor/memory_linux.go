//go:build linux

package executor

import (
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// linearMemory is the experimental.MemoryAllocator of one run: it reserves
// the task's memory quota as one mapping and makes pages readable and
// writable as the guest grows, so the memory never moves, a grow past the
// quota is refused (the guest sees memory.grow return -1), and the
// high-water mark is known for memory_peak_mb.
//
// Reservations are pooled: a run's reservation is zeroed with
// madvise(MADV_DONTNEED), which makes a private anonymous mapping read as
// zeros again (the kernel drops its pages), and handed to a later run with
// the same reservation size, which then skips mmap and mprotect for what is
// already committed. No run ever sees another's bytes.
//
// Free is a no-op: wazero may call it from another goroutine (a runtime
// closing) while the guest still runs, so the run releases the reservation
// itself with release, after its guest has stopped.
type linearMemory struct {
	limit     uint64 // the task's quota, in whole pages
	region    *region
	peak      uint64
	refused   bool  // a grow past the quota was refused
	failed    error // mmap, mprotect or madvise failed
	allocated bool
}

// region is a reservation: b is mapped PROT_NONE past committed.
type region struct {
	b         []byte
	committed uint64
}

// regionPool keeps released reservations by size.
var regionPool = struct {
	sync.Mutex
	free  map[int][]*region
	bytes uint64 // address space held by the pool
}{free: map[int][]*region{}}

// Pool bounds: reservations kept per size, and address space in all (it is
// only address space: the pool's regions hold no pages).
const (
	poolPerSize  = 16
	poolMaxBytes = 64 << 30
)

func getRegion(size int) (*region, error) {
	regionPool.Lock()
	if free := regionPool.free[size]; len(free) > 0 {
		r := free[len(free)-1]
		regionPool.free[size] = free[:len(free)-1]
		regionPool.bytes -= uint64(size)
		regionPool.Unlock()
		return r, nil
	}
	regionPool.Unlock()
	b, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	return &region{b: b}, nil
}

// putRegion zeroes r and pools it, or unmaps it when it cannot be zeroed or
// the pool is full.
func putRegion(r *region) {
	if r.committed > 0 {
		if err := unix.Madvise(r.b[:r.committed], unix.MADV_DONTNEED); err != nil {
			_ = unix.Munmap(r.b)
			return
		}
	}
	size := len(r.b)
	regionPool.Lock()
	if len(regionPool.free[size]) < poolPerSize && regionPool.bytes+uint64(size) <= poolMaxBytes {
		regionPool.free[size] = append(regionPool.free[size], r)
		regionPool.bytes += uint64(size)
		regionPool.Unlock()
		return
	}
	regionPool.Unlock()
	_ = unix.Munmap(r.b)
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
		a.region = &region{}
		return a
	}
	r, err := getRegion(int(reserve))
	if err != nil {
		a.failed = fmt.Errorf("reserving %s: %w", FormatBytes(reserve), err)
		a.region = &region{}
		return a
	}
	a.region = r
	return a
}

// Reallocate implements experimental.LinearMemory.
func (a *linearMemory) Reallocate(size uint64) []byte {
	r := a.region
	if size > uint64(len(r.b)) {
		if a.failed == nil {
			a.refused = true
		}
		return nil
	}
	if size > r.committed {
		if err := unix.Mprotect(r.b[r.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			a.failed = fmt.Errorf("committing %s: %w", FormatBytes(size), err)
			return nil
		}
		r.committed = size
	}
	a.peak = max(a.peak, size)
	return r.b[:size:size]
}

// Free implements experimental.LinearMemory; see linearMemory.
func (a *linearMemory) Free() {}

// release hands the reservation back; the run calls it once its guest is
// done.
func (a *linearMemory) release() {
	if a.region != nil && a.region.b != nil {
		putRegion(a.region)
	}
	a.region = nil
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
