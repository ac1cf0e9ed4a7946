package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/internal/agentbuild"
	"github.com/chimera-fabric/fabric/internal/agentbuild/abitest"
)

var host *abitest.Host

func TestMain(m *testing.M) {
	ctx := context.Background()
	cache, err := agentbuild.CompilationCacheDir()
	if err == nil {
		host, err = abitest.New(ctx, cache)
	}
	if err != nil {
		println("examples:", err.Error())
		os.Exit(1)
	}
	code := m.Run()
	host.Close(ctx)
	os.Exit(code)
}

var modules = map[string]*abitest.Module{} // by name; tests run one at a time

// load builds and compiles an example, once per test binary; abitest's
// Compile refuses a module whose imports or exports break GUEST_ABI.md.
// The host's Close releases them all.
func load(t *testing.T, name string, opts ...agentbuild.Option) *abitest.Module {
	t.Helper()
	if m := modules[name]; m != nil {
		return m
	}
	m, err := host.Compile(context.Background(), agentbuild.Build(t, "examples/"+name, opts...))
	if err != nil {
		t.Fatalf("example %s breaks the ABI: %v", name, err)
	}
	modules[name] = m
	return m
}

func run(t *testing.T, m *abitest.Module, in string) *abitest.Result {
	t.Helper()
	res, err := m.Run(context.Background(), []byte(in))
	if err != nil {
		t.Fatalf("input %.60q: %v", in, err)
	}
	return res
}

// ok checks that res succeeded with the given output.
func ok(t *testing.T, res *abitest.Result, want string) {
	t.Helper()
	if res.Failed || res.ExitCode != 0 {
		t.Errorf("failed: %t (%q), exit status %d; want success", res.Failed, res.Error, res.ExitCode)
	}
	if string(res.Output) != want {
		t.Errorf("output = %s, want %s", res.Output, want)
	}
}

// failed checks that res failed through guest.Fail (agent_error) with a
// message containing want.
func failed(t *testing.T, res *abitest.Result, want string) {
	t.Helper()
	if !res.Failed || !strings.Contains(res.Error, want) {
		t.Errorf("error_write called: %t with %q; want a message containing %q", res.Failed, res.Error, want)
	}
	if res.ExitCode != 1 {
		t.Errorf("exit status %d, want 1", res.ExitCode)
	}
}

func TestEcho(t *testing.T) {
	m := load(t, "echo")
	for _, in := range []string{"", "hello", "\x00\xff\n", strings.Repeat("x", 100_000)} {
		ok(t, run(t, m, in), in)
	}
}

func TestHello(t *testing.T) {
	m := load(t, "hello")
	res := run(t, m, "world\n")
	// No SDK: the output is stdout, and the fabric imports are not used.
	if got := string(res.Stdout); got != "hello, world\n" || res.ExitCode != 0 {
		t.Errorf("stdout %q, exit %d; want \"hello, world\\n\", 0", got, res.ExitCode)
	}
	if len(res.Output) != 0 || res.Failed {
		t.Errorf("output %q, failed %t: want neither", res.Output, res.Failed)
	}
}

func TestJSONXform(t *testing.T) {
	m := load(t, "jsonxform")
	ok(t, run(t, m, `{"op":"sort","data":[3,1,2]}`), `[1,2,3]`)
	ok(t, run(t, m, `{"op":"upper","data":{"greeting":"héllo"}}`), `{"greeting":"HÉLLO"}`)
	failed(t, run(t, m, `{"op":"shout","data":1}`), `jsonxform: op: want one of upper, lower, sort, sum, reverse, count, keys; got "shout"`)
	failed(t, run(t, m, `not json`), `jsonxform: input: want a JSON object`)
}

