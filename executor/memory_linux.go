//go:build linux

package executor

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// linearMemory is the experimental.MemoryAllocator of one run: it reserves
// the task's memory quota as one mapping and makes pages readable and
// writable as the guest grows, so the memory never moves, a grow past the
// quota is refused (the guest sees memory.grow return -1), and the
// high-water mark is known for memory_peak_mb.
//
// Reservations are pooled: a run's reservation is zeroed and handed to a
// later run with the same reservation size, which then skips mmap and
// mprotect for what is already committed. No run ever sees another's bytes.
// Zeroing keeps the pages the guest used resident and writes zeros over
// them (clear), up to poolWarmBytes for the whole pool: dropping them with
// madvise(MADV_DONTNEED) instead costs a system call, and a page fault at
// the next run's first touch of each page, which for a Go agent's few
// megabytes is most of a task. Past that budget, pages are dropped.
//
// Free is a no-op: wazero may call it from another goroutine (a runtime
// closing) while the guest still runs, so the run releases the reservation
// itself with release, after its guest has stopped.
type linearMemory struct {
	limit uint64 // the task's quota, in whole pages
	// reserve is the address space to reserve, in whole pages: the task's
	// quota for a fresh instance; the server's ceiling for one that is
	// reused, whose later tasks may have larger quotas. 0 means limit.
	reserve   uint64
	region    *region
	size      uint64 // the memory's size now
	peak      uint64 // since the task began
	refused   bool   // a grow past the quota was refused (this task)
	failed    error  // mmap, mprotect or madvise failed
	allocated bool
}

// begin starts a task on the memory: its quota is limit, and its peak
// starts at the memory's size now.
func (a *linearMemory) begin(limit uint64) {
	a.limit, a.peak, a.refused = limit, a.size, false
}

// region is a reservation: b is mapped PROT_NONE past committed. While it
// is pooled, warm of its bytes are resident (and zero).
type region struct {
	b         []byte
	committed uint64
	warm      uint64
}

// regionPool keeps released reservations by size.
var regionPool = struct {
	sync.Mutex
	free  map[int][]*region
	bytes uint64 // address space held by the pool
	warm  uint64 // resident bytes held by the pool
}{free: map[int][]*region{}}

// Pool bounds: reservations kept per size, address space in all, and
// resident (zeroed, kept) bytes in all. A region's first clearSmall
// committed bytes are zeroed without asking the kernel which are resident.
const (
	poolPerSize  = 16
	poolMaxBytes = 64 << 30
	clearSmall   = 256 << 10
)

// poolWarmBytes bounds the resident bytes of pooled regions (a variable for
// tests).
var poolWarmBytes uint64 = 256 << 20

var pageSize = uint64(unix.Getpagesize())

func getRegion(size int) (*region, error) {
	regionPool.Lock()
	if free := regionPool.free[size]; len(free) > 0 {
		r := free[len(free)-1]
		regionPool.free[size] = free[:len(free)-1]
		regionPool.bytes -= uint64(size)
		regionPool.warm -= r.warm
		regionPool.Unlock()
		r.warm = 0
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
	size := len(r.b)
	regionPool.Lock()
	full := len(regionPool.free[size]) >= poolPerSize || regionPool.bytes+uint64(size) > poolMaxBytes
	room := poolWarmBytes - min(poolWarmBytes, regionPool.warm)
	regionPool.Unlock()
	if full {
		_ = unix.Munmap(r.b)
		return
	}
	warm, err := zeroRegion(r.b[:r.committed], room)
	if err != nil {
		_ = unix.Munmap(r.b)
		return
	}
	r.warm = warm
	regionPool.Lock()
	if len(regionPool.free[size]) < poolPerSize && regionPool.bytes+uint64(size) <= poolMaxBytes {
		regionPool.free[size] = append(regionPool.free[size], r)
		regionPool.bytes += uint64(size)
		regionPool.warm += warm
		regionPool.Unlock()
		return
	}
	regionPool.Unlock()
	_ = unix.Munmap(r.b)
}

// zeroRegion makes b (committed, page-aligned) read as zeros. It clears its
// resident pages while they fit in room bytes and drops the others (and
// any past room) with MADV_DONTNEED; it returns the bytes it kept
// resident. A small b is cleared whole, without a system call.
func zeroRegion(b []byte, room uint64) (warm uint64, err error) {
	n := uint64(len(b))
	if n == 0 {
		return 0, nil
	}
	if n <= clearSmall && n <= room {
		clear(b)
		return n, nil
	}
	pages := (n + pageSize - 1) / pageSize
	vec := make([]byte, pages)
	if _, _, errno := unix.RawSyscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, unix.Madvise(b, unix.MADV_DONTNEED)
	}
	for p := uint64(0); p < pages; {
		if vec[p]&1 == 0 {
			p++
			continue
		}
		end := p
		for end < pages && vec[end]&1 != 0 {
			end++
		}
		lo, hi := p*pageSize, min(end*pageSize, n)
		if warm+hi-lo > room {
			// Over the budget: drop this run and everything after it.
			return warm, unix.Madvise(b[lo:], unix.MADV_DONTNEED)
		}
		clear(b[lo:hi])
		warm += hi - lo
		p = end
	}
	return warm, nil
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
	reserve := a.reserve
	if reserve == 0 {
		reserve = a.limit
	}
	reserve = min(max, reserve)
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
	if size > uint64(len(r.b)) || size > a.limit {
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
	a.size = size
	a.peak = max(a.peak, size)
	return r.b[:size:size]
}

// Free implements experimental.LinearMemory; see linearMemory.
func (a *linearMemory) Free() {}

// release hands the reservation back, once the instance is closed, and
// readies a for another instance.
func (a *linearMemory) release() {
	if a.region != nil && a.region.b != nil {
		putRegion(a.region)
	}
	*a = linearMemory{}
}

// failedMemory refuses every allocation.
type failedMemory struct{}

func (failedMemory) Reallocate(uint64) []byte { return nil }
func (failedMemory) Free()                    {}

// threadCPUTime is the CPU time of the calling OS thread. The vDSO does
// not serve CPU-time clocks, so it is a system call; a raw one, as it
// never blocks, which spares the runtime's bookkeeping around a call that
// may (a tenth of its cost here).
func threadCPUTime() time.Duration {
	var ts unix.Timespec
	_, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_THREAD_CPUTIME_ID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
