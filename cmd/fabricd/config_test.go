package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
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

// --retain-max: auto by --data, at least --retain-keep; below --retain-keep
// it is refused naming both.
func TestRetainMax(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{[]string{"--data", ":memory:"}, nil, retainMaxMemory},
		{[]string{"--data", "/var/lib/fabric"}, nil, retainMaxDisk},
		{[]string{"--data", ":memory:", "--retain-keep", "500000"}, nil, 500000},
		{[]string{"--data", ":memory:", "--retain-max", "0"}, nil, 0},
		{[]string{"--data", ":memory:", "--retain-max", "auto"}, map[string]string{"FABRIC_RETAIN_MAX": "7"}, retainMaxMemory},
		{[]string{"--data", ":memory:", "--retain-keep", "5"}, map[string]string{"FABRIC_RETAIN_MAX": "20000"}, 20000},
	} {
		cfg, err := load("serve", c.args, env(c.env))
		if err != nil {
			t.Errorf("%v %v: %v", c.args, c.env, err)
			continue
		}
		if got := cfg.retainMax(); got != c.want {
			t.Errorf("%v %v: retainMax() = %d, want %d", c.args, c.env, got, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--retain-max", "100"}, "--retain-max: 100 is below --retain-keep (10000)"},
		{[]string{"--retain-max", "-2"}, "--retain-max: want >= 0 or auto; got -2"},
		{[]string{"--retain-max", "lots"}, `want an integer or auto; got "lots"`},
	} {
		if _, err := load("serve", c.args, env(nil)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}

// --fresh-instances parses from the flag and the environment and reaches
// the wazero engine: its agents then never get a reset instance, which it
// says at debug level when it compiles one.
func TestFreshInstances(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"--fresh-instances"}, nil, true},
		{nil, map[string]string{"FABRIC_FRESH_INSTANCES": "true"}, true},
		{[]string{"--fresh-instances=false"}, map[string]string{"FABRIC_FRESH_INSTANCES": "1"}, false},
	} {
		cfg, err := load("stdio", c.args, env(c.env))
		if err != nil || cfg.FreshInstances != c.want {
			t.Errorf("%v %v: FreshInstances = %v (%v), want %v", c.args, c.env, cfg.FreshInstances, err, c.want)
		}
	}
	if _, err := load("stdio", nil, env(map[string]string{"FABRIC_FRESH_INSTANCES": "sometimes"})); err == nil || !strings.Contains(err.Error(), "FABRIC_FRESH_INSTANCES: want true or false") {
		t.Errorf("bad FABRIC_FRESH_INSTANCES: %v", err)
	}
	for _, fresh := range []bool{false, true} {
		var logs bytes.Buffer
		eng, err := newEngine("wazero", engineOptions{
			MaxMemoryBytes: 64 << 20, MaxModuleBytes: 64 << 20, Workers: 1, FreshInstances: fresh,
			Logger: zerolog.New(&logs).Level(zerolog.DebugLevel),
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := eng.Compile(context.Background(), executor.ModuleSpec{Name: "echo", Wasm: enginetest.Agent(t, "echo")})
		if err != nil {
			t.Fatal(err)
		}
		m.Close(context.Background())
		eng.Close(context.Background())
		said := strings.Contains(logs.String(), "FreshInstances")
		if said != fresh {
			t.Errorf("FreshInstances %v: the engine's log says %q", fresh, logs.String())
		}
	}
}
