package abitest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newHost(t *testing.T) *Host {
	t.Helper()
	h, err := New(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func TestCommandStdio(t *testing.T) {
	h := newHost(t)
	m, err := h.Compile(context.Background(), load(t, "cat"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Command {
		t.Fatal("cat exports _start: want a command")
	}
	in := bytes.Repeat([]byte("stdin to stdout\n"), 10_000) // several reads
	res, err := m.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Stdout, in) || len(res.Output) != 0 || res.ExitCode != 0 {
		t.Errorf("stdout of %d bytes (want %d), output %q, exit %d", len(res.Stdout), len(in), res.Output, res.ExitCode)
	}
}

func TestFabricV1(t *testing.T) {
	h := newHost(t)
	m, err := h.Compile(context.Background(), load(t, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Command {
		t.Fatal("echo exports run and no _start: want fabric-v1")
	}
	for _, in := range [][]byte{nil, []byte("hi"), bytes.Repeat([]byte{7}, 200_000)} {
		res, err := m.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.Output, in) || res.Failed || res.ExitCode != 0 {
			t.Errorf("input of %d bytes: output of %d bytes, failed %t, run returned %d", len(in), len(res.Output), res.Failed, res.ExitCode)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	h := newHost(t)
	for name, want := range map[string]string{
		"badimport": "import env.now: not offered to agents",
		"badtype":   "import fabric.log: want type (i32, i32, i32) -> (); got (i32, i32) -> ()",
		"noentry":   "exports: want _start (wasi-command) or run (fabric-v1); got neither",
	} {
		_, err := h.Compile(context.Background(), load(t, name))
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", name, err, want)
		}
	}
}

func TestInspect(t *testing.T) {
	imports, exports, err := Inspect(context.Background(), load(t, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, imp := range imports {
		got = append(got, imp.String())
	}
	if want := "fabric.input_len fabric.input_read fabric.output_write fabric.error_write"; strings.Join(got, " ") != want {
		t.Errorf("imports = %v, want %s", got, want)
	}
	if want := "memory run"; strings.Join(exports, " ") != want {
		t.Errorf("exports = %v, want %s", exports, want)
	}
}

// TestWasmMatchesWat checks the committed modules against their sources
// when wat2wasm is installed.
func TestWasmMatchesWat(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm is not installed")
	}
	sources, _ := filepath.Glob("testdata/*.wat")
	for _, src := range sources {
		out := filepath.Join(t.TempDir(), "m.wasm")
		if b, err := exec.Command(wat2wasm, src, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", src, err, b)
		}
		fresh, _ := os.ReadFile(out)
		committed, _ := os.ReadFile(strings.TrimSuffix(src, ".wat") + ".wasm")
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s.wasm is stale: run wat2wasm %s -o %s.wasm", strings.TrimSuffix(src, ".wat"), src, strings.TrimSuffix(src, ".wat"))
		}
	}
}
