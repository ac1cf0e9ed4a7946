package instrument_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/chimera-fabric/fabric/executor/internal/instrument"
)

// trampolined instantiates a Trampoline of slots entries (call0: () -> (),
// call1: () -> (i64), call2: () -> (i32)) and returns it with a context
// whose import resolver gives it to the modules instantiated with it.
func trampolined(t *testing.T, r wazero.Runtime, slots uint32) (api.Module, context.Context) {
	t.Helper()
	ctx := context.Background()
	tm, err := r.InstantiateWithConfig(ctx, instrument.Trampoline(slots, nil, []byte{0x7e}, []byte{0x7f}),
		wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatalf("instantiating the trampoline: %v", err)
	}
	return tm, experimental.WithImportResolver(ctx, func(name string) api.Module {
		if name == instrument.TrampolineModule {
			return tm
		}
		return nil
	})
}

// TestTrampoline calls a module's start function and an export through the
// trampoline table, on instance after instance: the functions are the
// original's, and every table and element segment index of the module still
// names what it named (check() exercises call_indirect, table.get/set/grow/
// size/fill/copy/init and elem.drop on its own two tables).
func TestTrampoline(t *testing.T) {
	orig := read(t, "testdata/features.wasm")
	// Five entries: the trampoline's table is not the size of the
	// module's (four), so a table.size of the wrong table shows.
	inst, err := instrument.Instrument(orig, instrument.Options{Trampoline: []string{"check", "not_exported", "", "grow_table"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	want := callCheck(t, r, orig)
	tm, ctx := trampolined(t, r, instrument.TrampolineSlots(4))
	call0, call1 := tm.ExportedFunction(instrument.TrampolineCall(0)), tm.ExportedFunction(instrument.TrampolineCall(1))
	for i := range 3 {
		mod, err := r.InstantiateWithConfig(ctx, inst.Wasm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		started := mod.ExportedGlobal("started")
		if _, err := call0.Call(ctx, 0); err != nil || started.Get() != 1 {
			t.Fatalf("instance %d: start through the trampoline: %v, started %d", i, err, started.Get())
		}
		// check() runs once per instance (it drops a data segment):
		// through the trampoline, and on one instance through its export.
		how, fn, args := "the trampoline", call1, []uint64{1}
		if i == 1 {
			how, fn, args = "its export", mod.ExportedFunction("check"), nil
		}
		got, err := fn.Call(ctx, args...)
		if err != nil {
			t.Fatalf("instance %d: check through %s: %v", i, how, err)
		}
		if got[0] != want {
			t.Fatalf("instance %d: check() = %d through %s; the original returns %d", i, got[0], how, want)
		}
		// The module's own table grows (within MaxTableEntries); the
		// trampoline's is not its to touch.
		if res, _ := mod.ExportedFunction("grow_table").Call(ctx, 1000); int32(res[0]) == -1 {
			t.Fatalf("instance %d: table.grow of its own table refused", i)
		}
		// Entries 2 and 3 (not exported, "") are null: calling them traps.
		for _, slot := range []uint64{2, 3} {
			if _, err := call0.Call(ctx, slot); err == nil {
				t.Fatalf("instance %d: a call of empty entry %d succeeded", i, slot)
			}
		}
		_ = mod.Close(ctx)
	}
}

// TestTrampolineOutOfBoundsElements: wazero stops applying element segments
// at one outside its table, without failing the instantiation; the
// trampoline's come first, so the entries are the new instance's anyway.
func TestTrampolineOutOfBoundsElements(t *testing.T) {
	inst, err := instrument.Instrument(read(t, "testdata/oob_elem.wasm"), instrument.Options{Trampoline: []string{"run"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t)
	tm, ctx := trampolined(t, r, instrument.TrampolineSlots(1))
	call2 := tm.ExportedFunction(instrument.TrampolineCall(2))
	for i := range 2 {
		mod, err := r.InstantiateWithConfig(ctx, inst.Wasm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		res, err := call2.Call(ctx, 1)
		if err != nil || res[0] != 7 {
			t.Fatalf("instance %d: run through the trampoline: %v, %v; want 7", i, res, err)
		}
		_ = mod.Close(ctx)
	}
}

// TestTrampolineNames: the table and function names of the name section
// follow the renumbering.
func TestTrampolineNames(t *testing.T) {
	orig := read(t, "testdata/features_names.wasm")
	inst, err := instrument.Instrument(orig, instrument.Options{Trampoline: []string{"check"}})
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
		if got := b.ExportedFunctions()[name]; got == nil || got.DebugName() != def.DebugName() {
			t.Errorf("export %s: named %v once instrumented; want %s", name, got.DebugName(), def.DebugName())
		}
	}
	var imports []string
	for _, im := range b.ImportedFunctions() {
		mod, name, _ := im.Import()
		imports = append(imports, mod+"."+name)
	}
	if !strings.Contains(strings.Join(imports, " "), instrument.YieldName) {
		t.Errorf("imports %v; want the yield function", imports)
	}
}
