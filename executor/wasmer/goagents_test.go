//go:build wasmer

package wasmer

import (
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/agentbuild"
	"github.com/chimera-fabric/fabric/protocol"
)

// TestGoAgentsLikeWazero runs the example agents, real Go programs built for
// wasip1 whose runtime uses much of WASI (clocks, random, poll_oneoff,
// fd_fdstat_get...), on both engines and compares the outcomes.
func TestGoAgentsLikeWazero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go agents")
	}
	// Singlepass: this is about WASI, and it compiles a Go agent ten times
	// faster than Cranelift.
	e := newEngine(t, Options{Workers: 2, Compiler: CompilerSinglepass})
	z := newWazero(t)
	for _, c := range []struct {
		name   string
		opts   []agentbuild.Option
		caps   []string
		inputs []string
	}{
		{"echo", nil, nil, []string{"", "hello", strings.Repeat("x", 100_000)}},
		{"hello", nil, nil, []string{"world\n"}},
		{"jsonxform", nil, nil, []string{`{"op":"sort","data":[3,1,2]}`, `{"op":"shout","data":1}`, `not json`}},
		{"cpu", nil, nil, []string{`{"n": 10000}`, `-5`}},
		{"flaky", nil, nil, []string{``, `{"fail":"never"}`, `{"fail":"exit","exit_code":7,"message":"disk on fire"}`}},
		{"flaky", nil, []string{protocol.CapClock}, []string{`{"fail":"never"}`}},
		{"reactor", []agentbuild.Option{agentbuild.CShared()}, nil, []string{"", `{"x":1}`}},
	} {
		t.Run(c.name+strings.Join(c.caps, "+"), func(t *testing.T) {
			p := compileBoth(t, e, z, executor.ModuleSpec{
				Name: c.name, Wasm: agentbuild.Build(t, "examples/"+c.name, c.opts...), Capabilities: c.caps})
			for _, in := range c.inputs {
				inv := testInvocation([]byte(in))
				inv.Timeout = time.Minute
				got, want := p.run(inv)
				sameOutcome(t, "input "+in[:min(len(in), 40)], got, want)
			}
		})
	}
}
