package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/internal/loadgen"
)

// The smoke of `fabric bench` and `fabric soak` that CI runs: short loads
// against a real fabricd, asserting correctness only (every task completed,
// no errors, the right counts), never a timing.

var (
	benchEcho  = filepath.Join("..", "..", "bench", "agents", "echo.wasm")
	agentError = filepath.Join("..", "..", "testdata", "agents", "agent_error.wasm")
)

// reports decodes bench --json's lines.
func reports(t *testing.T, stdout string) []loadgen.Report {
	t.Helper()
	var out []loadgen.Report
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var r loadgen.Report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bench --json line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t)
	env := srv.env()

	t.Run("every mode", func(t *testing.T) {
		r := fabric(t, env, "bench", "--register", "echo="+benchEcho, "--json",
			"--mode", "submit-wait,submit-subscribe,submit,health,echo", "--count", "200", "--connections", "2", "--in-flight", "4")
		r.check(t, 0, nil, nil)
		reps := reports(t, r.stdout)
		if len(reps) != 5 {
			t.Fatalf("%d reports; want 5:\n%s", len(reps), r.stdout)
		}
		for _, rep := range reps {
			if !rep.OK() || rep.Ops != 200 {
				t.Errorf("%s: %d ops, problem %q; want 200 and none", rep.Mode, rep.Ops, rep.Problem())
			}
			if rep.Mode == loadgen.ModeSubmitWait || rep.Mode == loadgen.ModeSubmitSubscribe || rep.Mode == loadgen.ModeSubmit {
				if rep.Submitted != 200 || rep.ServerCPUUsPerOp == nil {
					t.Errorf("%s: submitted %d, server cpu %v; want 200 and measured", rep.Mode, rep.Submitted, rep.ServerCPUUsPerOp)
				}
			}
		}
	})

	t.Run("batches, a mix and priorities", func(t *testing.T) {
		r := fabric(t, env, "bench", "--register", "echo="+benchEcho, "--register", "echo2="+benchEcho,
			"--mode", "submit-wait,submit-subscribe,health", "--count", "150", "--batch", "8", "--mix", "echo:3,echo2:1",
			"--priority", "high,normal,low", "--input-size", "300")
		r.check(t, 0, []string{"submit-wait: 4 connections x 8 in flight, batch 8, mix echo:3,echo2:1, input 300 B",
			"150 submitted, 150 succeeded, 0 failed, 0 incomplete", "side by side (ratio to submit-wait)"}, nil)
	})

	t.Run("idle connections", func(t *testing.T) {
		r := fabric(t, env, "bench", "--register", "echo="+benchEcho, "--json", "--mode", "health",
			"--idle-connections", "50", "--count", "100")
		r.check(t, 0, nil, nil)
		rep := reports(t, r.stdout)[0]
		if !rep.OK() || rep.Idle == nil || rep.Idle.Connections != 50 || rep.Idle.GoroutinesPerConn < 2 {
			t.Errorf("%+v, idle %+v, server %+v; want 50 idle connections, each with its goroutines on the server", rep, rep.Idle, rep.ServerAfter)
		}
	})

	t.Run("a failing agent", func(t *testing.T) {
		r := fabric(t, env, "bench", "--register", "failing="+agentError, "--agent", "failing", "--max-retries", "0",
			"--count", "20", "--json")
		r.check(t, 1, nil, []string{"20 tasks failed (agent_error=20)"})
		if reps := reports(t, r.stdout); reps[0].Failed != 20 || reps[0].Ops != 0 {
			t.Errorf("%+v; want 20 failed", reps[0])
		}
	})

	t.Run("an unknown agent", func(t *testing.T) {
		r := fabric(t, env, "bench", "--agent", "nosuch", "--count", "5")
		r.check(t, 1, []string{"errors: -32001=5"}, []string{"errors -32001=5", `agent "nosuch"`})
	})

	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--mode", "fast"}, "--mode: want one of"},
			{[]string{"--mix", "echo:0"}, "--mix:"},
			{[]string{"--agent-input", "cpu=1"}, `agent "cpu" is not in the mix`},
			{[]string{"--count", "5", "--duration", "1s"}, "give one"},
			{[]string{"--priority", "urgent"}, "--priority: want one of"},
			{[]string{"--batch", "0"}, "--batch: want >= 1; got 0"},
			{[]string{"--batch", "20000"}, "batch: want 1..10000"},
			{[]string{"--register", "echo"}, "--register: want NAME=FILE.wasm"},
		} {
			r := fabric(t, env, append([]string{"bench"}, tc.args...)...)
			r.check(t, 2, nil, []string{tc.want})
		}
	})
}

