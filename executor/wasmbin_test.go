package executor_test

import (
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

func TestInspectAgents(t *testing.T) {
	info, err := executor.InspectModule(enginetest.Agent(t, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Imports) != 2 || info.Imports[0].Module != "wasi_snapshot_preview1" || info.Imports[0].Name != "fd_read" ||
		info.Imports[0].Type.String() != "(i32, i32, i32, i32) -> (i32)" {
		t.Fatalf("imports %+v", info.Imports)
	}
	if sig, ok := info.ExportedFunc("_start"); !ok || sig.String() != "() -> ()" {
		t.Fatalf("_start: %v %v", sig, ok)
	}
	if !info.ExportsName("memory", executor.KindMemory) || info.InitialMemoryBytes() != executor.WasmPageSize {
		t.Fatalf("memory: exported %v, %d bytes", info.ExportsName("memory", executor.KindMemory), info.InitialMemoryBytes())
	}
	info, err = executor.InspectModule(enginetest.Agent(t, "hugemem"))
	if err != nil || info.InitialMemoryBytes() != 1<<32 {
		t.Fatalf("hugemem: %v, %d bytes", err, info.InitialMemoryBytes())
	}
}

// module builds a binary from sections given as (id, body).
func module(sections ...any) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for i := 0; i < len(sections); i += 2 {
		body := sections[i+1].([]byte)
		b = append(b, byte(sections[i].(int)))
		b = leb128.AppendUint(b, uint64(len(body)))
		b = append(b, body...)
	}
	return b
}

func uleb(v uint64) []byte { return leb128.AppendUint(nil, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestInspectLimits: counts that would make a decoder allocate far more
// than the module's size are refused before any engine reads them.
func TestInspectLimits(t *testing.T) {
	for _, c := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"import count over the limit", module(2, cat(uleb(67505176), []byte("\x00"))), "limit is 100000"},
		{"import count past the bytes", module(2, cat(uleb(5000), []byte("\x00"))), "bytes are left"},
		{"too many params", module(1, cat(uleb(1), []byte{0x60}, uleb(1001), make([]byte, 1001), uleb(0))), "limit is 1000"},
		{"too many locals", module(10, cat(uleb(1), uleb(6), uleb(2), uleb(40000), []byte{0x7f}, uleb(40000), []byte{0x7f})), "locals"},
		{"local groups past the bytes", module(10, cat(uleb(1), uleb(4), uleb(40000), []byte{0x0b})), "bytes are left"},
		{"huge table", module(4, cat(uleb(1), []byte{0x70, 0x00}, uleb(2<<20))), "tables start with"},
		{"data past the bytes", module(11, cat(uleb(1), uleb(1), uleb(1<<31))), "run past the end"},
		{"element vector past the bytes", module(9, cat(uleb(1), uleb(1), []byte{0x00}, uleb(1<<30))), "bytes are left"},
		{"name map past the bytes", module(0, cat(uleb(4), []byte("name"), []byte{1}, uleb(5), uleb(1<<31))), "bytes are left"},
		{"unknown section", module(14, []byte{}), "unknown section"},
		{"section past the end", []byte("\x00asm\x01\x00\x00\x00\x01\x10\x00"), "runs past the end"},
		{"wrong version", []byte("\x00asm\x02\x00\x00\x00"), "version 2"},
		{"bad constant expression", module(6, cat(uleb(1), []byte{0x7f, 0x00, 0x10, 0x00, 0x0b})), "constant expression"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := executor.InspectModule(c.wasm)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("InspectModule: %v; want an error containing %q", err, c.want)
			}
		})
	}
}

func FuzzInspectModule(f *testing.F) {
	addAgentSeeds(f)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		info, err := executor.InspectModule(wasm)
		if err != nil {
			return
		}
		// What it returns is consistent with itself.
		for _, e := range info.Exports {
			if e.Kind == executor.KindFunc {
				info.ExportedFunc(e.Name)
			}
		}
		_ = info.InitialMemoryBytes()
	})
}
