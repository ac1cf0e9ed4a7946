package executor

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// testAgent reads a test agent's module: this package's own
// (testdata/agents) or the conformance suite's (../testdata/agents).
func testAgent(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const statefulPath = "testdata/agents/stateful.wasm"

// The wazero engine's instance reuse (ModuleSpec.ReuseInstances): what a
// reused instance keeps, what each task gets of its own, and the bounds of
// the idle instances. enginetest's Reuse cases hold it to what every engine
// must do; these hold it to reusing. (An internal test cannot import
// enginetest, which imports this package.)

func reuseEngine(t testing.TB, opts WazeroOptions) *Wazero {
	t.Helper()
	e, err := NewWazero(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func compileStateful(t *testing.T, e *Wazero, reuse bool) *wazeroModule {
	t.Helper()
	m, err := e.Compile(context.Background(), ModuleSpec{Name: "stateful", Wasm: testAgent(t, statefulPath), ReuseInstances: reuse})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m.(*wazeroModule)
}

func reuseInv(input string) Invocation {
	return Invocation{
		Input: []byte(input), Timeout: 10 * time.Second, MemoryLimitBytes: 64 << 20,
		OutputLimitBytes: 1 << 10, LogLimitBytes: 1 << 10, Seed: 7,
	}
}

func wantOutput(t *testing.T, out Outcome, want string) {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("outcome %s: %s; want %q", out.Err.Code, out.Err.Message, want)
	}
	if string(out.Output) != want {
		t.Fatalf("output %q; want %q", out.Output, want)
	}
}

// TestReuseSharesState: with reuse, sequential tasks run in one instance
// and see its global and memory; without, each starts afresh (in an
// instance reset in place to its state after instantiation, kept idle in
// between: see reset_test.go).
func TestReuseSharesState(t *testing.T) {
	e := reuseEngine(t, WazeroOptions{})
	fresh, reused := compileStateful(t, e, false), compileStateful(t, e, true)
	for i := 1; i <= 3; i++ {
		wantOutput(t, fresh.Run(context.Background(), reuseInv("n")), "g=1 m=1 p=1")
		out := reused.Run(context.Background(), reuseInv("n"))
		wantOutput(t, out, fmt.Sprintf("g=%d m=%d p=1", i, i))
		if (out.Instantiate > 0) != (i == 1) {
			t.Errorf("task %d: instantiate %s; want it measured only in the task that made the instance", i, out.Instantiate)
		}
	}
	if len(fresh.idle) != 1 || len(reused.idle) != 1 || !fresh.reset || reused.reset {
		t.Fatalf("idle instances: %d without reuse (reset %v), %d with (reset %v); want 1 and 1, reset only without reuse",
			len(fresh.idle), fresh.reset, len(reused.idle), reused.reset)
	}
}

// TestReusePerTask: a reused instance's task has its own seeded random
// source and memory_peak_mb, and the fake clock goes on from the last task.
func TestReusePerTask(t *testing.T) {
	e := reuseEngine(t, WazeroOptions{})
	m := compileStateful(t, e, true)
	ctx := context.Background()

	first := m.Run(ctx, reuseInv("R"))
	second := m.Run(ctx, reuseInv("R"))
	r1, r2 := string(first.Output), string(second.Output)
	if first.Err != nil || second.Err != nil || !strings.HasPrefix(r1, "g=1 ") || !strings.HasPrefix(r2, "g=2 ") ||
		r1[strings.Index(r1, " R="):] != r2[strings.Index(r2, " R="):] {
		t.Fatalf("random: %q then %q (%v, %v); want the same bytes from the same seed in one instance", r1, r2, first.Err, second.Err)
	}

	c1 := m.Run(ctx, reuseInv("c"))
	c2 := m.Run(ctx, reuseInv("c"))
	var g1, g2, ms1, ms2 int
	if _, err := fmt.Sscanf(string(c1.Output), "g=%d m=%d p=1 c=%d", &g1, new(int), &ms1); err != nil {
		t.Fatalf("clock: %q: %v", c1.Output, err)
	}
	if _, err := fmt.Sscanf(string(c2.Output), "g=%d m=%d p=1 c=%d", &g2, new(int), &ms2); err != nil {
		t.Fatalf("clock: %q: %v", c2.Output, err)
	}
	if g2 != g1+1 || ms2 <= ms1 {
		t.Fatalf("clock: %q then %q; want the monotonic clock to go on in one instance", c1.Output, c2.Output)
	}

	grow := m.Run(ctx, reuseInv("g"))
	after := m.Run(ctx, reuseInv("n"))
	const grown = 33 * WasmPageSize / float64(1<<20)
	if grow.Err != nil || after.Err != nil || grow.Usage.MemoryPeakMB != grown || after.Usage.MemoryPeakMB != grown {
		t.Fatalf("memory_peak_mb %v then %v (%v, %v); want %v: the memory's size while each task ran",
			grow.Usage.MemoryPeakMB, after.Usage.MemoryPeakMB, grow.Err, after.Err, grown)
	}
}

// TestReuseIdleBounds: at most MaxIdleInstances idle instances per module,
// none past MaxIdleMemoryBytes in all, and closing the module or the engine
// closes them and hands their memory back.
func TestReuseIdleBounds(t *testing.T) {
	ctx := context.Background()
	t.Run("count", func(t *testing.T) {
		e := reuseEngine(t, WazeroOptions{MaxIdleInstances: 1})
		m := compileStateful(t, e, true)
		var arrived sync.WaitGroup
		arrived.Add(2)
		both := make(chan struct{})
		go func() { arrived.Wait(); close(both) }()
		var done sync.WaitGroup
		for range 2 {
			done.Add(1)
			go func() {
				defer done.Done()
				in := reuseInv("p")
				in.OnProgress = func(float64) { arrived.Done(); <-both }
				if out := m.Run(ctx, in); out.Err != nil {
					t.Errorf("%s: %s", out.Err.Code, out.Err.Message)
				}
			}()
		}
		done.Wait()
		if len(m.idle) != 1 || len(m.shells) != 1 {
			t.Fatalf("after two overlapping runs: %d idle instances, %d idle shells; want 1 and 1", len(m.idle), len(m.shells))
		}
		wantOutput(t, m.Run(ctx, reuseInv("n")), "g=2 m=2 p=1")
	})
	t.Run("memory", func(t *testing.T) {
		e := reuseEngine(t, WazeroOptions{MaxIdleMemoryBytes: 1 << 20})
		m := compileStateful(t, e, true)
		wantOutput(t, m.Run(ctx, reuseInv("n")), "g=1 m=1 p=1")
		wantOutput(t, m.Run(ctx, reuseInv("g")), "g=2 m=2 p=33") // 2 MiB: not kept
		wantOutput(t, m.Run(ctx, reuseInv("n")), "g=1 m=1 p=1")
		if got := e.idleBytes.Load(); got != WasmPageSize {
			t.Fatalf("idle bytes %d; want one page", got)
		}
	})
	t.Run("module close", func(t *testing.T) {
		e := reuseEngine(t, WazeroOptions{})
		m := compileStateful(t, e, true)
		wantOutput(t, m.Run(ctx, reuseInv("n")), "g=1 m=1 p=1")
		if err := m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if len(m.idle) != 0 || len(m.shells) != 0 || e.idleBytes.Load() != 0 {
			t.Fatalf("after Close: %d idle instances, %d shells, %d idle bytes; want none", len(m.idle), len(m.shells), e.idleBytes.Load())
		}
		if out := m.Run(ctx, reuseInv("n")); out.Err == nil || out.Err.Code != protocol.CodeAgentMissing {
			t.Fatalf("a run after Close: %+v; want agent_missing", out.Err)
		}
	})
	t.Run("engine close", func(t *testing.T) {
		e, err := NewWazero(WazeroOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := e.Compile(ctx, ModuleSpec{Name: "stateful", Wasm: testAgent(t, statefulPath), ReuseInstances: true})
		if err != nil {
			t.Fatal(err)
		}
		wantOutput(t, m.Run(ctx, reuseInv("n")), "g=1 m=1 p=1")
		if err := e.Close(ctx); err != nil {
			t.Fatal(err)
		}
		wm := m.(*wazeroModule)
		if len(wm.idle) != 0 || e.idleBytes.Load() != 0 {
			t.Fatalf("after the engine's Close: %d idle instances, %d idle bytes; want none", len(wm.idle), e.idleBytes.Load())
		}
		_ = m.Close(ctx)
	})
}

// TestReuseRefusedForWASI: CheckModule refuses ReuseInstances for a
// wasi-command, naming the field.
func TestReuseRefusedForWASI(t *testing.T) {
	e := reuseEngine(t, WazeroOptions{})
	_, err := e.Compile(context.Background(), ModuleSpec{Name: "echo", Wasm: testAgent(t, "../testdata/agents/echo.wasm"), ReuseInstances: true})
	if err == nil || !strings.Contains(err.Error(), "reuse_instances: want a fabric-v1 module; this one is wasi-command") {
		t.Fatalf("Compile: %v", err)
	}
}
