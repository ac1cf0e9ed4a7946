//go:build linux

package executor

import "testing"

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
