package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
)

// TestDemo runs `fabricd demo` as `make demo` does, building the example
// agents from examples/ (agentbuild's cache), and checks that its account
// shows every kind of outcome the workload is made to produce.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs fabricd demo: builds the example agents and runs a workload")
	}
	cmd := exec.Command(fabricdtest.Binary(t), "demo", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "FABRIC_DATA=/nonexistent/must-not-be-used")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fabricd demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if stderr.Len() > 0 {
		t.Errorf("fabricd demo wrote on stderr (warnings or errors of fabricd):\n%s", stderr.String())
	}

	// Every event line: time, #seq, task, state, detail.
	eventLine := regexp.MustCompile(`(?m)^\s+\d+\.\d{3}s\s+#(\d+)\s+(\S+)\s+(queued|running|retrying|succeeded|failed|cancelled)\s+(.*)$`)
	states := map[string][]string{}
	details := map[string][]string{}
	for _, m := range eventLine.FindAllStringSubmatch(out, -1) {
		states[m[2]] = append(states[m[2]], m[3])
		details[m[2]] = append(details[m[2]], m[4])
	}
	last := func(task string) string {
		s := states[task]
		if len(s) == 0 {
			return "(no events)"
		}
		return s[len(s)-1]
	}
	for task, want := range map[string]string{
		"hello": "succeeded", "sort": "succeeded", "shout": "succeeded", "bad-op": "failed",
		"primes": "succeeded", "always-fails": "failed", "too-slow": "failed",
		"busy-1": "cancelled", "busy-2": "cancelled", "never-runs": "cancelled",
		"prio-background": "succeeded", "prio-low": "succeeded", "prio-normal": "succeeded",
		"prio-high": "succeeded", "prio-critical": "succeeded",
	} {
		if got := last(task); got != want {
			t.Errorf("task %s ended %s, want %s (its events: %v)", task, got, want, states[task])
		}
	}
	if got := last("coin-flip"); got != "succeeded" && got != "failed" {
		t.Errorf("coin-flip ended %s", got)
	}
	if got := strings.Join(states["always-fails"], " "); got != "queued running retrying running retrying running failed" {
		t.Errorf("always-fails went through %s, want two retries then failed", got)
	}
	if got := strings.Join(states["never-runs"], " "); got != "queued cancelled" {
		t.Errorf("never-runs went through %s, want queued cancelled", got)
	}
	progress := 0
	for _, d := range details["primes"] {
		if strings.Contains(d, "%") {
			progress++
		}
	}
	if progress == 0 {
		t.Errorf("no progress events for primes: %v", details["primes"])
	}

	for _, want := range []string{
		`output {"hello":"fabric"}`,
		`output [1,3,5,8]`,
		`agent_error: jsonxform: op: want one of`,
		`KPIs primes=148933`,
		`attempt 1 failed, agent_error: flaky: failing on purpose`,
		"task.get always-fails: failed after 3 attempts (max_retries 2); attempt_errors [agent_error, agent_error, agent_error]",
		"timeout: the task ran past its timeout of 500ms",
		"cancelled: cancelled by task.cancel while running",
		"cancelled: cancelled by task.cancel before it ran",
		"Started in order: critical, high, normal, low, background",
		"kpi.get over its",
		"Custom KPIs reported by agents (summed): primes=",
		"fabricd stopped cleanly.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	// agent.stats: a row per agent the workload used, with its tasks.
	for agent, tasks := range map[string]string{"cpu": "4", "echo": "7", "flaky": "2", "jsonxform": "3"} {
		row := regexp.MustCompile(`(?m)^\s+` + agent + `\s+` + tasks + `\s`)
		if !row.MatchString(out) {
			t.Errorf("agent.stats has no row for %s with %s tasks", agent, tasks)
		}
	}
	if t.Failed() {
		t.Logf("the demo's output:\n%s", out)
	}
}

func TestDemoArguments(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.wasm"), agentFile(t, "echo"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--agents", dir}, 1, "--agents " + dir + ": want the example agents cpu, echo, flaky, jsonxform there; missing cpu.wasm, flaky.wasm, jsonxform.wasm (run 'make agents')"},
		{[]string{"--workers", "0"}, 2, "--workers: want 1..4096; got 0"},
		{[]string{"--engine", "v8"}, 2, `--engine: want one of`},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--nope"}, 2, "flag provided but not defined: -nope"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"demo"}, c.args...), nil, &stdout, &stderr, env(nil))
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("demo %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}