// Overloads are honoured, not errors: a connection cap far below the
// workers' demand makes the server answer -32002, and every task still
// completes.
func TestBenchOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t, "--max-in-flight", "2")
	r := fabric(t, srv.env(), "bench", "--register", "echo="+benchEcho, "--json",
		"--connections", "1", "--in-flight", "8", "--count", "100")
	r.check(t, 0, nil, nil)
	rep := reports(t, r.stdout)[0]
	if !rep.OK() || rep.Ops != 100 {
		t.Errorf("%+v; want 100 tasks done", rep)
	}
	t.Logf("%d overloads, %d ms waited", rep.Overloads, rep.OverloadWaitMs)
}

func TestSoakSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	check := func(t *testing.T, r result, store bool) {
		t.Helper()
		r.check(t, 0, nil, nil)
		var rep loadgen.SoakReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("soak --json: %v\n%s", err, r.stdout)
		}
		if !rep.OK || !rep.Load.OK() || rep.Load.Ops == 0 || len(rep.Samples) < 6 {
			t.Errorf("ok %v, load %+v, %d samples; want ok, tasks done, >= 6 samples", rep.OK, rep.Load, len(rep.Samples))
		}
		metrics := map[string]bool{}
		for _, c := range rep.Checks {
			metrics[c.Metric] = true
		}
		for _, m := range []string{"rss_bytes", "goroutines", "open_fds", "goroutines_after", "open_fds_after"} {
			if !metrics[m] {
				t.Errorf("no check of %s: %+v", m, rep.Checks)
			}
		}
		if metrics["store_bytes"] != store || (store && rep.Samples[0].StoreBytes == 0) {
			t.Errorf("store checked %v (first sample %v); want %v", metrics["store_bytes"], rep.Samples[0].StoreBytes, store)
		}
	}
	// The smoke's tolerance is wide: a few seconds of a young process are
	// no measure of a leak, only of the soak working end to end.
	args := []string{"soak", "--register", "echo=" + benchEcho, "--json", "--duration", "3s", "--sample", "200ms",
		"--warmup", "600ms", "--tolerance", "10", "--connections", "2", "--in-flight", "2"}

	t.Run("memory", func(t *testing.T) {
		srv := startServer(t)
		check(t, fabric(t, srv.env(), append(args, "--mode", "submit-subscribe")...), false)
	})
	t.Run("durable", func(t *testing.T) {
		dir := t.TempDir()
		srv := fabricdtest.Start(t, "--data", dir, "--workers", "2")
		check(t, fabric(t, map[string]string{"FABRIC_URL": srv.URL}, append(args, "--data", dir)...), true)
	})
	t.Run("usage", func(t *testing.T) {
		srv := startServer(t)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--count", "5"}, "a soak runs for --duration"},
			{[]string{"--mode", "echo"}, "a soak takes one of"},
			{[]string{"--duration", "1s", "--warmup", "2s"}, "--warmup: want 0..1s"},
			{[]string{"--sample", "0s"}, "--sample: want a duration > 0"},
		} {
			r := fabric(t, srv.env(), append([]string{"soak"}, tc.args...)...)
			r.check(t, 2, nil, []string{tc.want})
		}
		// Too short for its samples: refused before any load.
		r := fabric(t, srv.env(), "soak", "--duration", "1s", "--sample", "1s")
		r.check(t, 2, nil, []string{"want at least 6"})
	})
}
