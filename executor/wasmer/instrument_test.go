//go:build wasmer

package wasmer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/protocol"
)

// wasmModule assembles a binary from sections given as (id, content).
func wasmModule(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s[0])
		b = appendU32(b, uint32(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

func sec(id byte, parts ...[]byte) []byte {
	return append([]byte{id}, bytes.Join(parts, nil)...)
}

func body(code ...byte) []byte { // no locals
	b := append([]byte{0}, code...)
	return append(appendU32(nil, uint32(len(b))), b...)
}

// growModule is a fabric-v1 module whose start function grows its memory by
// one page and whose run grows it by three more, returning 1 when refused.
// max, if not 0, is the memory's declared maximum.
func growModule(max byte) []byte { return growModuleReserved(max, 0x00) }

// growModuleReserved is growModule with run's memory.grow followed by the
// given reserved bytes; anything but 0x00 is invalid.
func growModuleReserved(max byte, reserved ...byte) []byte {
	mem := []byte{1, 0, 1} // one memory, no maximum, one page
	if max != 0 {
		mem = []byte{1, 1, 1, max}
	}
	return wasmModule(
		sec(secType, []byte{2, 0x60, 0, 1, 0x7f, 0x60, 0, 0}),
		sec(secFunction, []byte{2, 0, 1}),
		sec(secMemory, mem),
		sec(secExport, []byte{2}, appendName(nil, "memory"), []byte{2, 0}, appendName(nil, "run"), []byte{0, 0}),
		sec(secStart, []byte{1}),
		sec(secCode, []byte{2},
			// run: (memory.grow (i32.const 3)) == -1
			body(append(append([]byte{0x41, 3, 0x40}, reserved...), 0x41, 0x7f, 0x46, 0x0b)...),
			// start: (drop (memory.grow (i32.const 1)))
			body(0x41, 1, 0x40, 0x00, 0x1a, 0x0b)),
	)
}

func TestInstrumentGrowModule(t *testing.T) {
	ins, err := instrument(growModule(0))
	if err != nil {
		t.Fatal(err)
	}
	if !ins.HasMemory || !ins.GrowGuarded || !ins.HasStart || ins.MinPages != 1 || ins.MaxPages != maxPages32 {
		t.Fatalf("instrumented %+v", ins)
	}
	info, err := executor.InspectModule(ins.Wasm)
	if err != nil {
		t.Fatalf("the instrumented module does not parse: %v", err)
	}
	for _, name := range []string{exportMemory, exportQuota, exportRefused, exportStart, "memory", "run"} {
		found := false
		for _, e := range info.Exports {
			found = found || e.Name == name
		}
		if !found {
			t.Errorf("no export %q in %v", name, info.Exports)
		}
	}
	if bytes.Contains(ins.Wasm, []byte{0x41, 3, 0x40, 0x00}) {
		t.Error("run's memory.grow is still there")
	}
}

// TestGrowReservedByte: a memory.grow whose reserved byte is not 0x00 (as
// a padded LEB128 0x80 0x00) is invalid; both engines refuse it, and the
// instrumentation does not turn it into a valid module.
func TestGrowReservedByte(t *testing.T) {
	e := newEngine(t, Options{Workers: 1})
	z := newWazero(t)
	for _, reserved := range [][]byte{{0x80, 0x00}, {0x01}} {
		spec := executor.ModuleSpec{Name: "grow", Wasm: growModuleReserved(0, reserved...)}
		_, errA := e.Compile(context.Background(), spec)
		_, errB := z.Compile(context.Background(), spec)
		if !errors.Is(errA, protocol.ErrInvalidModule) || !errors.Is(errB, protocol.ErrInvalidModule) {
			t.Errorf("reserved bytes %x: wasmer %v; wazero %v; want both invalid", reserved, errA, errB)
		}
	}
}

// TestGrowLikeWazero runs growModule on both engines under quotas on either
// side of what it needs.
func TestGrowLikeWazero(t *testing.T) {
	e := newEngine(t, Options{Workers: 1})
	z := newWazero(t)
	for _, c := range []struct {
		name  string
		max   byte
		quota uint64 // pages
		code  string
	}{
		{"fits", 0, 5, ""},
		{"over the quota", 0, 4, protocol.CodeMemoryLimit},
		{"the start's grow over the quota", 0, 1, protocol.CodeMemoryLimit},
		{"over the module's maximum", 3, 64, protocol.CodeAgentError},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := compileBoth(t, e, z, executor.ModuleSpec{Name: "grow", Wasm: growModule(c.max)})
			in := testInvocation(nil)
			in.MemoryLimitBytes = c.quota * executor.WasmPageSize
			got, want := p.run(in)
			sameOutcome(t, c.name, got, want)
			if got.Err == nil && c.code != "" || got.Err != nil && got.Err.Code != c.code {
				t.Errorf("outcome %v; want %q", got.Err, c.code)
			}
			if got.Usage.MemoryPeakMB != want.Usage.MemoryPeakMB {
				t.Errorf("memory_peak_mb %v; wazero %v", got.Usage.MemoryPeakMB, want.Usage.MemoryPeakMB)
			}
		})
	}
}

