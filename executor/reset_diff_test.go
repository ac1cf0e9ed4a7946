package executor

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// The differential test of instance reset: random fabric-v1 modules (data
// segments, globals of every number type, a start function, _initialize)
// whose entry first writes what it observes (a hash of the whole memory,
// its size, every global, the clocks, random bytes) and then changes
// memory and globals, grows, traps or returns early as its input says. Each
// runs the same tasks, with varied inputs, seeds and quotas, on a
// resetting engine and on a fresh one; every outcome must be the same.

// randModule is a module of the differential test.
type randModule struct {
	rng   *rand.Rand
	pages uint32
	types []byte // the globals' value types
	mut   []bool
}

// Function indices: the imports, then run, start and _initialize.
const (
	rmInputLen    = 0
	rmInputRead   = 1
	rmOutputWrite = 2
	rmRandomGet   = 3
	rmClockGet    = 4
	rmRun         = 5
	rmIn          = 1024 // where the input goes
	rmObs         = 2048 // where the observation goes
)

func (g *randModule) constOf(typ byte) []byte {
	r := g.rng
	switch typ {
	case 0x7f:
		return leb128.AppendInt([]byte{0x41}, int64(int32(r.Uint32())))
	case 0x7e:
		return leb128.AppendInt([]byte{0x42}, int64(r.Uint64()))
	case 0x7d:
		return binary.LittleEndian.AppendUint32([]byte{0x43}, math.Float32bits(float32(r.NormFloat64()*1e3)))
	}
	return binary.LittleEndian.AppendUint64([]byte{0x44}, math.Float64bits(r.NormFloat64()*1e6))
}

func i32c(v int64) []byte { return leb128.AppendInt([]byte{0x41}, v) }

