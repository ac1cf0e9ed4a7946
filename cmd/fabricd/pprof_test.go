package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
)

// TestPprofServes: fabricd --pprof serves the profiler on a listener of its
// own, and not on the API's.
func TestPprofServes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	s := fabricdtest.Start(t, "--data", ":memory:", "--pprof", "127.0.0.1:0")
	// The profiler's listener is bound, and logged, before the API's.
	var base string
	for _, line := range strings.Split(s.Log(), "\n") {
		var entry struct {
			Pprof string `json:"pprof"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Pprof != "" {
			base = entry.Pprof
		}
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/debug/pprof/") {
		t.Fatalf("no profiler address logged before serving; the log:\n%s", s.Log())
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(base); code != 200 || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Errorf("GET %s: %d %.300s", base, code, body)
	}
	if code, body := get(base + "goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("GET %sgoroutine?debug=1: %d %.300s", base, code, body)
	}
	if code, body := get(base + "cmdline"); code != 200 || !strings.Contains(body, "--pprof") {
		t.Errorf("GET %scmdline: %d %.300s", base, code, body)
	}
	if code, _ := get("http://" + s.Addr + "/debug/pprof/"); code != 404 {
		t.Errorf("the API's listener serves /debug/pprof/: %d; want 404", code)
	}
}

// TestPprofRefusedBeyondLoopback: the binary will not start with a profiler
// reachable from other machines.
func TestPprofRefusedBeyondLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	cmd := exec.Command(fabricdtest.Binary(t), "serve", "--data", ":memory:", "--pprof", "0.0.0.0:0", "--token", "t")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("fabricd serve --pprof 0.0.0.0:0: %v; want exit status 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "--pprof: 0.0.0.0:0 is reachable beyond this machine") {
		t.Errorf("the refusal does not say why:\n%s", out)
	}
}
