package instrument_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/executor/internal/instrument"
)

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRuntime is a bare wazero runtime with WASI and a stub fabric module, to
// compile and instantiate modules outside the engine.
func newRuntime(t testing.TB) wazero.Runtime {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
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
	yield := api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		if stop, _ := ctx.Value(stopKey{}).(*atomic.Bool); stop != nil && stop.Load() {
			panic("stopped")
		}
		if n, _ := ctx.Value(yieldsKey{}).(*atomic.Int64); n != nil {
			n.Add(1)
		}
		stack[0] = instrument.Budget
	})
	b.NewFunctionBuilder().WithGoModuleFunction(yield, nil, []api.ValueType{api.ValueTypeI32}).Export(instrument.YieldName)
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// Context keys of the test host's yield function: a flag that makes it trap
// the guest, and a counter of its calls.
type (
	stopKey   struct{}
	yieldsKey struct{}
)

// checkTail ends every check Interrupts inserts: i32.const 0, i32.le_s,
// if, call.
var checkTail = []byte{0x41, 0x00, 0x4c, 0x04, 0x40, 0x10}

// TestAgents instruments every test agent: the result compiles wherever the
// original does.
func TestAgents(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	if len(paths) == 0 {
		t.Fatal("no test agents")
	}
	r := newRuntime(t)
	ctx := context.Background()
	for _, p := range paths {
		orig := read(t, p)
		inst, err := instrument.Interrupts(orig)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		if _, err := r.CompileModule(ctx, orig); err != nil {
			continue // a module wazero refuses anyway
		}
		if _, err := r.CompileModule(ctx, inst.Wasm); err != nil {
			t.Errorf("%s: the instrumented module does not compile: %v", filepath.Base(p), err)
		}
	}
}

// TestChecks counts the inserted checks: one per function and per loop.
func TestChecks(t *testing.T) {
	for _, c := range []struct {
		agent string
		want  int
	}{
		{"loop", 2},    // _start, its loop
		{"noop", 1},    // run
		{"fib", 2},     // fib, run
		{"echo", 2},    // _start, its loop
		{"spin", 2},    // run, its loop
		{"membomb", 2}, // run, its loop
	} {
		inst, err := instrument.Interrupts(enginetest.Agent(t, c.agent))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Count(inst.Wasm, checkTail); got != c.want {
			t.Errorf("%s: %d checks; want %d", c.agent, got, c.want)
		}
	}
}

// TestYields: a guest calls the yield function once every Budget checks,
// even a loop-free recursion, and the yield function can stop it.
func TestYields(t *testing.T) {
	r := newRuntime(t)
	inst, err := instrument.Interrupts(enginetest.Agent(t, "fib"))
	if err != nil {
		t.Fatal(err)
	}
	var yields atomic.Int64
	var stop atomic.Bool
	ctx := context.WithValue(context.WithValue(context.Background(), yieldsKey{}, &yields), stopKey{}, &stop)
	mod, err := r.InstantiateWithConfig(ctx, inst.Wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("run").Call(ctx)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for yields.Load() < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("%d yields in 10s", yields.Load())
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stopped") {
			t.Fatalf("fib: %v; want the yield function's panic", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fib not stopped by its yield function")
	}
}

// TestFeatures runs a module that uses an instruction of every immediate
// shape, before and after instrumentation, and then stops it.
func TestFeatures(t *testing.T) {
	ctx := context.Background()
	orig := read(t, "testdata/features.wasm")
	inst, err := instrument.Interrupts(orig)
	if err != nil {
		t.Fatal(err)
	}
	if !inst.HasStart {
		t.Fatal("HasStart is false for a module with a start function")
	}
	r := newRuntime(t)
	want := callCheck(t, r, orig)

	mod, err := r.InstantiateWithConfig(ctx, inst.Wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	started := mod.ExportedGlobal("started")
	if started.Get() != 0 {
		t.Fatal("the start function ran at instantiation")
	}
	if _, err := mod.ExportedFunction(instrument.StartExport).Call(ctx); err != nil {
		t.Fatal(err)
	}
	if started.Get() != 1 {
		t.Fatal("the exported start function did not run the original")
	}
	got, err := mod.ExportedFunction("check").Call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != want {
		t.Fatalf("instrumented check() = %d; the original returns %d", got[0], want)
	}

	// Tables may not grow past MaxTableEntries in all.
	grow := mod.ExportedFunction("grow_table")
	if res, _ := grow.Call(ctx, instrument.MaxTableEntries); int32(res[0]) != -1 {
		t.Fatalf("table.grow by %d returned %d; want -1", instrument.MaxTableEntries, int32(res[0]))
	}
	if res, _ := grow.Call(ctx, 1000); int32(res[0]) == -1 {
		t.Fatal("table.grow by 1000 refused")
	}

}

func callCheck(t *testing.T, r wazero.Runtime, wasm []byte) uint64 {
	t.Helper()
	ctx := context.Background()
	mod, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	res, err := mod.ExportedFunction("check").Call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestReservedNames(t *testing.T) {
	// (module (func (export "fabric:start")))
	m := []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" +
		"\x03\x02\x01\x00" +
		"\x07\x10\x01\x0cfabric:start\x00\x00" +
		"\x0a\x04\x01\x02\x00\x0b")
	if _, err := instrument.Interrupts(m); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Interrupts: %v; want the reserved name refused", err)
	}
}

// FuzzInterrupts: Interrupts never panics, and a module that wazero compiles
// still compiles once instrumented, with a trampoline table or without. Only modules that pass InspectModule's
// structural limits reach wazero, as in the engine.
func FuzzInterrupts(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	paths = append(paths, "testdata/features.wasm")
	for _, p := range paths {
		f.Add(read(f, p))
	}
	r := newRuntime(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, wasm []byte) {
		inst, err := instrument.Interrupts(wasm)
		if _, ierr := executor.InspectModule(wasm); ierr != nil {
			return
		}
		orig, cerr := r.CompileModule(ctx, wasm)
		if cerr != nil {
			return
		}
		_ = orig.Close(ctx)
		if err != nil {
			t.Fatalf("Interrupts refused a module wazero compiles: %v", err)
		}
		c, err := r.CompileModule(ctx, inst.Wasm)
		if err != nil {
			t.Fatalf("the instrumented module does not compile: %v", err)
		}
		_ = c.Close(ctx)
		// With a trampoline table too.
		inst, err = instrument.Instrument(wasm, instrument.Options{Trampoline: []string{"_initialize", "run"}})
		if err != nil {
			t.Fatalf("Instrument with a trampoline refused a module wazero compiles: %v", err)
		}
		c, err = r.CompileModule(ctx, inst.Wasm)
		if err != nil {
			t.Fatalf("the module instrumented with a trampoline does not compile: %v", err)
		}
		_ = c.Close(ctx)
	})
}

