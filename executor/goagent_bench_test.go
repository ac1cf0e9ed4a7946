package executor_test

import (
	"context"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/agentbuild"
)

// Go-built agents (GOOS=wasip1, megabytes of code and a Go runtime that
// starts in every fresh instance) through the wazero engine: compile with
// and without wazero's compilation cache, and a task's whole run
// (instantiate, the Go runtime's start, the call, close) for the
// wasi-command echo and the c-shared reactor (fabric-v1).
//
//	go test ./executor -run '^$' -bench GoAgent -benchtime 3s

var goAgents = []struct {
	name string
	pkg  string
	opts []agentbuild.Option
	in   string
}{
	{"echo", "examples/echo", nil, `{"hello":"fabric"}`},
	{"reactor", "examples/reactor", []agentbuild.Option{agentbuild.CShared()}, "hello fabric world"},
}

func BenchmarkGoAgentCompile(b *testing.B) {
	cache := b.TempDir()
	for _, a := range goAgents {
		wasm := agentbuild.Build(b, a.pkg, a.opts...)
		b.Run(a.name+"/fresh", func(b *testing.B) {
			e := benchEngine(b)
			ctx := context.Background()
			for b.Loop() {
				m, err := e.Compile(ctx, executor.ModuleSpec{Name: a.name, Wasm: wasm})
				if err != nil {
					b.Fatal(err)
				}
				_ = m.Close(ctx)
			}
			b.ReportMetric(float64(len(wasm)), "module-bytes")
		})
		// A restarted fabricd compiles its agents from --data/compiled.
		b.Run(a.name+"/cached", func(b *testing.B) {
			ctx := context.Background()
			warm := newWazero(b, executor.WazeroOptions{CacheDir: cache})
			if _, err := warm.Compile(ctx, executor.ModuleSpec{Name: a.name, Wasm: wasm}); err != nil {
				b.Fatal(err)
			}
			_ = warm.Close(ctx)
			b.ResetTimer()
			for b.Loop() {
				// Each engine is a new process's: wazero's in-memory cache
				// is per engine, so only the file cache serves.
				e := newWazero(b, executor.WazeroOptions{CacheDir: cache})
				m, err := e.Compile(ctx, executor.ModuleSpec{Name: a.name, Wasm: wasm})
				if err != nil {
					b.Fatal(err)
				}
				_ = m.Close(ctx)
				_ = e.Close(ctx)
			}
		})
	}
}

// BenchmarkGoAgentRun is one task of a Go-built agent in a fresh instance,
// as every task runs by default, and ("reactor-reuse") in an instance
// reused from the agent's earlier tasks (ModuleSpec.ReuseInstances; a
// wasi-command cannot).
func BenchmarkGoAgentRun(b *testing.B) {
	runs := []struct {
		name  string
		agent int
		reuse bool
	}{{"echo", 0, false}, {"reactor", 1, false}, {"reactor-reuse", 1, true}}
	for _, r := range runs {
		a := goAgents[r.agent]
		b.Run(r.name, func(b *testing.B) {
			e := benchEngine(b)
			ctx := context.Background()
			m, err := e.Compile(ctx, executor.ModuleSpec{Name: a.name, Wasm: agentbuild.Build(b, a.pkg, a.opts...), ReuseInstances: r.reuse})
			if err != nil {
				b.Fatal(err)
			}
			in := benchInv([]byte(a.in), 0)
			in.MemoryLimitBytes = 256 << 20
			b.ReportAllocs()
			var peak float64
			for b.Loop() {
				out := m.Run(ctx, in)
				if out.Err != nil {
					b.Fatal(out.Err)
				}
				peak = out.Usage.MemoryPeakMB
			}
			b.ReportMetric(peak, "guest-MiB")
		})
	}
}
