package main

import (
	"bytes"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsage covers what the CLI decides before it talks to a server: help,
// bad commands, bad flags and bad input, each with exit status 2 and a
// message that names what was wrong. The URL points where nothing listens,
// so a case that wrongly went on to connect fails with status 3.
func TestUsage(t *testing.T) {
	env := map[string]string{"FABRIC_URL": deadURL(t)}
	wasm := filepath.Join(t.TempDir(), "a.wasm")
	os.WriteFile(wasm, []byte("\x00asm\x01\x00\x00\x00"), 0o644)

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"no arguments", nil, 2, []string{"Usage:", "Commands:"}, nil},
		{"help", []string{"help"}, 0, []string{"agent register NAME FILE.wasm", "task submit AGENT", "Exit status:", "4    not found", "--url URL"}, nil},
		{"--help", []string{"--help"}, 0, []string{"Commands:"}, nil},
		{"help of a command", []string{"help", "task", "submit"}, 0, []string{"usage: fabric task submit AGENT [INPUT-JSON]", "--idempotency-key key", "--label key=value", "--wait"}, nil},
		{"help of a group", []string{"help", "agent"}, 0, []string{"fabric agent rm NAME"}, nil},
		{"help of nothing", []string{"help", "frobnicate"}, 2, nil, []string{`no command "frobnicate"`}},
		{"-h after a command", []string{"task", "list", "-h"}, 0, []string{"usage: fabric task list", "--state state", "--all"}, nil},
		{"unknown command", []string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}},
		{"group alone", []string{"task"}, 2, nil, []string{"fabric task: missing subcommand", "fabric task submit AGENT"}},
		{"unknown subcommand", []string{"agent", "remove", "x"}, 2, nil, []string{`unknown subcommand "remove"`, "fabric agent rm NAME"}},
		{"unknown global flag", []string{"--bogus", "health"}, 2, nil, []string{"unknown flag --bogus"}},
		{"unknown command flag", []string{"task", "get", "x", "--bogus"}, 2, nil, []string{"fabric task get: unknown flag --bogus", "usage: fabric task get ID"}},
		{"flag without its value", []string{"task", "list", "--state"}, 2, nil, []string{"flag --state needs a value"}},
		{"bad flag value", []string{"task", "submit", "echo", "--retries", "many"}, 2, nil, []string{`invalid value "many" for --retries`}},
		{"missing argument", []string{"task", "get"}, 2, nil, []string{"missing arguments: want ID"}},
		{"extra argument", []string{"agent", "get", "a", "b"}, 2, nil, []string{`unexpected argument "b": want NAME`}},
		{"bad input JSON", []string{"task", "submit", "echo", "{hello}"}, 2, nil, []string{"INPUT-JSON: not valid JSON", "at byte 2", `quote text as '"text"'`}},
		{"text not quoted", []string{"task", "submit", "echo", "hello"}, 2, nil, []string{"INPUT-JSON: not valid JSON"}},
		{"two inputs", []string{"task", "submit", "echo", "{}", "--input-base64", "AA=="}, 2, nil, []string{"give the input one way only"}},
		{"bad base64", []string{"task", "submit", "echo", "--input-base64", "!!"}, 2, nil, []string{"--input-base64: want standard base64"}},
		{"missing input file", []string{"task", "submit", "echo", "--input-file", "/no/such/file"}, 2, nil, []string{"--input-file: open /no/such/file: no such file or directory"}},
		{"bad priority", []string{"task", "submit", "echo", "--priority", "urgent"}, 2, nil, []string{`--priority: want one of critical, high, normal, low, background; got "urgent"`}},
		{"bad label", []string{"task", "submit", "echo", "--label", "nokey"}, 2, nil, []string{`want key=value; got "nokey"`}},
		{"bad state", []string{"task", "list", "--state", "done"}, 2, nil, []string{`--state: want one of queued, running`}},
		{"bad limit", []string{"task", "list", "--limit", "5000"}, 2, nil, []string{"--limit: want 1..1000; got 5000"}},
		{"negative wait", []string{"task", "wait", "x", "--timeout-ms", "-1"}, 2, nil, []string{"--timeout-ms: want >= 0"}},
		{"missing module", []string{"agent", "register", "a", "/no/such.wasm"}, 2, nil, []string{"FILE.wasm: open /no/such.wasm"}},
		{"negative memory", []string{"agent", "register", "a", wasm, "--memory-mb", "-1"}, 2, nil, []string{"--memory-mb: want >= 0"}},
		{"kpi interval", []string{"kpi", "--interval", "1ms"}, 2, nil, []string{"--interval: want 100ms..1h; got 1ms"}},
		{"negative after-seq", []string{"watch", "--after-seq", "-3"}, 2, nil, []string{"--after-seq: want >= 0"}},
		{"negative timeout", []string{"health", "--timeout", "-1s"}, 2, nil, []string{"--timeout: want a duration >= 0"}},
		{"bad url", []string{"--url", "http://localhost:7420/rpc", "health"}, 2, nil, []string{`--url: want ws://HOST:PORT/rpc`}},
		{"completion of what", []string{"completion", "tcsh"}, 2, nil, []string{`want bash, zsh or fish; got "tcsh"`}},
		{"nothing listens", []string{"health"}, 3, nil, []string{"fabric health: connecting to ws://", "Is fabricd running at"}},
		{"nothing listens, flags after", []string{"agent", "list", "--json"}, 3, nil, []string{"fabric agent list: connecting to"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fabric(t, env, tc.args...).check(t, tc.code, tc.stdout, tc.stderr)
		})
	}
}

