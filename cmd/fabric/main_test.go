package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) {
	// Times print in local time; pin it so that outputs are the same anywhere.
	time.Local = time.UTC
	code := m.Run()
	removeBuilds()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// result is what one run of the CLI did.
type result struct {
	code           int
	stdout, stderr string
}

// fabric runs the CLI in-process with env as its whole environment.
func fabric(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return fabricCtx(t, context.Background(), env, args...)
}

func fabricCtx(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	c := newCLI(ctx, &out, &errb, func(k string) string { return env[k] })
	code := c.run(args)
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	if testing.Verbose() {
		t.Logf("fabric %s\n  exit %d\n  stdout: %s\n  stderr: %s", strings.Join(args, " "), r.code,
			indent(r.stdout), indent(r.stderr))
	}
	return r
}

func indent(s string) string { return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") }

// check compares a run with what a case wants: the exit status, and
// substrings of stdout and stderr. Runs of spaces count as one, so that a
// case does not depend on how wide a table's columns came out.
func (r result) check(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(squeeze(r.stdout), squeeze(s)) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(squeeze(r.stderr), squeeze(s)) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

var spaces = regexp.MustCompile(` {2,}`)

func squeeze(s string) string { return spaces.ReplaceAllString(s, " ") }

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
