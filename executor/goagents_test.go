package executor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/agentbuild"
	"github.com/chimera-fabric/fabric/protocol"
)

// TestWazeroGoAgents runs example agents built by the Go toolchain
// (GOOS=wasip1), the modules real users register: megabytes of code with
// every kind of loop and call, a Go runtime that sleeps, grows its memory
// and reads the clock.
func TestWazeroGoAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go agents")
	}
	cache, err := agentbuild.CompilationCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	e := newWazero(t, executor.WazeroOptions{CacheDir: cache})
	defer e.Close(context.Background())
	ctx := context.Background()
	compile := func(t *testing.T, name string, opts ...agentbuild.Option) executor.Module {
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: name, Wasm: agentbuild.Build(t, "examples/"+name, opts...)})
		if err != nil {
			t.Fatalf("Compile(%s): %v", name, err)
		}
		return m
	}
	inv := func(input string, timeout time.Duration) executor.Invocation {
		return executor.Invocation{
			Input: []byte(input), Timeout: timeout, MemoryLimitBytes: 256 << 20,
			OutputLimitBytes: 1 << 20, LogLimitBytes: 64 << 10,
		}
	}

	t.Run("echo", func(t *testing.T) {
		m := compile(t, "echo")
		out := m.Run(ctx, inv(`{"go": true}`, time.Minute))
		if out.Err != nil || string(out.Output) != `{"go": true}` {
			t.Fatalf("echo: %+v %q", out.Err, out.Output)
		}
		if out.Usage.MemoryPeakMB <= 0 || out.Usage.CPUSeconds <= 0 {
			t.Fatalf("usage %+v; want memory and CPU measured", out.Usage)
		}
	})
	t.Run("cpu", func(t *testing.T) {
		m := compile(t, "cpu")
		out := m.Run(ctx, inv("1000", time.Minute))
		if out.Err != nil || !strings.Contains(string(out.Output), `"primes":168`) {
			t.Fatalf("cpu 1000: %+v %q", out.Err, out.Output)
		}
		if out.KPIs["primes"] != 168 {
			t.Fatalf("kpis %v; want primes=168", out.KPIs)
		}
		start := time.Now()
		out = m.Run(ctx, inv("10000000000", 300*time.Millisecond))
		if out.Err == nil || out.Err.Code != protocol.CodeTimeout {
			t.Fatalf("cpu 1e10 with a 300ms timeout: %+v", out.Err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("the timeout stopped a Go agent after %s", d)
		}
	})
	t.Run("reactor", func(t *testing.T) {
		m := compile(t, "reactor", agentbuild.CShared())
		if m.ABI() != protocol.ABIFabricV1 {
			t.Fatalf("ABI %s; want fabric-v1", m.ABI())
		}
		out := m.Run(ctx, inv("hello fabric world", time.Minute))
		if out.Err != nil || !strings.Contains(string(out.Output), `"words":3`) {
			t.Fatalf("reactor: %+v %q", out.Err, out.Output)
		}
		out = m.Run(ctx, inv("\xff\xfe", time.Minute))
		if out.Err == nil || out.Err.Code != protocol.CodeAgentError {
			t.Fatalf("reactor on invalid UTF-8: %+v; want agent_error", out.Err)
		}
	})
	t.Run("reactor reused", func(t *testing.T) {
		// The Go runtime in one instance serves task after task; after
		// an agent error the instance is replaced and the next task works.
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: "reactor", Wasm: agentbuild.Build(t, "examples/reactor", agentbuild.CShared()), ReuseInstances: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, in := range []string{"one", "two words", "\xff", "three word input", "four"} {
			out := m.Run(ctx, inv(in, time.Minute))
			if in == "\xff" {
				if out.Err == nil || out.Err.Code != protocol.CodeAgentError {
					t.Fatalf("task %d: %+v; want agent_error", i, out.Err)
				}
				continue
			}
			words := len(strings.Fields(in))
			if out.Err != nil || !strings.Contains(string(out.Output), fmt.Sprintf(`"words":%d}`, words)) {
				t.Fatalf("task %d (%q): %+v %q", i, in, out.Err, out.Output)
			}
			if (out.Instantiate > 0) != (i == 0 || i == 3) {
				t.Errorf("task %d: instantiate %s; want an instance made only by the first task and the one after the error", i, out.Instantiate)
			}
		}
		_ = m.Close(ctx)
	})
	t.Run("membomb quota", func(t *testing.T) {
		m := compile(t, "echo")
		in := inv(strings.Repeat("x", 64<<20), time.Minute) // the Go runtime needs memory for this
		in.MemoryLimitBytes = 16 << 20
		out := m.Run(ctx, in)
		if out.Err == nil || out.Err.Code != protocol.CodeMemoryLimit {
			t.Fatalf("a Go agent over its quota: %+v; want memory_limit", out.Err)
		}
	})
}
