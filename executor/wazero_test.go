package executor_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newWazero(t testing.TB, opts executor.WazeroOptions) *executor.Wazero {
	t.Helper()
	e, err := executor.NewWazero(opts)
	if err != nil {
		t.Fatalf("NewWazero: %v", err)
	}
	return e
}

func TestWazeroConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) executor.Engine {
		return newWazero(t, executor.WazeroOptions{MaxMemoryBytes: 256 << 20})
	})
}

// TestWazeroConformanceFresh runs the suite with instance reset off: every
// task instantiates its module anew.
func TestWazeroConformanceFresh(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) executor.Engine {
		return newWazero(t, executor.WazeroOptions{MaxMemoryBytes: 256 << 20, FreshInstances: true})
	})
}

func TestWazeroOptions(t *testing.T) {
	for _, c := range []struct {
		opts executor.WazeroOptions
		want string
	}{
		{executor.WazeroOptions{MaxMemoryBytes: 5 << 30}, "at most"},
		{executor.WazeroOptions{MaxMemoryBytes: 1000}, "at least one page"},
		{executor.WazeroOptions{MaxModuleBytes: -1}, "positive"},
		{executor.WazeroOptions{CacheDir: "/dev/null/cache"}, "compilation cache"},
	} {
		if e, err := executor.NewWazero(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			if e != nil {
				_ = e.Close(context.Background())
			}
			t.Errorf("NewWazero(%+v): %v; want an error containing %q", c.opts, err, c.want)
		}
	}
	o := executor.WazeroOptions{MaxMemoryBytes: 100000}
	if err := o.Validate(); err != nil || o.MaxMemoryBytes != executor.WasmPageSize || o.MaxModuleBytes != executor.DefaultMaxModuleBytes {
		t.Fatalf("Validate: %v, %+v; want the memory rounded down to a page and the default module size", err, o)
	}
}

func TestWazeroRefusals(t *testing.T) {
	e := newWazero(t, executor.WazeroOptions{MaxModuleBytes: 100})
	defer e.Close(context.Background())
	if e.Name() != "wazero" || e.Metering() {
		t.Fatalf("Name %q Metering %v", e.Name(), e.Metering())
	}
	var _ executor.Meterer = e
	ctx := context.Background()
	_, err := e.Compile(ctx, executor.ModuleSpec{Name: "echo", Wasm: enginetest.Agent(t, "echo")})
	if !errors.Is(err, protocol.ErrLimit) {
		t.Errorf("a module over MaxModuleBytes: %v; want ErrLimit", err)
	}
	_, err = e.Compile(ctx, executor.ModuleSpec{Name: "noop", Wasm: enginetest.Agent(t, "noop"), Capabilities: []string{"net"}})
	if !errors.Is(err, protocol.ErrInvalidParams) || !strings.Contains(err.Error(), `"net"`) {
		t.Errorf("an unknown capability: %v; want ErrInvalidParams naming it", err)
	}
}

func TestWazeroCacheDir(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		e := newWazero(t, executor.WazeroOptions{CacheDir: dir})
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: "echo", Wasm: enginetest.Agent(t, "echo")})
		if err != nil {
			t.Fatal(err)
		}
		if out := m.Run(ctx, executor.Invocation{Input: []byte("cached")}); out.Err != nil || string(out.Output) != "cached" {
			t.Fatalf("run %d: %+v %q", i, out.Err, out.Output)
		}
		if err := e.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(entries) == 0 {
		t.Fatal("nothing in the compilation cache directory")
	}
}

// TestWazeroProgressAllocs: fabric.progress does not allocate per call.
func TestWazeroProgressAllocs(t *testing.T) {
	e := newWazero(t, executor.WazeroOptions{})
	defer e.Close(context.Background())
	ctx := context.Background()
	allocs := func(agent string) float64 {
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: agent, Wasm: enginetest.Agent(t, agent)})
		if err != nil {
			t.Fatal(err)
		}
		in := executor.Invocation{OnProgress: func(float64) {}}
		return testing.AllocsPerRun(3, func() {
			if out := m.Run(ctx, in); out.Err != nil {
				t.Fatal(out.Err)
			}
		})
	}
	noop, flood := allocs("noop"), allocs("progressflood")
	if flood-noop > 20 {
		t.Fatalf("200000 progress calls cost %v allocations over a run's %v", flood-noop, noop)
	}
}

// TestWazeroUnmaps: runs leave no memory mapping behind.
func TestWazeroUnmaps(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/maps")
	}
	e := newWazero(t, executor.WazeroOptions{})
	defer e.Close(context.Background())
	ctx := context.Background()
	var mods []executor.Module
	for _, a := range []string{"membomb", "bigmem", "echo_fabric", "trap"} {
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: a, Wasm: enginetest.Agent(t, a)})
		if err != nil {
			t.Fatal(err)
		}
		mods = append(mods, m)
	}
	maps := func() int {
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Count(b, []byte("\n"))
	}
	runAll := func() {
		for _, m := range mods {
			m.Run(ctx, executor.Invocation{MemoryLimitBytes: 4 << 20, Timeout: 10 * time.Second})
		}
	}
	runAll()
	before := maps()
	for i := 0; i < 50; i++ {
		runAll()
	}
	if after := maps(); after > before+20 {
		t.Fatalf("%d mappings before 200 runs, %d after", before, after)
	}
}

// TestWazeroGCWhileGuestsLoop: the garbage collector's stop-the-world
// completes while guests run endless loops and loop-free recursions. A
// guest in compiled code has no safepoint of its own; without the yields of
// its instrumentation this test hangs the whole process, timers included.
func TestWazeroGCWhileGuestsLoop(t *testing.T) {
	e := newWazero(t, executor.WazeroOptions{})
	defer e.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, agent := range []string{"loop", "fib"} {
		m, err := e.Compile(ctx, executor.ModuleSpec{Name: agent, Wasm: enginetest.Agent(t, agent)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out := m.Run(ctx, executor.Invocation{}); out.Err == nil || out.Err.Code != protocol.CodeCancelled {
				t.Errorf("%s: %+v; want cancelled", agent, out.Err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let both enter their guests
	start := time.Now()
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("5 collections took %s while guests ran", d)
	}
	cancel()
	wg.Wait()
}

// TestWazeroTrapTrace: a trap's message is the guest's own stack trace,
// without the frame of the trampoline the host calls the guest through.
func TestWazeroTrapTrace(t *testing.T) {
	e := newWazero(t, executor.WazeroOptions{})
	defer e.Close(context.Background())
	m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: "trap", Wasm: enginetest.Agent(t, "trap")})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		out := m.Run(context.Background(), executor.Invocation{MemoryLimitBytes: 1 << 20})
		if out.Err == nil || out.Err.Code != protocol.CodeTrap {
			t.Fatalf("trap: %+v; want a trap", out.Err)
		}
		if !strings.HasPrefix(out.Err.Message, "wasm error: unreachable\nwasm stack trace:\n\t") ||
			strings.Contains(out.Err.Message, "trampoline") || strings.HasSuffix(out.Err.Message, "\n") {
			t.Fatalf("trap message %q; want wazero's with the guest's frames only", out.Err.Message)
		}
	}
}
