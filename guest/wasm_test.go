//go:build !wasip1

package guest_test

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/chimera-fabric/fabric/internal/agentbuild"
	"github.com/chimera-fabric/fabric/internal/agentbuild/abitest"
)

// These tests build testdata/sdkagent for GOOS=wasip1 GOARCH=wasm, in both
// forms, and run it under abitest's host of GUEST_ABI.md.

var host struct {
	sync.Mutex
	h       *abitest.Host
	modules map[bool]*abitest.Module // by CShared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if host.h != nil {
		host.h.Close(context.Background())
	}
	os.Exit(code)
}

// compile builds the agent and compiles it once per test binary.
func compile(t *testing.T, opts ...agentbuild.Option) *abitest.Module {
	t.Helper()
	cShared := len(opts) > 0
	host.Lock()
	defer host.Unlock()
	if m := host.modules[cShared]; m != nil {
		return m
	}
	ctx := context.Background()
	if host.h == nil {
		cache, err := agentbuild.CompilationCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		h, err := abitest.New(ctx, cache)
		if err != nil {
			t.Fatal(err)
		}
		host.h, host.modules = h, map[bool]*abitest.Module{}
	}
	m, err := host.h.Compile(ctx, agentbuild.Build(t, "guest/testdata/sdkagent", opts...))
	if err != nil {
		t.Fatalf("the SDK's module breaks the ABI: %v", err)
	}
	host.modules[cShared] = m
	return m
}

var forms = []struct {
	name    string
	opts    []agentbuild.Option
	command bool
}{
	{"wasi-command", nil, true},
	{"fabric-v1 reactor", []agentbuild.Option{agentbuild.CShared()}, false},
}

func TestWasmSDKCalls(t *testing.T) {
	wantLogs := []abitest.LogLine{
		{Level: 0, Msg: "debug"}, {Level: 1, Msg: "info"}, {Level: 2, Msg: "warn"},
		{Level: 3, Msg: "error"}, {Level: 3, Msg: "clamped"}, {Level: 1, Msg: "héllo 42"},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			m := compile(t, form.opts...)
			if m.Command != form.command {
				t.Fatalf("module is a command: %t, want %t", m.Command, form.command)
			}
			res, err := m.Run(context.Background(), []byte("ping"))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(res.Output); got != "got:ping" {
				t.Errorf("output = %q, want %q (once: a reactor must not run main too)", got, "got:ping")
			}
			if res.Failed || res.ExitCode != 0 {
				t.Errorf("failed = %t (%q), exit = %d; want success", res.Failed, res.Error, res.ExitCode)
			}
			if !reflect.DeepEqual(res.Logs, wantLogs) {
				t.Errorf("logs = %+v\nwant %+v", res.Logs, wantLogs)
			}
			if want := []int32{0, 250, 1000}; !reflect.DeepEqual(res.Progress, want) {
				t.Errorf("progress = %v, want %v", res.Progress, want)
			}
			want := map[string]float64{"in_bytes": 4, "third": 1.0 / 3}
			if !reflect.DeepEqual(res.KPIs, want) {
				t.Errorf("kpis = %v, want %v", res.KPIs, want)
			}
			if len(res.Stdout) != 0 || len(res.Stderr) != 0 {
				t.Errorf("stdout %q, stderr %q: want both empty, the SDK uses the fabric imports", res.Stdout, res.Stderr)
			}
		})
	}
}

func TestWasmSDKInputs(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			m := compile(t, form.opts...)
			for _, in := range [][]byte{nil, []byte("\x00\xff binary"), big} {
				res, err := m.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if want := append([]byte("got:"), in...); !bytes.Equal(res.Output, want) {
					t.Errorf("input of %d bytes: output of %d bytes, want %d", len(in), len(res.Output), len(want))
				}
				if res.KPIs["in_bytes"] != float64(len(in)) {
					t.Errorf("input of %d bytes: KPI in_bytes = %v", len(in), res.KPIs["in_bytes"])
				}
			}
		})
	}
}

func TestWasmSDKFailure(t *testing.T) {
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			m := compile(t, form.opts...)
			res, err := m.Run(context.Background(), []byte("fail:want an even number; got 3"))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Failed || res.Error != "want an even number; got 3" {
				t.Errorf("error_write: called %t with %q; want the handler's error", res.Failed, res.Error)
			}
			// A command exits 1 (guest.Run), a reactor's run returns 1.
			if res.ExitCode != 1 {
				t.Errorf("exit status %d, want 1", res.ExitCode)
			}
			if len(res.Output) != 0 {
				t.Errorf("output = %q, want none", res.Output)
			}

			res, err = m.Run(context.Background(), []byte("panic"))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Failed || res.Error != "panic: boom" || res.ExitCode != 1 {
				t.Errorf("after a panic: failed %t, error %q, exit %d; want true, \"panic: boom\", 1", res.Failed, res.Error, res.ExitCode)
			}
			last := res.Logs[len(res.Logs)-1]
			if last.Level != 3 || !strings.HasPrefix(last.Msg, "panic: boom\ngoroutine ") {
				t.Errorf("the panic's stack should be logged at level 3; last log line is %d %.60q", last.Level, last.Msg)
			}
		})
	}
}

func TestWasmImportsAndExports(t *testing.T) {
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			m := compile(t, form.opts...)
			var fabric []string
			for _, imp := range m.Imports() {
				switch imp.Module {
				case "fabric":
					fabric = append(fabric, imp.Name)
				case "wasi_snapshot_preview1":
				default:
					t.Errorf("import %s: outside wasi_snapshot_preview1 and fabric, the fabric would refuse the module", imp)
				}
			}
			want := []string{"input_len", "input_read", "output_write", "error_write", "log", "progress", "kpi"}
			if !sameSet(fabric, want) {
				t.Errorf("fabric imports = %v, want %v", fabric, want)
			}
			wantExports := []string{"_start", "memory", "run"}
			if !form.command {
				wantExports = []string{"_initialize", "memory", "run"}
			}
			if exports := m.Exports(); !sameSet(exports, wantExports) {
				t.Errorf("exports = %v, want %v", exports, wantExports)
			}
			if n := len(agentbuild.Build(t, "guest/testdata/sdkagent", form.opts...)); n < 500<<10 || n > 8<<20 {
				t.Errorf("module is %d bytes; a Go wasip1 agent should be 1-4 MB", n)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