// TestNames: the name section is renumbered with the functions, so every
// function keeps its name.
func TestNames(t *testing.T) {
	orig := read(t, "testdata/features_names.wasm")
	inst, err := instrument.Interrupts(orig)
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	ctx := context.Background()
	a, err := r.CompileModule(ctx, orig)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.CompileModule(ctx, inst.Wasm)
	if err != nil {
		t.Fatal(err)
	}
	for name, def := range a.ExportedFunctions() {
		got := b.ExportedFunctions()[name]
		if got == nil || got.DebugName() != def.DebugName() {
			t.Errorf("export %s: named %v once instrumented; want %s", name, got.DebugName(), def.DebugName())
		}
	}
	if len(a.ExportedFunctions()) < 2 {
		t.Fatal("the test module exports too few functions")
	}
}

// TestFixedAndGlobals: Module.Fixed names the first thing that lets a
// guest change its instance's state other than memory and mutable globals,
// Module.Globals lists the mutable globals (the budget last), and
// ExportGlobals exports them under reserved names, with the values
// instantiation gives them.
func TestFixedAndGlobals(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "agents")
	for name, want := range map[string]string{
		"resetprobe": "", "stateful": "",
		"reset_tableset": "table.set", "reset_tablegrow": "table.grow", "reset_tablefill": "table.fill",
		"reset_tablecopy": "table.copy", "reset_tableinit": "table.init", "reset_elemdrop": "elem.drop",
		"reset_datadrop": "data.drop", "reset_tableexport": `the module exports table "table"`,
		"reset_v128": "", // its global is the executor's business
	} {
		for _, tramp := range [][]string{nil, {"", "run"}} {
			inst, err := instrument.Instrument(read(t, filepath.Join(dir, name+".wasm")), instrument.Options{Trampoline: tramp})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if inst.Fixed != want {
				t.Errorf("%s (trampoline %v): Fixed %q; want %q", name, tramp != nil, inst.Fixed, want)
			}
		}
	}

	inst, err := instrument.Instrument(read(t, filepath.Join(dir, "resetprobe.wasm")), instrument.Options{ExportGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	// $i $l $f $d $fr counter $started $inited $at, then the budget.
	wantTypes := []byte{0x7f, 0x7e, 0x7d, 0x7c, 0x70, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f}
	if len(inst.Globals) != len(wantTypes) {
		t.Fatalf("globals %+v; want %d", inst.Globals, len(wantTypes))
	}
	for i, g := range inst.Globals {
		if g.Index != uint32(i) || g.Type != wantTypes[i] {
			t.Errorf("global %d: %+v; want index %d, type %#x", i, g, i, wantTypes[i])
		}
	}
	ctx := context.Background()
	r := newRuntime(t)
	mod, err := r.InstantiateWithConfig(ctx, inst.Wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	for idx, want := range map[uint32]uint64{0: 7, 1: uint64(1<<64 - 5), 5: 100, 9: instrument.Budget} {
		g, ok := mod.ExportedGlobal(instrument.GlobalExport(idx)).(api.MutableGlobal)
		if !ok || g.Get() != want {
			t.Errorf("export %s: %v; want a mutable global of %d", instrument.GlobalExport(idx), g, want)
		}
	}

	// A module may not export a name of the reserved prefix.
	bad := []byte("\x00asm\x01\x00\x00\x00\x06\x06\x01\x7f\x01\x41\x00\x0b\x07\x13\x01\x0ffabric:global:0\x03\x00")
	if _, err := instrument.Instrument(bad, instrument.Options{}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("a module exporting %q: %v; want it refused", instrument.GlobalExport(0), err)
	}
}
