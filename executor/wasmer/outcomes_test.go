//go:build wasmer

package wasmer

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/protocol"
)

// TestSameOutcomesAsWazero runs every test agent under a range of
// invocations on both engines and compares what they made of it: the code,
// the output, the logs, the KPIs and the memory peak.
func TestSameOutcomesAsWazero(t *testing.T) {
	e := newEngine(t, Options{MaxMemoryBytes: 256 << 20})
	z := newWazero(t)
	files, err := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test agents in %s: %v", enginetest.AgentsDir(), err)
	}
	hostabuse := func(op, a, b, c uint32) string {
		var in []byte
		for _, v := range []uint32{op, a, b, c} {
			in = binary.LittleEndian.AppendUint32(in, v)
		}
		return string(in)
	}
	// Invocations per agent, beyond the default one (input "x").
	type variant struct {
		name string
		mod  func(*executor.Invocation)
	}
	withInput := func(s string) func(*executor.Invocation) {
		return func(in *executor.Invocation) { in.Input = []byte(s) }
	}
	short := func(in *executor.Invocation) { in.Timeout = 100 * time.Millisecond }
	variants := map[string][]variant{
		"agent_error": {{"empty input", withInput("")}},
		"membomb": {
			{"8 MiB", func(in *executor.Invocation) { in.MemoryLimitBytes = 8 << 20 }},
			{"odd quota", func(in *executor.Invocation) { in.MemoryLimitBytes = 5<<20 + 12345 }},
		},
		"bigmem":          {{"4 MiB", func(in *executor.Invocation) { in.MemoryLimitBytes = 4 << 20 }}},
		"echo_fabric":     {{"big input", withInput(strings.Repeat("abc", 100000))}},
		"outflood":        {{"100000", func(in *executor.Invocation) { in.OutputLimitBytes = 100000 }}},
		"outflood_fabric": {{"65536", func(in *executor.Invocation) { in.OutputLimitBytes = 65536 }}},
		"logflood":        {{"small logs", func(in *executor.Invocation) { in.LogLimitBytes = 1000 }}},
		"spin":            {{"1e5", withInput("\xa0\x86\x01\x00")}},
		"random":          {{"other seed", func(in *executor.Invocation) { in.Seed = -7 }}},
	}
	for _, op := range []uint32{0, 1, 2, 3, 4, 5, 6} {
		for _, ab := range [][2]uint32{{0, 16}, {65530, 6}, {65530, 7}, {65536, 0}, {65537, 0}, {1, 0xffffffff}, {0xfffffff0, 32}} {
			in := hostabuse(op, ab[0], ab[1], 2)
			variants["hostabuse"] = append(variants["hostabuse"], variant{fmt.Sprintf("op %d %v", op, ab), withInput(in)})
		}
	}

	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".wasm")
		wasm, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		specs := []executor.ModuleSpec{{Name: name, Wasm: wasm}}
		if name == "sleep" {
			specs = append(specs, executor.ModuleSpec{Name: name, Wasm: wasm, Capabilities: []string{protocol.CapClock}})
		}
		for _, spec := range specs {
			t.Run(name+strings.Join(spec.Capabilities, "+"), func(t *testing.T) {
				ctx := context.Background()
				a, errA := e.Compile(ctx, spec)
				b, errB := z.Compile(ctx, spec)
				if errA != nil || errB != nil {
					if errA == nil || errB == nil || protocol.AsError(errA).Code != protocol.AsError(errB).Code {
						t.Fatalf("Compile: wasmer %v; wazero %v", errA, errB)
					}
					return
				}
				defer a.Close(ctx)
				defer b.Close(ctx)
				if a.ABI() != b.ABI() || a.Entry() != b.Entry() {
					t.Errorf("ABI %s entry %s; wazero %s %s", a.ABI(), a.Entry(), b.ABI(), b.Entry())
				}
				vs := append([]variant{{"default", func(*executor.Invocation) {}}}, variants[name]...)
				switch {
				case len(spec.Capabilities) > 0, name == "fib", name == "loop", name == "startloop":
					vs = []variant{{"timeout", short}} // they never end
				}
				for _, v := range vs {
					in := testInvocation([]byte("x"))
					v.mod(&in)
					got, want := pair{a, b}.run(in)
					sameOutcome(t, v.name, got, want)
					if got.Usage.MemoryPeakMB != want.Usage.MemoryPeakMB {
						t.Errorf("%s: memory_peak_mb %v; wazero %v", v.name, got.Usage.MemoryPeakMB, want.Usage.MemoryPeakMB)
					}
				}
			})
		}
	}
}