// deadURL is a URL where nothing listens: a port that was free a moment ago.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr + "/rpc"
}

func TestEnvironment(t *testing.T) {
	c := newCLI(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, func(k string) string {
		return map[string]string{"FABRIC_URL": "ws://h:1/rpc", "FABRIC_TOKEN": "tok", "COLUMNS": "132"}[k]
	})
	if c.url != "ws://h:1/rpc" || c.token != "tok" || c.width != 132 {
		t.Errorf("from the environment: url %q token %q width %d", c.url, c.token, c.width)
	}
	c = newCLI(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	if c.url != defaultURL || c.token != "" || c.width != 80 {
		t.Errorf("defaults: url %q token %q width %d", c.url, c.token, c.width)
	}
	// A flag wins over the environment, before or after the command.
	r := fabric(t, map[string]string{"FABRIC_URL": "ws://127.0.0.1:1/rpc"}, "health", "--url", deadURL(t))
	if strings.Contains(r.stderr, "127.0.0.1:1/") {
		t.Errorf("--url after the command did not win over FABRIC_URL: %s", r.stderr)
	}
}

func TestRunEntryPoint(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"help", "health"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "usage: fabric health") {
		t.Errorf("run(help health) = %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

func newTestFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		wait bool
		key  string
	}{
		{[]string{"echo", "{}", "--wait"}, "echo {}", true, ""},
		{[]string{"--wait", "echo", "--idempotency-key", "k", "{}"}, "echo {}", true, "k"},
		{[]string{"echo", "--", "--wait"}, "echo --wait", false, ""},
		{[]string{"--idempotency-key=--", "echo"}, "echo", false, "--"},
		{nil, "", false, ""},
	} {
		fs := newTestFlagSet()
		wait := fs.Bool("wait", false, "")
		key := fs.String("idempotency-key", "", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || *wait != tc.wait || *key != tc.key {
			t.Errorf("parseInterspersed(%q) = %q %v, wait %v key %q; want %q wait %v key %q",
				tc.args, pos, err, *wait, *key, tc.pos, tc.wait, tc.key)
		}
	}
}

// TestCompletion runs the generated scripts in the shells that are
// installed: bash and fish answer completion queries; zsh is syntax-checked.
func TestCompletion(t *testing.T) {
	scripts := map[string]string{}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := fabric(t, nil, "completion", sh)
		if r.code != 0 || !strings.Contains(r.stdout, "fabric") {
			t.Fatalf("completion %s: exit %d, %s", sh, r.code, r.stderr)
		}
		for _, want := range []string{"register", "submit", "--idempotency-key", "--after-seq", "--interval", "--replace", "critical"} {
			if sh == "fish" {
				want = strings.Replace(want, "--", "-l ", 1)
			}
			if !strings.Contains(r.stdout, want) {
				t.Errorf("completion %s lacks %q", sh, want)
			}
		}
		scripts[sh] = r.stdout
	}
	dir := t.TempDir()
	for sh, s := range scripts {
		os.WriteFile(filepath.Join(dir, "fabric."+sh), []byte(s), 0o644)
	}

	if _, err := exec.LookPath("bash"); err == nil {
		// Each case is the words typed so far, the last one being completed.
		script := "source " + filepath.Join(dir, "fabric.bash") + `
t() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _fabric; echo "${COMPREPLY[*]}"; }
t fabric ""
t fabric ta
t fabric task ""
t fabric --json agent r
t fabric task submit echo --pr
t fabric task submit echo --priority ""
t fabric --url ws://x/rpc task list --state r
t fabric watch --after-seq 3 --ta
t fabric completion ""
`
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		want := "agent task watch kpi health bench soak echo-server completion help\ntask\nsubmit get wait cancel list\nregister rm\n" +
			"--priority\ncritical high normal low background\nrunning retrying\n--task\nbash zsh fish\n"
		if string(out) != want {
			t.Errorf("bash completions:\n%s\nwant:\n%s", out, want)
		}
	}
	if _, err := exec.LookPath("fish"); err == nil {
		script := "source " + filepath.Join(dir, "fabric.fish") + `
complete -C "fabric ta"
complete -C "fabric task submit echo --pri"
complete -C "fabric agent register x --cap "
complete -C "fabric --json task "
`
		out, err := exec.Command("fish", "--no-config", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		for _, want := range []string{"task\tsubmit, inspect", "--priority\tlevel:", "clock\t", "random\t", "submit\t", "cancel\t"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("fish completions lack %q:\n%s", want, out)
			}
		}
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command("zsh", "-n", filepath.Join(dir, "fabric.zsh")).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
}
