package enginetest

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

func (s *suite) testEcho(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 16<<10) // 256 KiB: several reads and grows
	for _, agent := range []string{"echo", "echo_fabric"} {
		t.Run(agent, func(t *testing.T) {
			m := s.compile(t, agent, executor.ModuleSpec{})
			for _, in := range []string{"", "hello", `{"n": 42}`, big} {
				out := run(t, m, inv(in))
				wantOK(t, out, in)
			}
		})
	}
	t.Run("exit_zero", func(t *testing.T) {
		wantOK(t, run(t, s.compile(t, "exit_zero", executor.ModuleSpec{}), inv("")), "bye")
	})
	t.Run("reactor", func(t *testing.T) {
		wantOK(t, run(t, s.compile(t, "reactor", executor.ModuleSpec{}), inv("")), "init=1")
	})
}

func (s *suite) testFabric(t *testing.T) {
	t.Run("log and progress", func(t *testing.T) {
		var got []float64
		in := inv("abc")
		in.OnProgress = func(p float64) { got = append(got, p) }
		out := run(t, s.health, in)
		wantOK(t, out, "abc")
		if len(out.Logs) != 1 || out.Logs[0].Level != "info" || out.Logs[0].Msg != "echoing" || out.Logs[0].At.IsZero() {
			t.Fatalf("logs %+v; want one info line \"echoing\" with a time", out.Logs)
		}
		if out.LogsTruncated {
			t.Fatal("logs truncated")
		}
		if !reflect.DeepEqual(got, []float64{1}) {
			t.Fatalf("progress %v; want [1]", got)
		}
	})
	t.Run("kpi", func(t *testing.T) {
		out := run(t, s.compile(t, "kpi", executor.ModuleSpec{}), inv(""))
		wantOK(t, out, "")
		want := map[string]float64{"requests": 3.5, "latency_ms": 20}
		if !reflect.DeepEqual(out.KPIs, want) {
			t.Fatalf("kpis %v; want %v", out.KPIs, want)
		}
	})
	t.Run("progressflood", func(t *testing.T) {
		var n int
		lo, hi := math.Inf(1), math.Inf(-1)
		in := inv("")
		in.OnProgress = func(p float64) {
			n++
			lo, hi = min(lo, p), max(hi, p)
		}
		out := run(t, s.compile(t, "progressflood", executor.ModuleSpec{}), in)
		wantOK(t, out, "")
		// 200000 calls cycling -100..1099: the negative ones are ignored.
		const want = 200000 - 100*(200000/1200) - 100
		if n != want || lo != 0 || hi != 1 {
			t.Fatalf("progress called %d times over [%v, %v]; want %d times over [0, 1]", n, lo, hi, want)
		}
		s.healthy(t)
	})
	t.Run("logflood", func(t *testing.T) {
		in := inv("")
		in.LogLimitBytes = 4096
		out := run(t, s.compile(t, "logflood", executor.ModuleSpec{}), in)
		wantOK(t, out, "done")
		if !out.LogsTruncated {
			t.Fatal("logs not truncated")
		}
		var size int
		for _, l := range out.Logs {
			size += len(l.Msg) + executor.LogLineOverhead
		}
		if size > 4096 || len(out.Logs) < 4 {
			t.Fatalf("%d log lines costing %d bytes; want at least 4 lines within 4096", len(out.Logs), size)
		}
		body := strings.Repeat("l", 100)
		want := []protocol.LogLine{{Level: "debug", Msg: body}, {Level: "info", Msg: "stderr line"},
			{Level: "info", Msg: body}, {Level: "info", Msg: "stderr line"}}
		for i, w := range want {
			if out.Logs[i].Level != w.Level || out.Logs[i].Msg != w.Msg {
				t.Fatalf("log line %d: %s %q; want %s %q", i, out.Logs[i].Level, truncate([]byte(out.Logs[i].Msg)), w.Level, truncate([]byte(w.Msg)))
			}
		}
		s.healthy(t)
	})
}

func (s *suite) testFailures(t *testing.T) {
	t.Run("agent_error message", func(t *testing.T) {
		out := run(t, s.compile(t, "agent_error", executor.ModuleSpec{}), inv(""))
		wantErr(t, out, protocol.CodeAgentError)
		if out.Err.Message != "bad input: want a number" {
			t.Fatalf("message %q; want exactly the guest's error_write text", out.Err.Message)
		}
	})
	t.Run("agent_error return", func(t *testing.T) {
		wantErr(t, run(t, s.compile(t, "agent_error", executor.ModuleSpec{}), inv("x")), protocol.CodeAgentError, "7")
	})
	t.Run("exit_status", func(t *testing.T) {
		out := run(t, s.compile(t, "exit_status", executor.ModuleSpec{}), inv(""))
		wantErr(t, out, protocol.CodeExitStatus, "exit status 3", "second line")
		var lines []string
		for _, l := range out.Logs {
			if l.Level != "info" {
				t.Errorf("stderr line at level %s; want info", l.Level)
			}
			lines = append(lines, l.Msg)
		}
		if !reflect.DeepEqual(lines, []string{"first", "second line"}) {
			t.Fatalf("logs %q; want the two stderr lines", lines)
		}
	})
	t.Run("trap", func(t *testing.T) {
		wantErr(t, run(t, s.compile(t, "trap", executor.ModuleSpec{}), inv("")), protocol.CodeTrap, "unreachable")
		s.healthy(t)
	})
	t.Run("recurse", func(t *testing.T) {
		wantErr(t, run(t, s.compile(t, "recurse", executor.ModuleSpec{}), inv("")), protocol.CodeTrap, "stack")
		s.healthy(t)
	})
}

