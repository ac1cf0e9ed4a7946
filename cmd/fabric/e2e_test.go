package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/agentbuild"
)

// step is one CLI run of an end-to-end scenario. In args, {NAME} is replaced
// by what an earlier step saved under NAME (its stdout, trimmed).
type step struct {
	name   string
	args   []string
	code   int
	stdout []string // substrings stdout must hold ({NAME} replaced too)
	stderr []string
	save   string
}

func runSteps(t *testing.T, env map[string]string, vars map[string]string, steps []step) {
	t.Helper()
	for _, st := range steps {
		var kv []string
		for k, v := range vars {
			kv = append(kv, "{"+k+"}", v)
		}
		rep := strings.NewReplacer(kv...)
		args := make([]string, len(st.args))
		for i, a := range st.args {
			args[i] = rep.Replace(a)
		}
		subst := func(ss []string) []string {
			out := make([]string, len(ss))
			for i, s := range ss {
				out[i] = rep.Replace(s)
			}
			return out
		}
		ok := t.Run(st.name, func(t *testing.T) {
			for _, a := range args {
				if v := unsetVar.FindString(a); v != "" {
					t.Skipf("%s is not set: the step that saves it did not run", v)
				}
			}
			r := fabric(t, env, args...)
			r.check(t, st.code, subst(st.stdout), subst(st.stderr))
			if st.save != "" {
				vars[st.save] = strings.TrimSpace(r.stdout)
			}
		})
		if !ok && st.save != "" {
			t.Fatalf("step %q failed; later steps need its %s", st.name, st.save)
		}
	}
}

// agents builds the example agents the scenarios use and returns their
// module files, and a file that is not WebAssembly.
func agents(t *testing.T) map[string]string {
	t.Helper()
	notWasm := filepath.Join(t.TempDir(), "not.wasm")
	if err := os.WriteFile(notWasm, []byte("hello, I am text"), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"ECHO":    agentbuild.BuildFile(t, "examples/echo"),
		"CPU":     agentbuild.BuildFile(t, "examples/cpu"),
		"FLAKY":   agentbuild.BuildFile(t, "examples/flaky"),
		"REACTOR": agentbuild.BuildFile(t, "examples/reactor", agentbuild.CShared()),
		"NOTWASM": notWasm,
	}
}

