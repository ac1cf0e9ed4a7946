package instrument_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/executor/internal/instrument"
	"github.com/chimera-fabric/fabric/executor/internal/leb128"
	"github.com/chimera-fabric/fabric/internal/agentbuild"
)

// imageRuntime is an interpreter (compiling megabytes of Go agent is slow
// and beside the point: data segments are applied the same way by either)
// with WASI and a stub fabric module.
func imageRuntime(t testing.TB) wazero.Runtime {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { _ = r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	b := r.NewHostModuleBuilder("fabric")
	for _, f := range executor.FabricFunctions {
		params := make([]api.ValueType, len(f.Type.Params))
		for i, p := range f.Type.Params {
			params[i] = api.ValueType(p)
		}
		results := make([]api.ValueType, len(f.Type.Results))
		for i, p := range f.Type.Results {
			results[i] = api.ValueType(p)
		}
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), params, results).Export(f.Name)
	}
	yield := api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) { stack[0] = instrument.Budget })
	b.NewFunctionBuilder().WithGoModuleFunction(yield, nil, []api.ValueType{api.ValueTypeI32}).Export(instrument.YieldName)
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// image instantiates wasm (without calling _start; a module with a start
// section runs it, so give it one instrumented) and returns
// its whole linear memory, or the error of compiling or instantiating it.
func image(r wazero.Runtime, wasm []byte) ([]byte, error) {
	ctx := context.Background()
	c, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	defer c.Close(ctx)
	mod, err := r.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	defer mod.Close(ctx)
	mem := mod.ExportedMemory("memory")
	if mem == nil {
		return nil, nil
	}
	b, _ := mem.Read(0, mem.Size())
	return bytes.Clone(b), nil
}

// checkSameImage fails t unless wasm and merged instantiate to the same
// memory, or both fail to.
func checkSameImage(t *testing.T, r wazero.Runtime, name string, wasm, merged []byte) {
	t.Helper()
	want, werr := image(r, wasm)
	got, gerr := image(r, merged)
	switch {
	case (werr == nil) != (gerr == nil):
		t.Errorf("%s: the original instantiates with %v, the merged module with %v", name, werr, gerr)
	case !bytes.Equal(want, got):
		t.Errorf("%s: the merged module's memory image differs from the original's", name)
	}
}

// dataModule builds a module with one memory of pages pages, exported as
// "memory", and the given data section body (count included).
func dataModule(pages uint32, dataBody []byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, body []byte) {
		b = append(b, id)
		b = leb128.AppendUint(b, uint64(len(body)))
		b = append(b, body...)
	}
	section(5, leb128.AppendUint([]byte{0x01, 0x00}, uint64(pages)))
	section(7, []byte{0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00})
	section(11, dataBody)
	return b
}

// seg is an active segment of memory 0 at an i32.const offset.
func seg(off int32, bytes []byte) []byte {
	s := []byte{0x00, 0x41}
	s = leb128.AppendInt(s, int64(off))
	s = append(s, 0x0b)
	s = leb128.AppendUint(s, uint64(len(bytes)))
	return append(s, bytes...)
}

