//go:build wasmer

package wasmer

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/internal/agentbuild"
	"github.com/chimera-fabric/fabric/protocol"
)

func benchInv(input []byte, timeout time.Duration) executor.Invocation {
	return executor.Invocation{
		Input:            input,
		Timeout:          timeout,
		MemoryLimitBytes: 64 << 20,
		OutputLimitBytes: 1 << 20,
		LogLimitBytes:    64 << 10,
	}
}

// BenchmarkCompile compiles a small hand-written agent and a Go agent
// (examples/echo, some 2 MB of wasm): inspection, instrumentation, a round
// trip to a worker, Cranelift, and the artifact's serialization.
func BenchmarkCompile(b *testing.B) {
	for _, c := range []struct {
		name string
		wasm func(b *testing.B) []byte
	}{
		{"hostabuse", func(b *testing.B) []byte { return enginetest.Agent(b, "hostabuse") }},
		{"go-echo", func(b *testing.B) []byte { return agentbuild.Build(b, "examples/echo") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			wasm := c.wasm(b)
			e := newEngine(b, Options{Workers: 1})
			ctx := context.Background()
			b.SetBytes(int64(len(wasm)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m, err := e.Compile(ctx, executor.ModuleSpec{Name: c.name, Wasm: wasm})
				if err != nil {
					b.Fatal(err)
				}
				_ = m.Close(ctx)
			}
		})
	}
}

// BenchmarkRunTiny is one task of a tiny agent: a round trip to a worker,
// instantiation, the call on the worker's guest thread, the events and the outcome.
func BenchmarkRunTiny(b *testing.B) {
	for _, agent := range []string{"noop", "echo_fabric", "echo"} {
		b.Run(agent, func(b *testing.B) {
			e := newEngine(b, Options{Workers: 1})
			m := compileAgent(b, e, agent)
			in := benchInv([]byte("hello"), 0)
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

// BenchmarkSpin runs a CPU loop of 10M iterations with and without a
// timeout (which costs the guest nothing here: the parent kills the worker)
// and metered (wasmer's metering middleware).
func BenchmarkSpin(b *testing.B) {
	const n = 10_000_000
	input := binary.LittleEndian.AppendUint32(nil, n)
	for _, c := range []struct {
		name    string
		timeout time.Duration
		fuel    uint64
	}{{"no-timeout", 0, 0}, {"timeout", time.Minute, 0}, {"fuel", 0, 1 << 40}} {
		b.Run(c.name, func(b *testing.B) {
			e := newEngine(b, Options{Workers: 1})
			m := compileAgent(b, e, "spin")
			in := benchInv(input, c.timeout)
			in.Fuel = c.fuel
			ctx := context.Background()
			if out := m.Run(ctx, in); out.Err != nil { // compiles the metered variant
				b.Fatal(out.Err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out := m.Run(ctx, in); out.Err != nil {
					b.Fatal(out.Err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/iter")
		})
	}
}

// BenchmarkTimeout is a task stopped at a 1 ms timeout: the worker is
// killed, and the next task waits for its replacement to start (one worker,
// so every iteration pays for a whole restart).
func BenchmarkTimeout(b *testing.B) {
	e := newEngine(b, Options{Workers: 1})
	loop := compileAgent(b, e, "loop")
	noop := compileAgent(b, e, "noop")
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out := loop.Run(ctx, benchInv(nil, time.Millisecond)); out.Err == nil || out.Err.Code != protocol.CodeTimeout {
			b.Fatalf("loop: %v; want timeout", out.Err)
		}
		if out := noop.Run(ctx, benchInv(nil, 0)); out.Err != nil {
			b.Fatal(out.Err)
		}
	}
}
