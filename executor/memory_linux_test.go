//go:build linux

package executor

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRegionReuseIsZeroed: a pooled reservation handed to the next run
// reads as zeros, its committed pages and those beyond.
func TestRegionReuseIsZeroed(t *testing.T) {
	const limit = 8 * WasmPageSize
	var seen *region
	for run := 0; run < 3; run++ {
		a := &linearMemory{limit: limit}
		a.Allocate(0, 1<<32)
		if run > 0 && a.region != seen {
			t.Logf("run %d got a fresh reservation (the pool is shared with other tests)", run)
		}
		seen = a.region
		b := a.Reallocate(2 * WasmPageSize)
		for i, c := range b {
			if c != 0 {
				t.Fatalf("run %d: byte %d is %d; want a zeroed memory", run, i, c)
			}
		}
		b = a.Reallocate(limit)
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("run %d: byte %d is %d after growing; want zeros", run, i, b[i])
			}
			b[i] = 0xaa
		}
		if a.Reallocate(limit+WasmPageSize) != nil || !a.refused {
			t.Fatal("a grow past the quota was not refused")
		}
		if a.peak != limit {
			t.Fatalf("peak %d; want %d", a.peak, limit)
		}
		a.release()
	}
}

// TestZeroRegion: zeroRegion leaves a committed range reading as zeros
// whichever way it takes (cleared whole, cleared by resident pages, or
// dropped past the resident budget), and keeps resident only what fits.
func TestZeroRegion(t *testing.T) {
	for _, c := range []struct {
		name      string
		committed uint64
		room      uint64
		touch     []uint64 // offsets written before zeroing
		wantWarm  func(uint64) bool
	}{
		{"small, cleared whole", 64 << 10, 1 << 30, []uint64{0, 5000}, func(w uint64) bool { return w == 64<<10 }},
		{"large, sparse", 4 << 20, 1 << 30, []uint64{0, 1 << 20, 3<<20 + 7}, func(w uint64) bool { return w >= 3*pageSize && w < 1<<20 }},
		{"large, over the budget", 4 << 20, 2 * pageSize, []uint64{0, pageSize, 2 * pageSize, 3 << 20}, func(w uint64) bool { return w <= 2*pageSize }},
		{"small, no budget", 64 << 10, 0, []uint64{100}, func(w uint64) bool { return w == 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &linearMemory{limit: 8 << 20}
			a.Allocate(0, 1<<32)
			defer func() { _ = unix.Munmap(a.region.b) }()
			b := a.Reallocate(c.committed)
			if b == nil {
				t.Fatal("Reallocate failed")
			}
			for _, off := range c.touch {
				b[off] = 0xaa
			}
			warm, err := zeroRegion(b, c.room)
			if err != nil {
				t.Fatal(err)
			}
			if !c.wantWarm(warm) {
				t.Errorf("kept %d bytes resident", warm)
			}
			for i, v := range b {
				if v != 0 {
					t.Fatalf("byte %d is %#x after zeroing; want 0", i, v)
				}
			}
		})
	}
}