func TestCPU(t *testing.T) {
	m := load(t, "cpu")
	res := run(t, m, `{"n": 10000}`)
	ok(t, res, `{"n":10000,"primes":1229,"largest":9973}`)
	if !reflect.DeepEqual(res.KPIs, map[string]float64{"primes": 1229}) {
		t.Errorf("kpis = %v, want primes=1229", res.KPIs)
	}
	if n := len(res.Progress); n < 2 || n > 101 || res.Progress[n-1] != 1000 {
		t.Errorf("progress = %v; want up to 101 reports ending at 1000", res.Progress)
	}
	for i := 1; i < len(res.Progress); i++ {
		if res.Progress[i] < res.Progress[i-1] {
			t.Errorf("progress went back: %v", res.Progress)
			break
		}
	}
	wantLogs := []abitest.LogLine{{Level: 1, Msg: "counting the primes up to 10000"}, {Level: 1, Msg: "found 1229 primes up to 10000"}}
	if !reflect.DeepEqual(res.Logs, wantLogs) {
		t.Errorf("logs = %v, want %v", res.Logs, wantLogs)
	}
	failed(t, run(t, m, `-5`), "cpu: n: want an integer from 0 to 10000000000; got -5")
}

func TestFlaky(t *testing.T) {
	m := load(t, "flaky")
	failed(t, run(t, m, ``), "flaky: failing on purpose")
	failed(t, run(t, m, `{"message":"upstream unavailable"}`), "upstream unavailable")
	res := run(t, m, `{"fail":"never"}`)
	var out Outcome
	if err := json.Unmarshal(res.Output, &out); err != nil || !out.OK {
		t.Errorf("fail=never: output %s, want {\"ok\":true,...}", res.Output)
	}

	// "exit" ends the command with the status and no error message: the
	// fabric reports exit_status with the last stderr lines.
	res = run(t, m, `{"fail":"exit","exit_code":7,"message":"disk on fire"}`)
	if res.Failed || res.ExitCode != 7 || !bytes.Contains(res.Stderr, []byte("disk on fire")) {
		t.Errorf("fail=exit: error_write %t, exit %d, stderr %q; want no error_write, 7, the message", res.Failed, res.ExitCode, res.Stderr)
	}
}

// Outcome mirrors flaky's output.
type Outcome struct {
	OK   bool    `json:"ok"`
	Draw float64 `json:"draw"`
}

func TestReactor(t *testing.T) {
	m := load(t, "reactor", agentbuild.CShared())
	if m.Command {
		t.Fatal("the reactor exports _start; want a fabric-v1 module exporting run")
	}
	res := run(t, m, "the quick\nbrown fox\n")
	ok(t, res, `{"bytes":20,"runes":20,"lines":2,"words":4}`)
	if res.KPIs["words"] != 4 {
		t.Errorf("kpis = %v, want words=4", res.KPIs)
	}
	failed(t, run(t, m, "\xff"), "reactor: input: want UTF-8 text")
}

// TestImports checks what the Go agents import: the fabric refuses a
// module importing anything outside wasi_snapshot_preview1 and fabric, so a
// toolchain update that adds such an import must show up here first. The
// WASI functions are listed with -v.
func TestImports(t *testing.T) {
	for _, name := range []string{"hello", "echo", "jsonxform", "cpu", "flaky", "reactor"} {
		var opts []agentbuild.Option
		if name == "reactor" {
			opts = append(opts, agentbuild.CShared())
		}
		var names []string
		for _, imp := range load(t, name, opts...).Imports() {
			_, fabric := abitest.FabricImports[imp.Name]
			if imp.Module == "wasi_snapshot_preview1" || imp.Module == "fabric" && fabric {
				names = append(names, imp.String())
				continue
			}
			t.Errorf("%s imports %s: the fabric would refuse it", name, imp)
		}
		t.Logf("%s imports %s", name, strings.Join(names, " "))
	}
}

// TestDocsSnippets keeps the code that docs/agents.md shows as tested equal
// to the code the tests run.
func TestDocsSnippets(t *testing.T) {
	doc, err := os.ReadFile("../docs/agents.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ path, from string }{
		{"hello/main.go", "package main"},
		{"../internal/agentbuild/abitest/testdata/cat.wat", "(module"},
		{"../internal/agentbuild/abitest/testdata/echo.wat", "(module"},
	} {
		src, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		_, body, ok := bytes.Cut(src, []byte(f.from))
		if !ok || !bytes.Contains(doc, append([]byte(f.from), body...)) {
			t.Errorf("docs/agents.md does not show %s as it is from %q on", f.path, f.from)
		}
	}
}