// change is one change of memory or a global that start, _initialize and
// run may make.
func (g *randModule) change() []byte {
	r := g.rng
	size := int64(g.pages) * WasmPageSize
	switch r.IntN(5) {
	case 0, 1: // i64.store
		return cat(i32c(r.Int64N(size-8)), leb128.AppendInt([]byte{0x42}, int64(r.Uint64())), []byte{0x37, 0x03, 0x00})
	case 2: // i32.store8 of the last byte
		return cat(i32c(size-1), i32c(int64(r.IntN(256))), []byte{0x3a, 0x00, 0x00})
	case 3: // memory.fill
		n := r.Int64N(4096)
		return cat(i32c(r.Int64N(size-n)), i32c(int64(r.IntN(256))), i32c(n), []byte{0xfc, 0x0b, 0x00})
	}
	var mutable []int
	for i, m := range g.mut {
		if m {
			mutable = append(mutable, i)
		}
	}
	if len(mutable) == 0 {
		return nil
	}
	i := mutable[r.IntN(len(mutable))]
	return cat(g.constOf(g.types[i]), leb128.AppendUint([]byte{0x24}, uint64(i)))
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func vecOf(items ...[]byte) []byte {
	out := leb128.AppendUint(nil, uint64(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func name(s string) []byte { return append(leb128.AppendUint(nil, uint64(len(s))), s...) }

// genModule builds a random module from seed.
func genModule(seed uint64) []byte {
	g := &randModule{rng: rand.New(rand.NewPCG(seed, 0x5eed)), pages: 1 + uint32(seed%2)}
	r := g.rng
	for range 1 + r.IntN(6) {
		g.types = append(g.types, []byte{0x7f, 0x7e, 0x7d, 0x7c}[r.IntN(4)])
		g.mut = append(g.mut, r.IntN(5) > 0)
	}
	hasStart, hasInit := r.IntN(2) == 0, r.IntN(2) == 0

	sec := func(out []byte, id byte, b []byte) []byte {
		out = append(out, id)
		out = leb128.AppendUint(out, uint64(len(b)))
		return append(out, b...)
	}
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = sec(m, 1, vecOf( // types
		[]byte{0x60, 0x00, 0x01, 0x7f},                   // 0 () -> i32
		[]byte{0x60, 0x01, 0x7f, 0x00},                   // 1 (i32) -> ()
		[]byte{0x60, 0x02, 0x7f, 0x7f, 0x00},             // 2 (i32 i32) -> ()
		[]byte{0x60, 0x00, 0x00},                         // 3 () -> ()
		[]byte{0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f},       // 4 random_get
		[]byte{0x60, 0x03, 0x7f, 0x7e, 0x7f, 0x01, 0x7f}, // 5 clock_time_get
	))
	m = sec(m, 2, vecOf(
		cat(name("fabric"), name("input_len"), []byte{0x00, 0x00}),
		cat(name("fabric"), name("input_read"), []byte{0x00, 0x01}),
		cat(name("fabric"), name("output_write"), []byte{0x00, 0x02}),
		cat(name(WASIModule), name("random_get"), []byte{0x00, 0x04}),
		cat(name(WASIModule), name("clock_time_get"), []byte{0x00, 0x05}),
	))
	funcs := [][]byte{{0x00}}
	if hasStart {
		funcs = append(funcs, []byte{0x03})
	}
	if hasInit {
		funcs = append(funcs, []byte{0x03})
	}
	m = sec(m, 3, vecOf(funcs...))
	mem := leb128.AppendUint([]byte{0x00}, uint64(g.pages))
	if r.IntN(2) == 0 {
		mem = leb128.AppendUint(leb128.AppendUint([]byte{0x01}, uint64(g.pages)), uint64(g.pages+1))
	}
	m = sec(m, 5, vecOf(mem))
	var globals [][]byte
	for i, t := range g.types {
		mut := byte(0)
		if g.mut[i] {
			mut = 1
		}
		globals = append(globals, cat([]byte{t, mut}, g.constOf(t), []byte{0x0b}))
	}
	m = sec(m, 6, vecOf(globals...))
	exports := [][]byte{cat(name("memory"), []byte{0x02, 0x00}), cat(name("run"), []byte{0x00, rmRun})}
	next := byte(rmRun + 1)
	start, init := next, next
	if hasStart {
		init++
	}
	if hasInit {
		exports = append(exports, cat(name(InitializeExport), []byte{0x00, init}))
	}
	for i := range g.types {
		if r.IntN(3) == 0 {
			exports = append(exports, cat(name(fmt.Sprintf("g%d", i)), []byte{0x03, byte(i)}))
		}
	}
	m = sec(m, 7, vecOf(exports...))
	if hasStart {
		m = sec(m, 8, leb128.AppendUint(nil, uint64(start)))
	}

	// run: hash the memory, read the input, write the observation, then
	// change things, some of them only when a bit of the input's first
	// byte is set.
	var fnv uint64 = 0xcbf29ce484222325
	const prime = 0x100000001b3
	run := cat(
		leb128.AppendInt([]byte{0x42}, int64(fnv)), []byte{0x21, 0x00},
		[]byte{0x3f, 0x00}, i32c(WasmPageSize), []byte{0x6c, 0x21, 0x02},
		[]byte{0x02, 0x40, 0x03, 0x40,
			0x20, 0x01, 0x20, 0x02, 0x4f, 0x0d, 0x01,
			0x20, 0x00, 0x20, 0x01, 0x29, 0x03, 0x00, 0x85}, leb128.AppendInt([]byte{0x42}, prime), []byte{0x7e, 0x21, 0x00,
			0x20, 0x01}, i32c(8), []byte{0x6a, 0x21, 0x01, 0x0c, 0x00, 0x0b, 0x0b},
		[]byte{0x10, rmInputLen}, i32c(16), []byte{0x4b, 0x04, 0x40, 0x00, 0x0b},
		[]byte{0x10, rmInputLen, 0x04, 0x40}, i32c(rmIn), []byte{0x10, rmInputRead}, i32c(rmIn), []byte{0x2d, 0x00, 0x00, 0x21, 0x03, 0x0b},
		i32c(rmObs), []byte{0x20, 0x00, 0x37, 0x03, 0x00},
		i32c(rmObs+8), []byte{0x3f, 0x00, 0xad, 0x37, 0x03, 0x00},
	)
	at := int64(rmObs + 16)
	for i, t := range g.types {
		conv := map[byte][]byte{0x7f: {0xad}, 0x7e: nil, 0x7d: {0xbc, 0xad}, 0x7c: {0xbd}}[t]
		run = cat(run, i32c(at), leb128.AppendUint([]byte{0x23}, uint64(i)), conv, []byte{0x37, 0x03, 0x00})
		at += 8
	}
	run = cat(run,
		i32c(0), []byte{0x42, 0x01}, i32c(at), []byte{0x10, rmClockGet, 0x1a},
		i32c(1), []byte{0x42, 0x01}, i32c(at+8), []byte{0x10, rmClockGet, 0x1a},
		i32c(at+16), i32c(8), []byte{0x10, rmRandomGet, 0x1a},
		i32c(rmObs), i32c(at+24-rmObs), []byte{0x10, rmOutputWrite},
	)
	for range 3 + r.IntN(10) {
		var op []byte
		guard := r.IntN(4) > 0
		switch r.IntN(8) {
		case 0:
			op, guard = cat(i32c(1), []byte{0x40, 0x00, 0x1a}), true // memory.grow 1 (may be refused)
		case 1:
			op, guard = []byte{0x00}, true // unreachable
		case 2:
			op, guard = cat(i32c(int64(r.IntN(2))), []byte{0x0f}), true // return 0 or 1
		case 3:
			op = cat(i32c(r.Int64N(WasmPageSize-8)), i32c(8), []byte{0x10, rmRandomGet, 0x1a})
		default:
			op = g.change()
		}
		if guard {
			// Guarded by a bit of the input's first byte.
			op = cat([]byte{0x20, 0x03}, i32c(1<<r.IntN(8)), []byte{0x71, 0x04, 0x40}, op, []byte{0x0b})
		}
		run = append(run, op...)
	}
	run = append(run, i32c(0)...)
	// Locals: h i64; p, end, b i32.
	bodies := [][]byte{withSize(cat([]byte{0x02, 0x01, 0x7e, 0x03, 0x7f}, run, []byte{0x0b}))}
	for _, has := range []bool{hasStart, hasInit} {
		if !has {
			continue
		}
		var code []byte
		for range 1 + r.IntN(4) {
			code = append(code, g.change()...)
		}
		if r.IntN(2) == 0 {
			code = cat(code, i32c(r.Int64N(WasmPageSize-8)), i32c(8), []byte{0x10, rmRandomGet, 0x1a})
		}
		bodies = append(bodies, withSize(cat([]byte{0x00}, code, []byte{0x0b})))
	}
	m = sec(m, 10, vecOf(bodies...))
	var data [][]byte
	for range r.IntN(4) {
		n := 1 + r.Int64N(200)
		b := make([]byte, n)
		for i := range b {
			if r.IntN(3) > 0 {
				b[i] = byte(r.Uint32())
			}
		}
		off := r.Int64N(int64(g.pages)*WasmPageSize - n)
		data = append(data, cat([]byte{0x00}, i32c(off), []byte{0x0b}, leb128.AppendUint(nil, uint64(n)), b))
	}
	if len(data) > 0 {
		m = sec(m, 11, vecOf(data...))
	}
	return m
}

func withSize(b []byte) []byte { return append(leb128.AppendUint(nil, uint64(len(b))), b...) }

// checkResetDifferential runs a random module's tasks on both engines.
// It returns how many tasks ran in a reset instance.
func checkResetDifferential(t *testing.T, reset, fresh *Wazero, seed uint64) int {
	t.Helper()
	ctx := context.Background()
	wasm := genModule(seed)
	spec := ModuleSpec{Name: fmt.Sprintf("rand%d", seed), Wasm: wasm}
	rm, err := reset.Compile(ctx, spec)
	if err != nil {
		t.Fatalf("seed %d: Compile: %v", seed, err)
	}
	defer rm.Close(ctx)
	fm, err := fresh.Compile(ctx, spec)
	if err != nil {
		t.Fatalf("seed %d: Compile (fresh): %v", seed, err)
	}
	defer fm.Close(ctx)
	if !rm.(*wazeroModule).reset {
		t.Fatalf("seed %d: not reset: %s", seed, rm.(*wazeroModule).notReset)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	resets := 0
	for task := range 8 {
		in := reuseInv("")
		if n := r.IntN(4); n > 0 {
			in.Input = make([]byte, n)
			for i := range in.Input {
				in.Input[i] = byte(r.Uint32())
			}
		}
		in.Seed = int64(r.IntN(3))
		switch r.IntN(6) {
		case 0:
			in.MemoryLimitBytes = uint64(1+seed%2) * WasmPageSize // grows refused
		case 1:
			in.OutputLimitBytes = 8
		}
		made := rm.(*wazeroModule).instances.Load()
		got, want := rm.Run(ctx, in), fm.Run(ctx, in)
		if rm.(*wazeroModule).instances.Load() == made {
			resets++
		}
		sameOutcome(t, fmt.Sprintf("seed %d, task %d (input %x)", seed, task, in.Input), got, want)
		if t.Failed() {
			t.FailNow()
		}
	}
	return resets
}

// TestResetDifferential: 150 random modules, 8 tasks each.
func TestResetDifferential(t *testing.T) {
	reset := reuseEngine(t, WazeroOptions{MaxMemoryBytes: 64 << 20})
	fresh := reuseEngine(t, WazeroOptions{MaxMemoryBytes: 64 << 20, FreshInstances: true})
	n := 150
	if testing.Short() {
		n = 30
	}
	resets := 0
	for seed := range uint64(n) {
		resets += checkResetDifferential(t, reset, fresh, seed)
	}
	// Not vacuous: most tasks ran in a reset instance.
	if resets < n*8/3 {
		t.Fatalf("%d of %d tasks ran in a reset instance; want at least a third", resets, n*8)
	}
	t.Logf("%d of %d tasks ran in a reset instance", resets, n*8)
}

// FuzzResetDifferential is TestResetDifferential's check for any seed.
func FuzzResetDifferential(f *testing.F) {
	f.Add(uint64(0))
	f.Add(uint64(1 << 40))
	reset := reuseEngine(f, WazeroOptions{MaxMemoryBytes: 64 << 20})
	fresh := reuseEngine(f, WazeroOptions{MaxMemoryBytes: 64 << 20, FreshInstances: true})
	f.Fuzz(func(t *testing.T, seed uint64) {
		checkResetDifferential(t, reset, fresh, seed)
	})
}
