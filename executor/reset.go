package executor

import (
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/chimera-fabric/fabric/executor/internal/instrument"
)

// Instance reset (see Wazero): an instance whose task returned normally is
// put back into the state a fresh instantiation leaves, and kept for a
// later task. An instance's state is its linear memory (bytes and size),
// its globals, its tables, its element and data segments (dropped or not),
// and its WASI context (file table, clocks, random source, arguments,
// environment); the start function and _initialize are calls the host
// makes after instantiating, made again after a reset. What a reset
// restores: the memory's bytes (to the image instantiation wrote; its size
// must not have changed), the mutable globals (exported under reserved
// names by the instrumenter, so the host can set them) and the fake clock
// (kept in the shell). What it cannot restore must be unchangeable, which
// Compile checks: resetBlocker (WASI), instrument.Module.Fixed (tables,
// segments, imported state) and globalsBlocker (v128 globals, whose upper
// half wazero's API cannot set).

// resetWASI are the WASI functions that leave an instance's WASI context as
// they found it. The context holds no preopened directory and three stdio
// files whose reads and writes go to the shell, which forwards them to the
// task's own stdin and outputs; the stdio files have no offset, flags or
// state of their own (seeking them fails), so nothing below changes the
// context. proc_exit closes the instance, which is then not reset.
var resetWASI = map[string]bool{
	"args_get": true, "args_sizes_get": true, "environ_get": true, "environ_sizes_get": true,
	"clock_res_get": true, "clock_time_get": true, // the clocks are the shell's (fake ones start over)
	"fd_read": true, "fd_write": true, "fd_seek": true, "fd_tell": true,
	"fd_fdstat_get": true, "fd_filestat_get": true, "fd_prestat_get": true, "fd_prestat_dir_name": true,
	"poll_oneoff": true, "proc_exit": true, "random_get": true, "sched_yield": true,
}

// resetBlocker says why a module's instances cannot be reset because of
// what it imports, or "" when its imports allow it.
func resetBlocker(info *ModuleInfo) string {
	for _, im := range info.Imports {
		if im.Module == WASIModule && !resetWASI[im.Name] {
			return fmt.Sprintf("it imports %s.%s, which may change the instance's WASI context", im.Module, im.Name)
		}
	}
	return ""
}

// globalsBlocker says why an instrumented module's instances cannot be
// reset because of its state other than memory and imports, or "".
func globalsBlocker(inst instrument.Module) string {
	if inst.Fixed != "" {
		return inst.Fixed
	}
	for _, g := range inst.Globals {
		if g.Type == 0x7b {
			return fmt.Sprintf("global %d is a mutable v128", g.Index)
		}
	}
	return ""
}

// memImage is a linear memory as instantiation leaves it: size bytes, zero
// but for runs.
type memImage struct {
	size uint64
	runs []imageRun
}

// imageRun is a stretch of an image's bytes that are not all zero.
type imageRun struct {
	off  uint64
	data []byte
}

// imageGap is the fewest zero bytes that split an image's runs: a shorter
// gap is copied with its run, which is cheaper than restarting.
const imageGap = 64

// newMemImage copies mem as an image.
func newMemImage(mem []byte) *memImage {
	img := &memImage{size: uint64(len(mem))}
	n := len(mem)
	for i := 0; i < n; {
		if mem[i] == 0 {
			i++
			continue
		}
		start, end := i, i+1
		for j := end; j < n && j < end+imageGap; j++ { // end moves on with each non-zero byte
			if mem[j] != 0 {
				end = j + 1
			}
		}
		img.runs = append(img.runs, imageRun{off: uint64(start), data: append([]byte(nil), mem[start:end]...)})
		i = end
	}
	return img
}

// restore rewrites mem, of the image's size, to the image.
func (img *memImage) restore(mem []byte) {
	prev := uint64(0)
	for _, r := range img.runs {
		clear(mem[prev:r.off])
		prev = r.off + uint64(copy(mem[r.off:], r.data))
	}
	clear(mem[prev:])
}

// snapshot records, right after s's instance was made, what resetting it
// restores: the mutable globals' values, and the memory image (once per
// module). It leaves s.resettable false when it cannot.
func (s *shell) snapshot() {
	m := s.m
	s.resettable = false
	s.globals, s.globalsInit = s.globals[:0], s.globalsInit[:0]
	for _, name := range m.globals {
		g, ok := s.guest.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			return
		}
		s.globals = append(s.globals, g)
		s.globalsInit = append(s.globalsInit, g.Get())
	}
	if m.image.Load() == nil {
		var mem []byte
		if s.mem.region != nil {
			mem = s.mem.region.b[:s.mem.size]
		}
		m.image.CompareAndSwap(nil, newMemImage(mem))
	}
	s.resettable = true
}

// resetInstance puts s's instance, whose task returned normally, back into
// the state instantiation left it in, and reports whether it did; when it
// did not, the instance must be closed.
func (s *shell) resetInstance() bool {
	img := s.m.image.Load()
	if !s.resettable || img == nil || s.guest == nil || s.guest.IsClosed() || s.mem.failed != nil || s.mem.size != img.size {
		return false
	}
	began := time.Now()
	defer func() { s.resetTook = max(time.Since(began), 1) }() // measured: never 0
	if img.size > 0 {
		img.restore(s.mem.region.b[:img.size])
	}
	for i, g := range s.globals {
		g.Set(s.globalsInit[i])
	}
	s.resetClock()
	s.needsInit = true
	return true
}

// The fake clocks of a guest without the clock capability are the shell's,
// the same as wazero's own (platform.NewFakeWalltime, NewFakeNanotime):
// the wall clock reads FakeWallEpoch first, the monotonic clock 0, and each
// goes on by FakeClockStep at every reading. They start over with each new
// or reset instance; a reused instance's go on.

// resetClock starts the fake clocks over.
func (s *shell) resetClock() { s.wallReads, s.monoReads = 0, 0 }

func (s *shell) fakeWalltime() (sec int64, nsec int32) {
	t := FakeWallEpoch.UnixNano() + s.wallReads*int64(FakeClockStep)
	s.wallReads++
	return t / 1e9, int32(t % 1e9)
}

func (s *shell) fakeNanotime() int64 {
	t := s.monoReads * int64(FakeClockStep)
	s.monoReads++
	return t
}
