package executor_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
)

func benchEngine(b *testing.B) *executor.Wazero {
	e := newWazero(b, executor.WazeroOptions{})
	b.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func benchModule(b *testing.B, e *executor.Wazero, agent string) executor.Module {
	m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: agent, Wasm: enginetest.Agent(b, agent)})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchInv(input []byte, timeout time.Duration) executor.Invocation {
	return executor.Invocation{
		Input:            input,
		Timeout:          timeout,
		MemoryLimitBytes: 64 << 20,
		OutputLimitBytes: 1 << 20,
		LogLimitBytes:    64 << 10,
	}
}

// BenchmarkCompile compiles a small fabric-v1 agent (wazero's in-memory
// cache is off: each engine compiles afresh).
func BenchmarkCompile(b *testing.B) {
	wasm := enginetest.Agent(b, "hostabuse")
	e := benchEngine(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: "hostabuse", Wasm: wasm})
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Close(ctx)
	}
}

// BenchmarkRunTiny is one task of the smallest agent: instantiate, call,
// close, with the outcome built; "-timeout" with a task's timeout (a timer),
// as the scheduler always sets one; "-reuse" in an instance reused from the
// agent's earlier tasks (ModuleSpec.ReuseInstances); "-fresh" instantiated
// anew for every task (WazeroOptions.FreshInstances), where the others run
// in an instance reset in place when the module allows it.
func BenchmarkRunTiny(b *testing.B) {
	for _, c := range []struct {
		agent   string
		timeout time.Duration
		reuse   bool
	}{
		{"noop", 0, false}, {"echo_fabric", 0, false}, {"echo", 0, false},
		{"noop-timeout", time.Minute, false},
		{"noop-reuse", 0, true}, {"echo_fabric-reuse", 0, true},
		{"noop-fresh", 0, false}, {"echo_fabric-fresh", 0, false}, {"echo-fresh", 0, false},
	} {
		b.Run(c.agent, func(b *testing.B) {
			e := newWazero(b, executor.WazeroOptions{FreshInstances: strings.HasSuffix(c.agent, "-fresh")})
			b.Cleanup(func() { _ = e.Close(context.Background()) })
			agent, _, _ := strings.Cut(c.agent, "-")
			m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: agent, Wasm: enginetest.Agent(b, agent), ReuseInstances: c.reuse})
			if err != nil {
				b.Fatal(err)
			}
			in := benchInv([]byte("hello"), c.timeout)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out := m.Run(ctx, in); out.Err != nil {
					b.Fatal(out.Err)
				}
			}
		})
	}
}

// BenchmarkCallExport calls a trivial export of an instance made once: the
// floor under every task, below the engine's per-task work.
func BenchmarkCallExport(b *testing.B) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, enginetest.Agent(b, "noop"))
	if err != nil {
		b.Fatal(err)
	}
	fn := mod.ExportedFunction("run")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fn.Call(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpin runs a CPU loop of 10M iterations through the engine with
// and without a timeout, and on a bare wazero runtime without the
// interruption checks that WithCloseOnContextDone compiles into every loop.
func BenchmarkSpin(b *testing.B) {
	const n = 10_000_000
	var input [4]byte
	binary.LittleEndian.PutUint32(input[:], n)
	for _, c := range []struct {
		name    string
		timeout time.Duration
	}{{"engine/no-timeout", 0}, {"engine/timeout", time.Minute}} {
		b.Run(c.name, func(b *testing.B) {
			e := benchEngine(b)
			m := benchModule(b, e, "spin")
			in := benchInv(input[:], c.timeout)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out := m.Run(ctx, in); out.Err != nil {
					b.Fatal(out.Err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/iter")
		})
	}
	for _, interruptible := range []bool{false, true} {
		name := "bare/no-checks"
		if interruptible {
			name = "bare/close-on-done"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			cfg := wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(interruptible)
			r := wazero.NewRuntimeWithConfig(ctx, cfg)
			defer r.Close(ctx)
			fabric := r.NewHostModuleBuilder("fabric")
			fabric.NewFunctionBuilder().WithFunc(func() int32 { return 4 }).Export("input_len")
			fabric.NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, p uint32) {
				m.Memory().Write(p, input[:])
			}).Export("input_read")
			fabric.NewFunctionBuilder().WithFunc(func(uint32, uint32) {}).Export("output_write")
			if _, err := fabric.Instantiate(ctx); err != nil {
				b.Fatal(err)
			}
			compiled, err := r.CompileModule(ctx, enginetest.Agent(b, "spin"))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := mod.ExportedFunction("run").Call(ctx); err != nil {
					b.Fatal(err)
				}
				_ = mod.Close(ctx)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/iter")
		})
	}
}
