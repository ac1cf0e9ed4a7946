package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/store"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fabricd.conf")
	os.WriteFile(file, []byte("# comment\nworkers = 3\nmax-queued = 7\ndata = /from/file\n"), 0o600)
	c, err := load("serve", []string{"--config", file, "--workers", "5"}, env(map[string]string{
		"FABRIC_MAX_QUEUED": "9", "FABRIC_DRAIN_TIMEOUT": "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 5 || c.MaxQueued != 9 || c.Data != "/from/file" || c.DrainTimeout != 3*time.Second {
		t.Fatalf("flags > env > file > defaults broken: %+v", c)
	}
	if c.Listen != "127.0.0.1:7420" {
		t.Fatalf("default listen %q", c.Listen)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--workers", "x"}, nil, `-workers: want an integer; got "x"`},
		{[]string{"--workers", "0"}, nil, "--workers: want 1..4096; got 0"},
		{nil, map[string]string{"FABRIC_WORKERS": "many"}, `FABRIC_WORKERS: want an integer; got "many"`},
		{[]string{"--listen", "0.0.0.0:7420"}, nil, "--listen: 0.0.0.0:7420 is reachable beyond this machine and no --token is set"},
		{[]string{"--listen", "nonsense"}, nil, `--listen: want HOST:PORT; got "nonsense"`},
		{[]string{"--engine", "v8"}, nil, `--engine: want one of`},
		{[]string{"--log-level", "loud"}, nil, `--log-level: want debug, info, warn or error; got "loud"`},
		{[]string{"--drain-timeout", "soon"}, nil, `want a duration such as 30s or 5m; got "soon"`},
		{[]string{"--default-memory-mb", "2048"}, nil, "--default-memory-mb: want 1..max-memory-mb (1024); got 2048"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		_, err := load("serve", c.args, env(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: got %v, want %q", c.args, c.env, err, c.want)
		}
	}
	if _, err := load("serve", []string{"--listen", "0.0.0.0:7420", "--token", "t"}, env(nil)); err != nil {
		t.Errorf("a token allows any address: %v", err)
	}
	if _, err := load("serve", []string{"--listen", "0.0.0.0:7420", "--insecure"}, env(nil)); err != nil {
		t.Errorf("--insecure allows any address: %v", err)
	}
	file := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(file, []byte("wrokers = 2\n"), 0o600)
	if _, err := load("serve", []string{"--config", file}, env(nil)); err == nil || !strings.Contains(err.Error(), `bad.conf:1: unknown setting "wrokers"`) {
		t.Errorf("config file typo: %v", err)
	}
}

func TestStdioHasNoListenFlag(t *testing.T) {
	if _, err := load("stdio", []string{"--listen", "127.0.0.1:1"}, env(nil)); err == nil {
		t.Fatal("stdio must refuse --listen")
	}
}

// --pprof checks no token: it is refused beyond loopback, token or not,
// unless --insecure.
func TestPprofAddress(t *testing.T) {
	for _, c := range []struct {
		mode string
		args []string
		want string // "" for accepted
	}{
		{"serve", []string{"--pprof", "127.0.0.1:6060"}, ""},
		{"serve", []string{"--pprof", "localhost:0"}, ""},
		{"serve", []string{"--pprof", "[::1]:6060"}, ""},
		{"stdio", []string{"--pprof", "127.0.0.1:6060"}, ""},
		{"serve", []string{"--pprof", "0.0.0.0:6060"}, "--pprof: 0.0.0.0:6060 is reachable beyond this machine, and the profiler checks no token"},
		{"serve", []string{"--pprof", ":6060"}, "--pprof: :6060 is reachable beyond this machine"},
		{"serve", []string{"--pprof", "0.0.0.0:6060", "--token", "t"}, "--pprof: 0.0.0.0:6060 is reachable beyond this machine"},
		{"stdio", []string{"--pprof", "10.0.0.1:6060"}, "--pprof: 10.0.0.1:6060 is reachable beyond this machine"},
		{"serve", []string{"--pprof", "0.0.0.0:6060", "--insecure"}, ""},
		{"serve", []string{"--pprof", "6060"}, `--pprof: want HOST:PORT, such as 127.0.0.1:6060; got "6060"`},
	} {
		_, err := load(c.mode, c.args, env(nil))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %v: %v; want it accepted", c.mode, c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %v: got %v, want %q", c.mode, c.args, err, c.want)
		}
	}
	if _, err := load("serve", nil, env(map[string]string{"FABRIC_PPROF": "0.0.0.0:1"})); err == nil || !strings.Contains(err.Error(), "--pprof") {
		t.Errorf("FABRIC_PPROF beyond loopback: got %v, want refused", err)
	}
}

// --data :memory: lets the server run task.get and task.submit on a
// connection's reader; a durable store does not.
func TestStoreNeverWaits(t *testing.T) {
	mem, err := store.Open(context.Background(), ":memory:", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if !storeNeverWaits(mem) {
		t.Error("the in-memory store: want StoreNeverWaits")
	}
	disk, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if storeNeverWaits(disk) {
		t.Error("the SQLite store: want its calls off the reader")
	}
}