var unsetVar = regexp.MustCompile(`\{[A-Z0-9]+\}`)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestEndToEnd runs every command against a real fabricd and checks output
// and exit status, in the order a user would: register, submit, inspect,
// cancel, list, stats, remove.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t)
	vars := agents(t)
	runSteps(t, srv.env(), vars, []step{
		{name: "health", args: []string{"health"}, stdout: []string{"status", "ok", "engine", "wazero"}},
		{name: "health json", args: []string{"health", "--json"}, stdout: []string{`"status":"ok"`, `"engine":"wazero"`}},
		{name: "no agents", args: []string{"agent", "list"}, stdout: []string{"no agents registered"}},
		{name: "register echo", args: []string{"agent", "register", "echo", "{ECHO}"}, stdout: []string{"registered agent echo (wasi-command,", "sha256:"}},
		{name: "register the same again", args: []string{"agent", "register", "echo", "{ECHO}"}, stdout: []string{"registered agent echo"}},
		{name: "register other bytes under the name", args: []string{"agent", "register", "echo", "{CPU}"}, code: 5, stderr: []string{"conflict", "(code -32006)"}},
		{name: "register cpu", args: []string{"agent", "register", "cpu", "{CPU}", "--cap", "clock", "--memory-mb", "128"}, stdout: []string{"registered agent cpu"}},
		{name: "register flaky", args: []string{"agent", "register", "--json", "flaky", "{FLAKY}", "--timeout-ms", "60000", "--cap", "random,clock"}, stdout: []string{`"name":"flaky"`, `"timeout_ms":60000`, `"random"`}},
		{name: "register reused", args: []string{"agent", "register", "reactor", "{REACTOR}", "--reuse-instances"}, stdout: []string{"registered agent reactor (fabric-v1,"}},
		{name: "get reused", args: []string{"agent", "get", "reactor", "--json"}, stdout: []string{`"reuse_instances":true`}},
		{name: "run reused", args: []string{"task", "submit", "reactor", "--input-base64", "aGVsbG8gd29ybGQ=", "--wait"}, stdout: []string{"succeeded", `"words": 2`}},
		{name: "run reused again", args: []string{"task", "submit", "reactor", "--input-base64", "b25l", "--wait"}, stdout: []string{"succeeded", `"bytes": 3`, `"words": 1`}},
		{name: "reuse a command", args: []string{"agent", "register", "echo2", "{ECHO}", "--reuse-instances"}, code: 5, stderr: []string{"reuse_instances", "(code -32602)"}},
		{name: "register text", args: []string{"agent", "register", "bad", "{NOTWASM}"}, code: 5, stderr: []string{"(code -32003)"}},
		{name: "register bad name", args: []string{"agent", "register", "Bad_Name", "{ECHO}"}, code: 5, stderr: []string{"name: want [a-z0-9]", "(code -32602)"}},
		{name: "list agents", args: []string{"agent", "list"}, stdout: []string{"NAME", "ABI", "cpu ", "echo ", "flaky ", "clock", "REGISTERED"}},
		{name: "get agent", args: []string{"agent", "get", "cpu"}, stdout: []string{"name          cpu", "digest        sha256:", "memory 128 MiB", "capabilities  clock"}},
		{name: "get missing agent", args: []string{"agent", "get", "nosuch"}, code: 4, stderr: []string{"fabric agent get: not found", "(code -32001)"}},

		{name: "submit", args: []string{"task", "submit", "echo", `{"hello":"fabric"}`, "--label", "team=core", "--priority", "high"}, save: "T1"},
		{name: "wait", args: []string{"task", "wait", "{T1}"}, stdout: []string{"task      {T1}", "state     succeeded (attempt 1 of 4)", "priority  high", "labels    team=core", `"hello": "fabric"`}},
		{name: "get json", args: []string{"task", "get", "{T1}", "--json"}, stdout: []string{`"task_id":"{T1}"`, `"state":"succeeded"`, `"output":{"hello":"fabric"}`}},
		{name: "get missing task", args: []string{"task", "get", "no-such-task"}, code: 4, stderr: []string{"not found", "(code -32001)"}},
		{name: "submit to a missing agent", args: []string{"task", "submit", "nosuch", "{}"}, code: 4, stderr: []string{`agent "nosuch"`}},
		{name: "submit and wait", args: []string{"task", "submit", "echo", `{"x":1}`, "--wait", "--timeout", "2m"}, stdout: []string{"succeeded", `"x": 1`}, stderr: []string{"submitted", "running", "succeeded"}},
		{name: "submit and wait json", args: []string{"--json", "task", "submit", "--wait", "echo", `"text"`}, stdout: []string{`"state":"succeeded"`, `"output":"text"`}},
		{name: "submit raw bytes", args: []string{"task", "submit", "echo", "--input-base64", "AAEC", "--wait"}, stdout: []string{"output (binary, 3 B, base64):", "AAEC"}},
		{name: "submit with progress", args: []string{"task", "submit", "cpu", `{"n":200000}`, "--wait"}, stdout: []string{`"primes": 17984`, "kpis      primes=17984", "counting the primes up to 200000"}},
		{name: "submit failing", args: []string{"task", "submit", "flaky", `{"fail":"error","message":"boom"}`, "--retries", "0", "--wait"}, code: 1,
			stdout: []string{"state     failed (attempt 1 of 1)", "error     agent_error: boom"}, stderr: []string{"fabric task submit: task", "failed: agent_error: boom"}},
		{name: "idempotent submit", args: []string{"task", "submit", "echo", "{}", "--idempotency-key", "k1"}, save: "K1"},
		{name: "idempotent submit again", args: []string{"task", "submit", "echo", "{}", "--idempotency-key", "k1"}, stdout: []string{"{K1}"}, stderr: []string{"was submitted before with this idempotency key"}},
		{name: "idempotency key with other params", args: []string{"task", "submit", "echo", `{"other":1}`, "--idempotency-key", "k1"}, code: 5, stderr: []string{"(code -32006)"}},
		{name: "submit long", args: []string{"task", "submit", "cpu", "100000000", "--priority", "low", "--label", "team=core"}, save: "LONG"},
		{name: "wait briefly", args: []string{"task", "wait", "{LONG}", "--timeout-ms", "50"}, code: 1, stderr: []string{"task {LONG} has not ended"}},
		{name: "cancel", args: []string{"task", "cancel", "{LONG}"}, stdout: []string{"state     cancelled"}},
		{name: "wait cancelled", args: []string{"task", "wait", "{LONG}"}, code: 1, stdout: []string{"cancelled"}, stderr: []string{"task {LONG} cancelled: cancelled"}},
		{name: "cancel missing", args: []string{"task", "cancel", "no-such-task"}, code: 4},

		{name: "list", args: []string{"task", "list"}, stdout: []string{"ID", "AGENT", "STATE", "{T1}  echo", "{LONG}  cpu    cancelled  low", "team=core"}},
		{name: "list filtered", args: []string{"task", "list", "--state", "cancelled", "--json"}, stdout: []string{`"task_id":"{LONG}"`}},
		{name: "list by label", args: []string{"task", "list", "--label", "team=core", "--agent", "echo"}, stdout: []string{"{T1}"}},
		{name: "list nothing", args: []string{"task", "list", "--agent", "nosuch"}, stdout: []string{"no tasks"}},
		{name: "list a page", args: []string{"task", "list", "--limit", "1"}, stderr: []string{"more tasks: use --all"}},
		{name: "stats", args: []string{"agent", "stats"}, stdout: []string{"AGENT", "TASKS", "echo", "cpu", "flaky"}},
		{name: "stats of one", args: []string{"agent", "stats", "flaky", "--json"}, stdout: []string{`"name":"flaky"`, `"failed":1`}},
		{name: "kpi once", args: []string{"kpi", "--once"}, stdout: []string{"throughput", "latency", "queue", "running", "of 2 workers"}},
		{name: "kpi once json", args: []string{"kpi", "--once", "--json"}, stdout: []string{`"workers":2`, `"queue_depth"`}},
		{name: "watch ended task", args: []string{"watch", "--task", "{T1}"}, stdout: []string{"{T1}  echo  succeeded", "(ended before the watch)"}},
		{name: "watch replayed", args: []string{"watch", "--task", "{T1}", "--after-seq", "0"}, stdout: []string{"{T1}  echo  queued", "{T1}  echo  running  attempt 1", "{T1}  echo  succeeded  attempt 1"}},
		{name: "watch missing task", args: []string{"watch", "--task", "no-such-task"}, code: 4},
		{name: "remove", args: []string{"agent", "rm", "flaky"}, stdout: []string{"removed agent flaky"}},
		{name: "removed", args: []string{"agent", "get", "flaky"}, code: 4},
	})

	if t1, ok := vars["T1"]; ok && !uuidRE.MatchString(t1) {
		t.Errorf("task submit printed %q, want the task id alone", vars["T1"])
	}

	t.Run("list all", func(t *testing.T) {
		r := fabric(t, srv.env(), "task", "list", "--all", "--limit", "2", "--json")
		var l struct {
			Tasks      []json.RawMessage `json:"tasks"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 {
			t.Fatalf("exit %d, %v: %s", r.code, err, r.stdout)
		}
		one := fabric(t, srv.env(), "task", "list", "--limit", "1000", "--json")
		var all struct {
			Tasks []json.RawMessage `json:"tasks"`
		}
		json.Unmarshal([]byte(one.stdout), &all)
		if len(l.Tasks) != len(all.Tasks) || len(l.Tasks) < 8 || l.NextCursor != "" {
			t.Errorf("--all in pages of 2 gave %d tasks (cursor %q); one page of 1000 gave %d", len(l.Tasks), l.NextCursor, len(all.Tasks))
		}
	})
}

// background runs the CLI until cancel is called, as SIGINT would end it.
type background struct {
	out, errb syncBuffer
	cancel    context.CancelFunc
	code      chan int
}

func startCLI(env map[string]string, args ...string) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, code: make(chan int, 1)}
	c := newCLI(ctx, &b.out, &b.errb, func(k string) string { return env[k] })
	go func() { b.code <- c.run(args) }()
	return b
}

// stop interrupts the command and returns its exit status.
func (b *background) stop() int {
	b.cancel()
	return <-b.code
}

// TestWatchLive watches events as they happen and ends the watch as SIGINT
// would: a line per event, or the task.event params with --json.
func TestWatchLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t)
	vars := agents(t)
	runSteps(t, srv.env(), vars, []step{
		{name: "register", args: []string{"agent", "register", "echo", "{ECHO}"}},
		{name: "first task", args: []string{"task", "submit", "echo", "1"}, save: "T0"},
		{name: "first task ends", args: []string{"task", "wait", "{T0}"}},
	})
	for _, mode := range []string{"lines", "json"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"watch", "--agent", "echo", "--after-seq", "0"}
			if mode == "json" {
				args = append(args, "--json")
			}
			w := startCLI(srv.env(), args...)
			// The replay of the first task shows that the subscription is live.
			waitFor(t, "the replay of "+vars["T0"], func() bool { return strings.Contains(w.out.String(), vars["T0"]) })
			r := fabric(t, srv.env(), "task", "submit", "echo", `{"live":true}`)
			id := strings.TrimSpace(r.stdout)
			want := id + "  echo  succeeded  attempt 1"
			if mode == "json" {
				want = `"task_id":"` + id + `","agent":"echo","state":"succeeded"`
			}
			waitFor(t, "the watch to show "+want, func() bool { return strings.Contains(w.out.String(), want) })
			if code := w.stop(); code != 0 {
				t.Errorf("watch ended by a signal: exit %d, want 0; stderr %s", code, w.errb.String())
			}
			if mode != "json" {
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(w.out.String()), "\n") {
				var ev struct {
					TaskID string `json:"task_id"`
					Seq    int64  `json:"seq"`
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.TaskID == "" || ev.Seq == 0 {
					t.Errorf("--json line is not a task.event: %q (%v)", line, err)
				}
			}
		})
	}
}

// TestKPILive follows kpi.report until a few reports have come.
func TestKPILive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t)
	for _, mode := range []string{"lines", "json"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"kpi", "--interval", "100ms"}
			if mode == "json" {
				args = append(args, "--json")
			}
			k := startCLI(srv.env(), args...)
			lines := func() []string { return strings.Split(strings.TrimSpace(k.out.String()), "\n") }
			waitFor(t, "three reports", func() bool { return len(lines()) >= 3 })
			if code := k.stop(); code != 0 {
				t.Errorf("kpi ended by a signal: exit %d, want 0; stderr %s", code, k.errb.String())
			}
			for _, l := range lines() {
				if mode == "json" {
					var r struct {
						Workers *int `json:"workers"`
					}
					if err := json.Unmarshal([]byte(l), &r); err != nil || r.Workers == nil || *r.Workers != 2 {
						t.Errorf("--json line is not a KPI report: %q (%v)", l, err)
					}
				} else if !strings.Contains(l, "throughput") || !strings.Contains(l, "running 0/2") {
					t.Errorf("line is not a report: %q", l)
				}
			}
		})
	}
	// --timeout ends kpi normally.
	fabric(t, srv.env(), "kpi", "--timeout", "300ms").check(t, 0, []string{"throughput"}, nil)
}

// TestToken: a server with a token refuses the CLI without it (exit 5,
// -32004) and serves it with --token or FABRIC_TOKEN.
func TestToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t, "--token", "s3cret")
	fabric(t, srv.env(), "health").check(t, 5, nil, []string{"unauthorized", "(code -32004)"})
	fabric(t, srv.env(), "health", "--token", "wrong").check(t, 5, nil, []string{"wrong token", "(code -32004)"})
	fabric(t, srv.env(), "--token", "s3cret", "health").check(t, 0, []string{"ok"}, nil)
	env := srv.env()
	env["FABRIC_TOKEN"] = "s3cret"
	fabric(t, env, "agent", "list").check(t, 0, []string{"no agents registered"}, nil)
}

// TestConnectionLost: a live view whose server goes away ends with exit 3.
func TestConnectionLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	srv := startServer(t)
	k := startCLI(srv.env(), "kpi", "--interval", "100ms")
	waitFor(t, "the first report", func() bool { return strings.Contains(k.out.String(), "throughput") })
	srv.Stop(t)
	select {
	case code := <-k.code:
		if code != 3 {
			t.Errorf("kpi of a server that stopped: exit %d, want 3; stderr %s", code, k.errb.String())
		}
		if !strings.Contains(k.errb.String(), "fabric kpi: client: connection closed") {
			t.Errorf("stderr does not say the connection closed: %s", k.errb.String())
		}
	case <-time.After(time.Minute):
		k.cancel()
		<-k.code
		t.Fatal("kpi did not end within a minute of the server's")
	}
}