func vec(items ...[]byte) []byte {
	out := leb128.AppendUint(nil, uint64(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func filled(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

// TestMergeDataCases: which modules are merged, into how many segments,
// and that each has the memory image of its original.
func TestMergeDataCases(t *testing.T) {
	passive := append([]byte{0x01}, leb128.AppendUint(nil, 3)...)
	passive = append(passive, 'a', 'b', 'c')
	globalOffset := []byte{0x00, 0x23, 0x00, 0x0b, 0x01, 'x'}
	for _, c := range []struct {
		name        string
		wasm        []byte
		before, now int // 0, 0: left as it is
	}{
		{"adjacent", dataModule(1, vec(seg(0, filled(4, 1)), seg(4, filled(4, 2)))), 2, 1},
		{"near, out of order", dataModule(1, vec(seg(100, filled(3, 1)), seg(10, filled(5, 2)), seg(40, filled(1, 3)))), 3, 1},
		{"far apart", dataModule(2, vec(seg(0, filled(4, 1)), seg(instrument.MaxDataGap+4, filled(4, 2)))), 2, 2},
		{"gap just under the limit", dataModule(2, vec(seg(0, filled(4, 1)), seg(instrument.MaxDataGap+3, filled(4, 2)))), 2, 1},
		{"empty segments dropped", dataModule(1, vec(seg(5, nil), seg(0, filled(2, 9)), seg(65536, nil))), 3, 1},
		{"at the end of memory", dataModule(1, vec(seg(65530, filled(6, 7)), seg(65520, filled(2, 8)))), 2, 1},
		{"one segment", dataModule(1, vec(seg(8, filled(8, 1)))), 1, 1},
		{"overlapping", dataModule(1, vec(seg(0, filled(8, 1)), seg(4, filled(8, 2)))), 0, 0},
		{"out of bounds", dataModule(1, vec(seg(0, filled(8, 1)), seg(65535, filled(2, 2)))), 0, 0},
		{"negative offset", dataModule(1, vec(seg(0, filled(8, 1)), seg(-1, filled(1, 2)))), 0, 0},
		{"passive", dataModule(1, vec(seg(0, filled(8, 1)), passive)), 0, 0},
		{"global offset", dataModule(1, vec(seg(0, filled(8, 1)), globalOffset)), 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			merged, before, now, err := instrument.MergeData(c.wasm)
			if err != nil {
				t.Fatal(err)
			}
			if before != c.before || now != c.now {
				t.Errorf("segments %d -> %d; want %d -> %d", before, now, c.before, c.now)
			}
			if c.before == c.now && !bytes.Equal(merged, c.wasm) {
				t.Errorf("a module that was not merged was changed")
			}
			checkSameImage(t, imageRuntime(t), c.name, c.wasm, merged)
		})
	}
	if _, _, _, err := instrument.MergeData([]byte("not wasm")); err == nil {
		t.Errorf("MergeData of bytes that are not WebAssembly: no error")
	}
}

// TestMergeDataBudget: the zero bytes written out stay within the data
// section's size, whatever the segments' spacing.
func TestMergeDataBudget(t *testing.T) {
	var segs [][]byte
	for i := range 2000 {
		segs = append(segs, seg(int32(i*1000), []byte{byte(i)}))
	}
	wasm := dataModule(32, vec(segs...))
	merged, before, now, err := instrument.MergeData(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if before != 2000 || now >= before || now <= 1 {
		t.Errorf("segments %d -> %d; want some, not all, joined within the budget", before, now)
	}
	if grown := len(merged) - len(wasm); grown > max(len(wasm), instrument.MinDataBudget) {
		t.Errorf("the module grew from %d to %d bytes; want at most its size or MinDataBudget more", len(wasm), len(merged))
	}
	checkSameImage(t, imageRuntime(t), "budget", wasm, merged)
}

// TestMergeDataRandom merges modules of random segments (some overlapping,
// some out of bounds) and compares their memory images.
func TestMergeDataRandom(t *testing.T) {
	r := imageRuntime(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		n := 1 + rng.IntN(40)
		segs := make([][]byte, n)
		off := 0
		for j := range segs {
			size := rng.IntN(50)
			switch rng.IntN(4) {
			case 0:
				off = rng.IntN(2 * 65536) // anywhere, sometimes out of bounds
			default:
				off += rng.IntN(2 * instrument.MaxDataGap)
			}
			if i%3 != 0 {
				off %= 65536 - 64 // in bounds
			}
			b := make([]byte, size)
			for k := range b {
				b[k] = byte(rng.IntN(3)) // zeros included
			}
			segs[j] = seg(int32(off), b)
			off += size
		}
		wasm := dataModule(1, vec(segs...))
		merged, _, _, err := instrument.MergeData(wasm)
		if err != nil {
			t.Fatal(err)
		}
		checkSameImage(t, r, fmt.Sprintf("random module %d", i), wasm, merged)
	}
}

// TestMergeDataAgents merges every test agent and the Go-built agents (the
// modules with tens of thousands of segments this is for): each has its
// original's memory image, instrumented or not.
func TestMergeDataAgents(t *testing.T) {
	r := imageRuntime(t)
	paths, _ := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	if len(paths) == 0 {
		t.Fatal("no test agents")
	}
	for _, p := range paths {
		// Instrumented, as the engine compiles them: the start section
		// of startloop.wasm would loop forever in instantiation.
		inst, err := instrument.Interrupts(read(t, p))
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		wasm := inst.Wasm
		merged, _, _, err := instrument.MergeData(wasm)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		checkSameImage(t, r, filepath.Base(p), wasm, merged)
	}
	if testing.Short() {
		return
	}
	for _, a := range []struct {
		pkg  string
		opts []agentbuild.Option
	}{{"examples/echo", nil}, {"examples/reactor", []agentbuild.Option{agentbuild.CShared()}}} {
		wasm := agentbuild.Build(t, a.pkg, a.opts...)
		inst, err := instrument.Interrupts(wasm)
		if err != nil {
			t.Fatal(err)
		}
		merged, before, now, err := instrument.MergeData(inst.Wasm)
		if err != nil {
			t.Fatal(err)
		}
		if before < 1000 || now > before/100 {
			t.Errorf("%s: %d -> %d data segments; want thousands merged into a few", a.pkg, before, now)
		}
		t.Logf("%s: %d -> %d data segments, %d -> %d bytes", a.pkg, before, now, len(inst.Wasm), len(merged))
		checkSameImage(t, r, a.pkg, inst.Wasm, merged)
	}
}

// FuzzMergeData: MergeData never fails on a module wazero accepts, and the
// module it returns has its original's memory image.
func FuzzMergeData(f *testing.F) {
	f.Add(dataModule(1, vec(seg(0, filled(4, 1)), seg(4, filled(4, 2)))))
	f.Add(dataModule(1, vec(seg(100, filled(3, 1)), seg(10, filled(5, 2)), seg(40, filled(1, 3)))))
	f.Add(dataModule(1, vec(seg(0, filled(8, 1)), seg(4, filled(8, 2)))))
	f.Add(dataModule(1, vec(seg(65530, filled(6, 7)), seg(65520, filled(2, 8)))))
	r := imageRuntime(f)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		if _, err := executor.InspectModule(wasm); err != nil {
			return // the engine never gives wazero such a module
		}
		merged, _, _, err := instrument.MergeData(wasm)
		if err != nil {
			if _, ierr := image(r, wasm); ierr == nil {
				t.Fatalf("MergeData failed on a module wazero instantiates: %v", err)
			}
			return
		}
		if _, cerr := r.CompileModule(context.Background(), wasm); cerr != nil {
			return // an invalid module stays invalid; its image is moot
		}
		checkSameImage(t, r, "fuzzed", wasm, merged)
	})
}