// TestInstrumentAgents: every test agent the ABI accepts instruments into a
// module that still parses, and an agent that never grows gets no guard.
func TestInstrumentAgents(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := executor.InspectModule(wasm); err != nil {
			continue
		}
		ins, err := instrument(wasm)
		name := filepath.Base(f)
		if err != nil {
			if name == "memimport.wasm" {
				continue // imports its memory: refused by CheckModule first
			}
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := executor.InspectModule(ins.Wasm); err != nil {
			t.Errorf("%s: the instrumented module does not parse: %v", name, err)
		}
		grows := strings.Contains(name, "membomb") || strings.Contains(name, "echo_fabric")
		if ins.GrowGuarded != grows {
			t.Errorf("%s: GrowGuarded %v; want %v", name, ins.GrowGuarded, grows)
		}
	}
}

func TestInstrumentRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"reserved export", wasmModule(sec(secExport, []byte{1}, appendName(nil, "\x00x"), []byte{0, 0})), "reserved"},
		{"two memories", wasmModule(sec(secMemory, []byte{2, 0, 1, 0, 1})), "memories"},
		{"shared memory", wasmModule(sec(secMemory, []byte{1, 3, 1, 2})), "shared"},
		{"memory.grow of memory 1", wasmModule(
			sec(secType, []byte{1, 0x60, 0, 0}), sec(secFunction, []byte{1, 0}), sec(secMemory, []byte{1, 0, 1}),
			sec(secCode, []byte{1}, body(0x41, 1, 0x40, 1, 0x1a, 0x0b))), "reserved byte 0x01"},
		{"unknown opcode", wasmModule(
			sec(secType, []byte{1, 0x60, 0, 0}), sec(secFunction, []byte{1, 0}), sec(secMemory, []byte{1, 0, 1}),
			sec(secCode, []byte{1}, body(0xff, 0x0b))), "opcode"},
		{"truncated body", wasmModule(
			sec(secType, []byte{1, 0x60, 0, 0}), sec(secFunction, []byte{1, 0}), sec(secMemory, []byte{1, 0, 1}),
			sec(secCode, []byte{1, 5, 0, 0x41})), "past"},
	} {
		if _, err := instrument(c.wasm); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error containing %q", c.name, err, c.want)
		}
	}
}

// FuzzInstrument: no input makes instrument panic or loop, and what it
// accepts it turns into a module that parses.
func FuzzInstrument(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add(growModule(0))
	f.Add(growModule(3))
	f.Fuzz(func(t *testing.T, wasm []byte) {
		ins, err := instrument(wasm)
		if err != nil {
			return
		}
		if _, err := executor.InspectModule(wasm); err != nil {
			return // instrument does not validate what inspection refuses
		}
		if _, err := executor.InspectModule(ins.Wasm); err != nil {
			t.Fatalf("instrumented a parsable module into one that does not parse: %v", err)
		}
	})
}