func (s *suite) testLimits(t *testing.T) {
	const mib = 1 << 20
	t.Run("membomb", func(t *testing.T) {
		in := inv("")
		in.MemoryLimitBytes = 8 * mib
		out := run(t, s.compile(t, "membomb", executor.ModuleSpec{}), in)
		wantErr(t, out, protocol.CodeMemoryLimit)
		if p := out.Usage.MemoryPeakMB; p < 4 || p > 8 {
			t.Fatalf("memory_peak_mb %v; want within (4, 8]", p)
		}
		s.healthy(t)
	})
	t.Run("bigmem over quota", func(t *testing.T) {
		in := inv("")
		in.MemoryLimitBytes = 4 * mib
		wantErr(t, run(t, s.compile(t, "bigmem", executor.ModuleSpec{}), in), protocol.CodeMemoryLimit)
		s.healthy(t)
	})
	t.Run("bigmem within quota", func(t *testing.T) {
		out := run(t, s.compile(t, "bigmem", executor.ModuleSpec{}), inv(""))
		wantOK(t, out, "")
		if out.Usage.MemoryPeakMB != 10 {
			t.Fatalf("memory_peak_mb %v; want 10", out.Usage.MemoryPeakMB)
		}
	})
	for _, agent := range []string{"outflood", "outflood_fabric"} {
		t.Run(agent, func(t *testing.T) {
			in := inv("")
			in.OutputLimitBytes = 100000
			out := run(t, s.compile(t, agent, executor.ModuleSpec{}), in)
			wantErr(t, out, protocol.CodeOutputLimit)
			if len(out.Output) > 100000 {
				t.Fatalf("kept %d bytes of output; want at most the limit", len(out.Output))
			}
			s.healthy(t)
		})
	}
}

func (s *suite) testWASI(t *testing.T) {
	out := run(t, s.compile(t, "wasi_probe", executor.ModuleSpec{Name: "probe"}), inv("stdin is not a directory"))
	if out.Err != nil {
		t.Fatalf("wasi_probe: %s: %s", out.Err.Code, out.Err.Message)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out.Output)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for _, probe := range []string{"prestat", "open", "openabs", "read", "write", "sock"} {
		if v, ok := got[probe]; !ok || v == "0" {
			t.Errorf("%s: errno %q; want a non-zero errno (the guest must reach nothing)", probe, v)
		}
	}
	if got["environ"] != "0" {
		t.Errorf("environ: %q variables; want 0", got["environ"])
	}
	if got["args"] != "0" && got["args"] != "1" {
		t.Errorf("args: %q; want at most argv[0]", got["args"])
	}
}

func (s *suite) testIsolation(t *testing.T) {
	t.Run("counter sequential", func(t *testing.T) {
		m := s.compile(t, "counter", executor.ModuleSpec{})
		for i := 0; i < 3; i++ {
			wantOK(t, run(t, m, inv("")), "g=1 m=1")
		}
	})
	t.Run("sequential after every ending", func(t *testing.T) {
		// Without ReuseInstances every task sees a fresh instance, however
		// the one before it ended (an engine may reset an instance in
		// place, which must look the same).
		m, err := s.eng.Compile(t.Context(), executor.ModuleSpec{Name: "stateful", Wasm: StatefulAgent(t)})
		if err != nil {
			t.Fatalf("Compile(stateful): %v", err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		for _, c := range []struct{ input, code, output string }{
			{"n", "", "g=1 m=1 p=1"}, {"n", "", "g=1 m=1 p=1"},
			{"e", protocol.CodeAgentError, ""}, {"n", "", "g=1 m=1 p=1"},
			{"r", protocol.CodeAgentError, ""}, {"n", "", "g=1 m=1 p=1"},
			{"t", protocol.CodeTrap, ""}, {"n", "", "g=1 m=1 p=1"},
			{"g", "", "g=1 m=1 p=33"}, {"n", "", "g=1 m=1 p=1"},
			{"x", "", ""}, {"n", "", "g=1 m=1 p=1"},
		} {
			out := run(t, m, inv(c.input))
			if c.code != "" {
				wantErr(t, out, c.code)
			} else if c.output != "" {
				wantOK(t, out, c.output)
			}
		}
	})
	t.Run("counter concurrent", func(t *testing.T) {
		// Both runs are held inside the guest (at their progress call) until
		// both got there, so they certainly overlap.
		m := s.compile(t, "counter", executor.ModuleSpec{})
		outs := runOverlapping(t, m, inv(""))
		for _, out := range outs {
			wantOK(t, out, "g=1 m=1")
		}
	})
	t.Run("many concurrent", func(t *testing.T) {
		mods := []executor.Module{s.compile(t, "echo", executor.ModuleSpec{}), s.health}
		var wg sync.WaitGroup
		errs := make(chan string, 16)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				input := strings.Repeat(string(rune('a'+i)), 1000*(i+1))
				out := mods[i%2].Run(t.Context(), inv(input))
				if out.Err != nil || !bytes.Equal(out.Output, []byte(input)) {
					errs <- "a concurrent run did not get its own output"
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
	})
}

// runOverlapping runs in twice at once on m, each run held at its first
// progress call until both got there, so that the two certainly overlap.
func runOverlapping(t *testing.T, m executor.Module, in executor.Invocation) []executor.Outcome {
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	outs := make([]executor.Outcome, 2)
	var done sync.WaitGroup
	for i := range outs {
		done.Add(1)
		go func() {
			defer done.Done()
			in := in
			in.OnProgress = func(float64) {
				arrived.Done()
				<-both
			}
			outs[i] = m.Run(t.Context(), in)
		}()
	}
	done.Wait()
	return outs
}
