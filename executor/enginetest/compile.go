package enginetest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// Hand-made binaries that wat2wasm would not produce.
var (
	// emptyModule is a valid module with nothing in it.
	emptyModule = []byte("\x00asm\x01\x00\x00\x00")
	// invalidModule exports memory and run () -> (i32), whose body returns
	// nothing: it fails validation.
	invalidModule = []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x05\x01\x60\x00\x01\x7f" + // type: () -> (i32)
		"\x03\x02\x01\x00" + // function 0 has type 0
		"\x05\x03\x01\x00\x01" + // memory: min 1
		"\x07\x10\x02\x03run\x00\x00\x06memory\x02\x00" + // exports
		"\x0a\x04\x01\x02\x00\x0b") // code: empty body
)

func (s *suite) testCompile(t *testing.T) {
	for _, c := range []struct {
		agent      string
		spec       executor.ModuleSpec
		abi, entry string
	}{
		{"echo", executor.ModuleSpec{}, protocol.ABIWasiCommand, "_start"},
		{"echo", executor.ModuleSpec{ABI: protocol.ABIWasiCommand, Entry: "_start"}, protocol.ABIWasiCommand, "_start"},
		{"loop", executor.ModuleSpec{}, protocol.ABIWasiCommand, "_start"},
		{"echo_fabric", executor.ModuleSpec{}, protocol.ABIFabricV1, "run"},
		{"noop", executor.ModuleSpec{ABI: protocol.ABIFabricV1}, protocol.ABIFabricV1, "run"},
		{"noop", executor.ModuleSpec{Entry: "run"}, protocol.ABIFabricV1, "run"},
		{"reactor", executor.ModuleSpec{}, protocol.ABIFabricV1, "run"},
		{"clock", executor.ModuleSpec{Capabilities: []string{protocol.CapClock, protocol.CapRandom}}, protocol.ABIWasiCommand, "_start"},
	} {
		t.Run(c.agent, func(t *testing.T) {
			m := s.compile(t, c.agent, c.spec)
			if m.ABI() != c.abi || m.Entry() != c.entry {
				t.Fatalf("ABI %q entry %q; want %q %q", m.ABI(), m.Entry(), c.abi, c.entry)
			}
		})
	}
}

func (s *suite) testRefuse(t *testing.T) {
	echo := Agent(t, "echo")
	for _, c := range []struct {
		name string
		wasm []byte
		spec executor.ModuleSpec
		want []string // parts of the error message
	}{
		{"empty bytes", nil, executor.ModuleSpec{}, nil},
		{"not wasm", []byte("hello, world"), executor.ModuleSpec{}, nil},
		{"truncated header", echo[:5], executor.ModuleSpec{}, nil},
		{"truncated", echo[:len(echo)-4], executor.ModuleSpec{}, nil},
		{"fails validation", invalidModule, executor.ModuleSpec{}, nil},
		{"no entry at all", emptyModule, executor.ModuleSpec{}, nil},
		{"forbidden import", Agent(t, "forbidden"), executor.ModuleSpec{}, []string{"env.socket", "not part of the guest ABI"}},
		{"unknown wasi import", Agent(t, "forbidden_wasi"), executor.ModuleSpec{}, []string{"wasi_snapshot_preview1.sock_open"}},
		{"wrong import type", Agent(t, "badsig"), executor.ModuleSpec{}, []string{"fabric.output_write"}},
		{"imported memory", Agent(t, "memimport"), executor.ModuleSpec{}, []string{"env.memory"}},
		{"initial memory over the ceiling", Agent(t, "hugemem"), executor.ModuleSpec{}, []string{"initial"}},
		{"missing entry", Agent(t, "noop"), executor.ModuleSpec{Entry: "missing"}, []string{"missing"}},
		{"entry of the wrong type", Agent(t, "reactor"), executor.ModuleSpec{ABI: protocol.ABIFabricV1, Entry: "_initialize"}, []string{"_initialize"}},
		{"wasi-command without _start", Agent(t, "noop"), executor.ModuleSpec{ABI: protocol.ABIWasiCommand}, []string{"_start"}},
		{"fabric-v1 without memory", Agent(t, "loop"), executor.ModuleSpec{ABI: protocol.ABIFabricV1, Entry: "_start"}, []string{"memory"}},
		{"unknown abi", Agent(t, "noop"), executor.ModuleSpec{ABI: "wasi-reactor"}, []string{"wasi-reactor"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			spec.Name = "refused"
			spec.Wasm = c.wasm
			m, err := s.eng.Compile(context.Background(), spec)
			if err == nil {
				_ = m.Close(context.Background())
				t.Fatal("Compile succeeded; want -32003")
			}
			if m != nil {
				t.Errorf("Compile returned a module with its error")
			}
			if !errors.Is(err, protocol.ErrInvalidModule) {
				t.Fatalf("Compile: %v; want an error wrapping protocol.ErrInvalidModule (-32003)", err)
			}
			for _, p := range c.want {
				if !strings.Contains(err.Error(), p) {
					t.Fatalf("Compile: %q; want it to name %q", err, p)
				}
			}
		})
	}
	s.healthy(t)
}
