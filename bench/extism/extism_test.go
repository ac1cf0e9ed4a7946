// Package extismbench runs the same modules through Fabric's executor and
// through Extism's Go SDK (github.com/extism/go-sdk), side by side, so that
// a task's cost in Fabric can be read against a peer's. It is a module of
// its own: Extism never becomes a dependency of fabricd.
//
//	cd bench/extism && go test -run '^$' -bench . -benchtime 2s
//
// Both sides run on the same wazero (this module's go.mod resolves one
// version for both, the newer that Fabric requires) with its compiler, in
// the same process and run, so their ratio holds on a noisy machine.
//
// The work is an echo: the input copied into the guest's memory, then out
// of it as the output. The tiny modules are hand-written WebAssembly
// (../agents/echo.wat in Fabric's fabric-v1 ABI, testdata/echo.wat in
// Extism's); the Go-built ones are reactors (go build -buildmode=c-shared)
// built by the benchmark from agents/goecho-fabric and agents/goecho-extism.
//
// The modes:
//
//	fabric/fresh   executor Module.Run: a fresh instance per task, with
//	               Fabric's sandbox (memory quota, timeout, output and log
//	               caps, CPU time and memory peak measured): the default
//	fabric/reuse   the same with the agent's opt-in reuse_instances: a task
//	               runs in an instance an earlier task ran in
//	extism/fresh   CompiledPlugin.Instance, Call, Close per task: a fresh
//	               instance, as Fabric runs every task
//	extism/reuse   one Plugin, Call per task: Extism's usual way, which
//	               keeps the guest's memory between calls
package extismbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"

	"github.com/chimera-fabric/fabric/executor"
)

var inputs = []struct {
	name string
	data []byte
}{
	{"5B", []byte("hello")},
	{"4KiB", []byte(strings.Repeat("x", 4096))},
}

// module is one module of the comparison, in both ABIs.
type module struct {
	name           string
	fabric, extism func(b *testing.B) []byte
	extismEntry    string
	extismWASI     bool
}

var modules = []module{
	{
		name:        "tiny",
		fabric:      readFile("../agents/echo.wasm"),
		extism:      readFile("testdata/echo.wasm"),
		extismEntry: "echo",
	},
	{
		name:        "go",
		fabric:      goBuild("agents/goecho-fabric"),
		extism:      goBuild("agents/goecho-extism"),
		extismEntry: "echo",
		extismWASI:  true, // a Go module imports WASI for its runtime
	},
}

func readFile(path string) func(b *testing.B) []byte {
	return func(b *testing.B) []byte {
		wasm, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return wasm
	}
}

var builds sync.Map // package → []byte

// goBuild builds a reactor with the Go toolchain, once per process.
func goBuild(pkg string) func(b *testing.B) []byte {
	return func(b *testing.B) []byte {
		if wasm, ok := builds.Load(pkg); ok {
			return wasm.([]byte)
		}
		dir, err := os.MkdirTemp("", "extismbench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "m.wasm")
		cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", out, "./"+pkg)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", pkg, err, msg)
		}
		wasm, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		builds.Store(pkg, wasm)
		return wasm
	}
}

// fabricModule compiles m for Fabric's wazero engine, with reuse_instances
// as reuse says.
func fabricModule(b *testing.B, m module, reuse bool) executor.Module {
	ctx := context.Background()
	e, err := executor.NewWazero(executor.WazeroOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(ctx) })
	mod, err := e.Compile(ctx, executor.ModuleSpec{Name: m.name, Wasm: m.fabric(b), ReuseInstances: reuse})
	if err != nil {
		b.Fatal(err)
	}
	return mod
}

// invocation is what fabricd gives a task by default: 256 MiB of memory,
// a 30s timeout, 4 MiB of output, 1 MiB of logs.
func invocation(in []byte) executor.Invocation {
	return executor.Invocation{Input: in, Timeout: 30e9, MemoryLimitBytes: 256 << 20,
		OutputLimitBytes: 4 << 20, LogLimitBytes: 1 << 20}
}

// extismPlugin compiles m for Extism with wazero's compiler (Extism's
// default runtime config), and no timeout in the manifest, which would
// turn on wazero's context checks in every loop.
func extismPlugin(b *testing.B, m module) *extism.CompiledPlugin {
	ctx := context.Background()
	manifest := extism.Manifest{Wasm: []extism.Wasm{extism.WasmData{Data: m.extism(b), Name: "main"}}}
	p, err := extism.NewCompiledPlugin(ctx, manifest, extism.PluginConfig{
		EnableWasi:    m.extismWASI,
		RuntimeConfig: wazero.NewRuntimeConfigCompiler(),
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(ctx) })
	return p
}

func checkEcho(b *testing.B, got, want []byte) {
	if string(got) != string(want) {
		b.Fatalf("echo returned %d bytes %.20q; want %d bytes %.20q", len(got), got, len(want), want)
	}
}

// BenchmarkTask is one task of each module in each mode.
func BenchmarkTask(b *testing.B) {
	ctx := context.Background()
	for _, m := range modules {
		for _, in := range inputs {
			for _, mode := range []string{"fresh", "reuse"} {
				b.Run(fmt.Sprintf("%s/%s/fabric/%s", m.name, in.name, mode), func(b *testing.B) {
					mod := fabricModule(b, m, mode == "reuse")
					inv := invocation(in.data)
					b.ReportAllocs()
					for b.Loop() {
						out := mod.Run(ctx, inv)
						if out.Err != nil {
							b.Fatal(out.Err)
						}
						checkEcho(b, out.Output, in.data)
					}
				})
			}
			b.Run(fmt.Sprintf("%s/%s/extism/fresh", m.name, in.name), func(b *testing.B) {
				p := extismPlugin(b, m)
				b.ReportAllocs()
				for b.Loop() {
					inst, err := p.Instance(ctx, extism.PluginInstanceConfig{})
					if err != nil {
						b.Fatal(err)
					}
					rc, out, err := inst.Call(m.extismEntry, in.data)
					if err != nil || rc != 0 {
						b.Fatalf("call: %d, %v", rc, err)
					}
					checkEcho(b, out, in.data)
					if err := inst.Close(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/%s/extism/reuse", m.name, in.name), func(b *testing.B) {
				p := extismPlugin(b, m)
				inst, err := p.Instance(ctx, extism.PluginInstanceConfig{})
				if err != nil {
					b.Fatal(err)
				}
				defer inst.Close(ctx)
				b.ReportAllocs()
				for b.Loop() {
					rc, out, err := inst.Call(m.extismEntry, in.data)
					if err != nil || rc != 0 {
						b.Fatalf("call: %d, %v", rc, err)
					}
					checkEcho(b, out, in.data)
				}
			})
		}
	}
}
