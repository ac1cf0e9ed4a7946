package enginetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// StatefulAgent returns executor/testdata/agents/stateful.wasm: a fabric-v1
// agent that counts its runs in a global and in memory and fails on demand
// (see its .wat), for the tests of ModuleSpec.ReuseInstances.
func StatefulAgent(t testing.TB) []byte {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("enginetest: cannot locate its own source file")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "agents", "stateful.wasm"))
	if err != nil {
		t.Fatalf("stateful agent: %v", err)
	}
	return b
}

// testReuse holds every engine to what ModuleSpec.ReuseInstances promises
// whether the engine reuses instances or runs every task fresh: it is for
// fabric-v1 only; a run that failed in any way leaves no state behind; an
// instance whose memory is over a task's quota does not run it; each task
// has its own output and limits; two runs never share an instance.
func (s *suite) testReuse(t *testing.T) {
	compile := func(t *testing.T) executor.Module {
		t.Helper()
		m, err := s.eng.Compile(context.Background(), executor.ModuleSpec{Name: "stateful", Wasm: StatefulAgent(t), ReuseInstances: true})
		if err != nil {
			t.Fatalf("Compile(stateful, ReuseInstances): %v", err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		return m
	}
	t.Run("wasi-command refused", func(t *testing.T) {
		_, err := s.eng.Compile(context.Background(), executor.ModuleSpec{Name: "echo", Wasm: Agent(t, "echo"), ReuseInstances: true})
		if !errors.Is(err, protocol.ErrInvalidParams) || !strings.Contains(err.Error(), "reuse_instances") {
			t.Fatalf("a wasi-command with ReuseInstances: %v; want ErrInvalidParams naming reuse_instances", err)
		}
	})
	// After each way of failing, the next task runs in a fresh instance.
	for _, c := range []struct {
		name  string
		input string
		code  string
		inv   func(*executor.Invocation)
	}{
		{"trap", "t", protocol.CodeTrap, nil},
		{"timeout", "l", protocol.CodeTimeout, func(in *executor.Invocation) { in.Timeout = 50 * time.Millisecond }},
		{"error_write", "e", protocol.CodeAgentError, nil},
		{"non-zero return", "r", protocol.CodeAgentError, nil},
		{"output limit", "n", protocol.CodeOutputLimit, func(in *executor.Invocation) { in.OutputLimitBytes = 3 }},
		{"proc_exit", "x", "", nil},
	} {
		t.Run("fresh after "+c.name, func(t *testing.T) {
			m := compile(t)
			wantOK(t, run(t, m, inv("n")), "g=1 m=1 p=1")
			in := inv(c.input)
			if c.inv != nil {
				c.inv(&in)
			}
			out := run(t, m, in)
			if c.code == "" {
				if out.Err != nil {
					t.Fatalf("outcome %s: %s; want success", out.Err.Code, out.Err.Message)
				}
			} else {
				wantErr(t, out, c.code)
			}
			wantOK(t, run(t, m, inv("n")), "g=1 m=1 p=1")
		})
	}
	t.Run("fresh after cancel", func(t *testing.T) {
		m := compile(t)
		wantOK(t, run(t, m, inv("n")), "g=1 m=1 p=1")
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		wantErr(t, runCtx(ctx, t, m, inv("l")), protocol.CodeCancelled)
		wantOK(t, run(t, m, inv("n")), "g=1 m=1 p=1")
	})
	t.Run("memory over the quota", func(t *testing.T) {
		m := compile(t)
		out := run(t, m, inv("g")) // 33 pages
		if out.Err != nil || (string(out.Output) != "g=1 m=1 p=33") {
			t.Fatalf("grow: %+v %q", out.Err, out.Output)
		}
		small := inv("n")
		small.MemoryLimitBytes = 1 << 20 // 16 pages: the grown instance does not fit
		wantOK(t, run(t, m, small), "g=1 m=1 p=1")
		// A refused grow is the guest's business: the run succeeds.
		grow := inv("g")
		grow.MemoryLimitBytes = 1 << 20
		if out := run(t, m, grow); out.Err != nil || !strings.HasSuffix(string(out.Output), " p=1") {
			t.Fatalf("a refused grow: %+v %q; want success at 1 page", out.Err, out.Output)
		}
	})
	t.Run("own output", func(t *testing.T) {
		m := compile(t)
		for range 3 {
			out := run(t, m, inv("n"))
			if out.Err != nil || !strings.HasPrefix(string(out.Output), "g=") || strings.Count(string(out.Output), "g=") != 1 {
				t.Fatalf("outcome %+v, output %q; want one task's own output", out.Err, out.Output)
			}
		}
	})
	t.Run("overlapping", func(t *testing.T) {
		// Two runs held at their progress call until both got there: an
		// instance shared by them would see its global change under the
		// first and trap.
		m := compile(t)
		wantOK(t, run(t, m, inv("n")), "g=1 m=1 p=1") // an idle instance, on an engine that keeps one
		outs := runOverlapping(t, m, inv("p"))
		for _, out := range outs {
			if out.Err != nil {
				t.Fatalf("overlapping runs: %s: %s", out.Err.Code, out.Err.Message)
			}
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		// Many runs that yield inside the guest: none may share an instance.
		m := compile(t)
		const workers, tasks = 6, 20
		var wg sync.WaitGroup
		errs := make(chan error, workers*tasks)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range tasks {
					in := inv("p")
					in.OnProgress = func(float64) { runtime.Gosched() }
					if out := m.Run(context.Background(), in); out.Err != nil {
						errs <- fmt.Errorf("%s: %s", out.Err.Code, out.Err.Message)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
}
