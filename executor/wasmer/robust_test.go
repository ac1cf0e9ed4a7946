//go:build wasmer

package wasmer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/protocol"
)

func compileAgent(t testing.TB, e *Engine, agent string) *module {
	t.Helper()
	m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: agent, Wasm: enginetest.Agent(t, agent)})
	if err != nil {
		t.Fatalf("Compile(%s): %v", agent, err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m.(*module)
}

func wantCode(t testing.TB, out executor.Outcome, code string, parts ...string) {
	t.Helper()
	if out.Err == nil {
		t.Fatalf("outcome: success (output %.100q); want %s", out.Output, code)
	}
	if out.Err.Code != code {
		t.Fatalf("outcome %s: %s; want %s", out.Err.Code, out.Err.Message, code)
	}
	for _, p := range parts {
		if !strings.Contains(out.Err.Message, p) {
			t.Fatalf("outcome %s message %q; want it to contain %q", code, out.Err.Message, p)
		}
	}
}

func wantSuccess(t testing.TB, out executor.Outcome, output string) {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("outcome %s: %s; want success", out.Err.Code, out.Err.Message)
	}
	if string(out.Output) != output {
		t.Fatalf("output %q; want %q", out.Output, output)
	}
}

// livePids lists the pool's workers.
func (p *pool) livePids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for w := range p.procs {
		pids = append(pids, w.pid)
	}
	return pids
}

// waitWorkers polls until the pool has n live workers.
func waitWorkers(t testing.TB, e *Engine, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := e.pool.livePids()
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d live workers; want %d", len(pids), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNativeCrash: a fault in native code kills the worker running the task;
// the task fails as internal, with the worker's last words, and the engine
// replaces the worker and goes on serving.
func TestNativeCrash(t *testing.T) {
	e := newEngine(t, Options{Workers: 1, testHooks: true})
	m := compileAgent(t, e, "echo_fabric")
	before := waitWorkers(t, e, 1)
	out := m.run(context.Background(), testInvocation([]byte("hi")), crashCgo)
	wantCode(t, out, protocol.CodeInternal, "died", "SIGSEGV")
	if !out.Err.Retryable {
		t.Error("a crashed worker's task is not retryable; want retryable")
	}
	wantSuccess(t, m.Run(context.Background(), testInvocation([]byte("again"))), "again")
	if after := waitWorkers(t, e, 1); after[0] == before[0] {
		t.Errorf("the crashed worker %d still serves", before[0])
	}
}

// TestHostFunctionPanic: a Go panic in a host function fails the task as
// internal; the worker survives it.
func TestHostFunctionPanic(t *testing.T) {
	e := newEngine(t, Options{Workers: 1, testHooks: true})
	m := compileAgent(t, e, "echo_fabric")
	before := waitWorkers(t, e, 1)
	out := m.run(context.Background(), testInvocation([]byte("hi")), crashHostFn)
	wantCode(t, out, protocol.CodeInternal, "fabric.progress panicked", "test hook")
	wantSuccess(t, m.Run(context.Background(), testInvocation([]byte("again"))), "again")
	if after := waitWorkers(t, e, 1); after[0] != before[0] {
		t.Errorf("worker %d was replaced by %d; want it to survive a host panic", before[0], after[0])
	}
}

// TestWorkerKilledFromOutside: a worker killed under a running task (the
// OOM killer, an operator) fails that task as internal.
func TestWorkerKilledFromOutside(t *testing.T) {
	e := newEngine(t, Options{Workers: 1})
	m := compileAgent(t, e, "loop")
	pid := waitWorkers(t, e, 1)[0]
	done := make(chan executor.Outcome, 1)
	go func() {
		in := testInvocation(nil)
		in.Timeout = time.Minute
		done <- m.Run(context.Background(), in)
	}()
	// Kill the worker once the guest is looping in it.
	waitBusy(t, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-done:
		wantCode(t, out, protocol.CodeInternal, "died", "killed")
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not end when its worker was killed")
	}
	waitWorkers(t, e, 1)
}

// waitBusy polls until process pid has used 50 ms of CPU time more than
// when it was first looked at: a guest is spinning in it.
func waitBusy(t testing.TB, pid int) {
	t.Helper()
	cpu := func() int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		// Fields after the command's closing parenthesis; utime is the 14th
		// field of the line, the 12th after it.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		utime, _ := strconv.Atoi(fields[11])
		return utime
	}
	start := cpu()
	deadline := time.Now().Add(30 * time.Second)
	for cpu() < start+5 { // clock ticks of 10 ms
		if time.Now().After(deadline) {
			t.Fatalf("worker %d did not get busy", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTimeoutReplacesWorker: a timeout kills the worker; the pool is whole
// again afterwards and serves at full concurrency.
func TestTimeoutReplacesWorker(t *testing.T) {
	e := newEngine(t, Options{Workers: 2})
	loop := compileAgent(t, e, "loop")
	counter := compileAgent(t, e, "counter")
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := testInvocation(nil)
			in.Timeout = 100 * time.Millisecond
			wantCode(t, loop.Run(context.Background(), in), protocol.CodeTimeout, "timeout of 100ms")
		}()
	}
	wg.Wait()
	waitWorkers(t, e, 2)
	// Two runs held at their progress call at once need two workers.
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := testInvocation(nil)
			in.OnProgress = func(float64) { arrived.Done(); <-both }
			wantSuccess(t, counter.Run(context.Background(), in), "g=1 m=1")
		}()
	}
	wg.Wait()
}

// TestStackOverflowsInARow: deep recursion traps, again and again, in the
// same worker, whose guest thread goes on serving.
func TestStackOverflowsInARow(t *testing.T) {
	e := newEngine(t, Options{Workers: 1, StackBytes: 1 << 20})
	m := compileAgent(t, e, "recurse")
	echo := compileAgent(t, e, "echo_fabric")
	pid := waitWorkers(t, e, 1)[0]
	for i := 0; i < 3; i++ {
		wantCode(t, m.Run(context.Background(), testInvocation(nil)), protocol.CodeTrap, "call stack exhausted")
		wantSuccess(t, echo.Run(context.Background(), testInvocation([]byte("after"))), "after")
	}
	if now := waitWorkers(t, e, 1)[0]; now != pid {
		t.Errorf("worker %d replaced by %d; want no crash", pid, now)
	}
}

// TestStackBytes: the guest's stack is Options.StackBytes. testdata/depth
// recursing 100,000 deep needs some 3 MiB (32 bytes a frame with Cranelift,
// 64 with Singlepass): it overflows 1 MiB, on every run, and fits the
// default 8 MiB; a shallow run after an overflow succeeds on the same thread.
func TestStackBytes(t *testing.T) {
	wasm, err := os.ReadFile(filepath.Join("testdata", "depth.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	deep, shallow := spinInput(100_000), spinInput(1_000)
	for _, c := range []struct {
		stack    uint64
		compiler string
		fits     bool
	}{
		{1 << 20, CompilerCranelift, false},
		{1 << 20, CompilerSinglepass, false},
		{0, CompilerCranelift, true},
		{0, CompilerSinglepass, true},
	} {
		e := newEngine(t, Options{Workers: 1, StackBytes: c.stack, Compiler: c.compiler})
		m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: "depth", Wasm: wasm})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			out := m.Run(context.Background(), testInvocation(deep))
			if c.fits {
				wantSuccess(t, out, "")
			} else {
				wantCode(t, out, protocol.CodeTrap, "call stack exhausted")
			}
			wantSuccess(t, m.Run(context.Background(), testInvocation(shallow)), "")
		}
		_ = m.Close(context.Background())
	}
}

// TestWorkerMemoryFlat: a worker's memory does not grow with the tasks it
// runs. wasmer-go's instantiation leaks C memory for every import of every
// instance, and wasmer's host-call trampoline the vectors of every call
// (together some 360 bytes a task of echo_fabric, 32 bytes a host call): the
// engine instantiates through the C API with imports resolved once, and
// frees those vectors. Without that, the runs below grow the worker by some
// 7 MiB (echo_fabric) and 12 MiB (progressflood's 400,000 host calls).
func TestWorkerMemoryFlat(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's own memory grows the worker (some 2.6 MiB over these runs)")
	}
	e := newEngine(t, Options{Workers: 1})
	echo := compileAgent(t, e, "echo_fabric")
	flood := compileAgent(t, e, "progressflood")
	pid := waitWorkers(t, e, 1)[0]
	run := func(m *module, n int) {
		for i := 0; i < n; i++ {
			if out := m.Run(context.Background(), testInvocation([]byte("hi"))); out.Err != nil {
				t.Fatalf("%s: %v", m.key, out.Err)
			}
		}
	}
	run(echo, 1000)
	run(flood, 1)
	before := residentBytes(t, pid)
	run(echo, 20_000)
	run(flood, 2)
	after := residentBytes(t, pid)
	if grew := int64(after) - int64(before); grew > 2<<20 {
		t.Errorf("the worker grew by %d KiB over 20,000 tasks and 400,000 host calls; want under 2 MiB", grew>>10)
	}
	if now := waitWorkers(t, e, 1)[0]; now != pid {
		t.Fatalf("worker %d replaced by %d", pid, now)
	}
}

// residentBytes is process pid's resident set (VmRSS).
func residentBytes(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no VmRSS line", pid)
	return 0
}

// TestMemoryQuotaPerRun: one compiled module runs under any quota, each run
// held to its own.
func TestMemoryQuotaPerRun(t *testing.T) {
	e := newEngine(t, Options{Workers: 1, MaxMemoryBytes: 64 << 20})
	m := compileAgent(t, e, "membomb")
	for _, mib := range []uint64{2, 17, 8, 64, 3} {
		in := testInvocation(nil)
		in.MemoryLimitBytes = mib << 20
		out := m.Run(context.Background(), in)
		wantCode(t, out, protocol.CodeMemoryLimit, fmt.Sprintf("quota of %d bytes", mib<<20))
		// membomb grows 1 MiB at a time from one page.
		if p := out.Usage.MemoryPeakMB; p > float64(mib) || p <= float64(mib)-1 {
			t.Errorf("quota %d MiB: memory_peak_mb %v; want within (%d, %d]", mib, p, mib-1, mib)
		}
	}
	// A quota above the ceiling is the ceiling.
	in := testInvocation(nil)
	in.MemoryLimitBytes = 1 << 40
	out := m.Run(context.Background(), in)
	wantCode(t, out, protocol.CodeMemoryLimit)
	if out.Usage.MemoryPeakMB > 64 {
		t.Errorf("memory_peak_mb %v above the 64 MiB ceiling", out.Usage.MemoryPeakMB)
	}
}

// TestWorkerLimits: each worker runs under the RLIMIT_DATA it was given.
func TestWorkerLimits(t *testing.T) {
	e := newEngine(t, Options{Workers: 1, MaxMemoryBytes: 64 << 20, WorkerDataBytes: 800 << 20})
	pid := waitWorkers(t, e, 1)[0]
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "Max data size") {
			fields := strings.Fields(sc.Text())
			if got, _ := strconv.ParseUint(fields[3], 10, 64); got != 800<<20 {
				t.Fatalf("worker's %q; want %d", sc.Text(), 800<<20)
			}
			return
		}
	}
	t.Fatal("no Max data size in /proc/pid/limits")
}

func spinInput(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }

// TestFuel: a metered run stops when its fuel runs out, reports what it
// used, and uses the same on every run.
func TestFuel(t *testing.T) {
	e := newEngine(t, Options{Workers: 1})
	if !e.Metering() {
		t.Fatal("Metering() is false; the wasmer library that wasmer-go ships meters")
	}
	spin := compileAgent(t, e, "spin")
	// A task whose timeout passes while the metered variant compiles does
	// not stop the compilation for the next one.
	in := testInvocation(spinInput(1000))
	in.Fuel = 1_000_000
	in.Timeout = time.Microsecond
	wantCode(t, spin.Run(context.Background(), in), protocol.CodeTimeout)
	in.Timeout = time.Minute
	out := spin.Run(context.Background(), in)
	if out.Err != nil {
		t.Fatalf("spin 1000 with 1e6 fuel: %s: %s", out.Err.Code, out.Err.Message)
	}
	if out.Usage.FuelConsumed == nil || *out.Usage.FuelConsumed == 0 || *out.Usage.FuelConsumed >= in.Fuel {
		t.Fatalf("fuel_consumed %v; want within (0, %d)", out.Usage.FuelConsumed, in.Fuel)
	}
	again := spin.Run(context.Background(), in)
	if again.Usage.FuelConsumed == nil || *again.Usage.FuelConsumed != *out.Usage.FuelConsumed {
		t.Errorf("fuel_consumed %v then %v; want the same", *out.Usage.FuelConsumed, again.Usage.FuelConsumed)
	}
	more := testInvocation(spinInput(2000))
	more.Fuel = in.Fuel
	if m := spin.Run(context.Background(), more); m.Usage.FuelConsumed == nil || *m.Usage.FuelConsumed <= *out.Usage.FuelConsumed {
		t.Errorf("twice the work consumed %v fuel, no more than %d", m.Usage.FuelConsumed, *out.Usage.FuelConsumed)
	}

	in = testInvocation(spinInput(100_000_000))
	in.Fuel = 50_000
	out = spin.Run(context.Background(), in)
	wantCode(t, out, protocol.CodeFuelExhausted, "fuel of 50000")
	if out.Err.Retryable {
		t.Error("fuel_exhausted is retryable; want not")
	}
	if out.Usage.FuelConsumed == nil || *out.Usage.FuelConsumed != in.Fuel {
		t.Errorf("fuel_consumed %v; want all of %d", out.Usage.FuelConsumed, in.Fuel)
	}

	loop := compileAgent(t, e, "loop")
	in = testInvocation(nil)
	in.Fuel = 1_000_000
	wantCode(t, loop.Run(context.Background(), in), protocol.CodeFuelExhausted)

	plain := spin.Run(context.Background(), testInvocation(spinInput(1000)))
	if plain.Err != nil || plain.Usage.FuelConsumed != nil {
		t.Errorf("unmetered run: %v, fuel_consumed %v; want success without fuel_consumed", plain.Err, plain.Usage.FuelConsumed)
	}
}

// TestNewWithoutWorkerMain: a binary whose main does not serve as a worker
// is refused at New, with a message that says what is missing.
func TestNewWithoutWorkerMain(t *testing.T) {
	_, err := New(Options{Workers: 1, Executable: "/bin/true", StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "WorkerMain") {
		t.Fatalf("New with /bin/true: %v; want an error naming WorkerMain", err)
	}
	_, err = New(Options{Workers: 1, Executable: "/nonexistent/fabricd"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/fabricd") {
		t.Fatalf("New with a missing binary: %v; want an error naming it", err)
	}
	t.Setenv(workerEnv, workerEnvValue)
	if _, err = New(Options{Workers: 1}); err == nil || !strings.Contains(err.Error(), "WorkerMain") {
		t.Fatalf("New inside a worker: %v; want an error naming WorkerMain", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{MaxMemoryBytes: 5 << 30}, "MaxMemoryBytes"},
		{Options{MaxMemoryBytes: 100}, "MaxMemoryBytes"},
		{Options{MaxModuleBytes: -1}, "MaxModuleBytes"},
		{Options{Workers: -1}, "Workers"},
		{Options{StackBytes: 4096}, "StackBytes"},
		{Options{MaxMemoryBytes: 1 << 30, WorkerDataBytes: 1 << 20}, "WorkerDataBytes"},
		{Options{StartTimeout: -time.Second}, "StartTimeout"},
		{Options{Compiler: "llvm"}, "Compiler"},
	} {
		if err := c.opts.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v): %v; want an error naming %s", c.opts, err, c.want)
		}
	}
	var o Options
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.MaxMemoryBytes != executor.DefaultMaxMemoryBytes || o.Workers < 1 || o.StackBytes != DefaultStackBytes ||
		o.WorkerDataBytes != o.MaxMemoryBytes+defaultDataOverhead || o.Executable == "" {
		t.Errorf("defaults: %+v", o)
	}
}

// TestCloseUnderRuns: closing the engine stops running guests (internal),
// refuses later work and leaves no worker behind.
func TestCloseUnderRuns(t *testing.T) {
	e, err := New(Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: "loop", Wasm: enginetest.Agent(t, "loop")})
	if err != nil {
		t.Fatal(err)
	}
	pids := waitWorkers(t, e, 2)
	outs := make(chan executor.Outcome, 3)
	for i := 0; i < 3; i++ { // the third waits for a worker
		go func() {
			in := testInvocation(nil)
			in.Timeout = time.Minute
			outs <- m.Run(context.Background(), in)
		}()
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := 0; i < 3; i++ {
		wantCode(t, <-outs, protocol.CodeInternal, "closed")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker %d outlived Close: kill(0) = %v", pid, err)
		}
	}
	if _, err := e.Compile(context.Background(), executor.ModuleSpec{Name: "loop", Wasm: enginetest.Agent(t, "loop")}); !errors.Is(err, protocol.ErrShuttingDown) {
		t.Errorf("Compile after Close: %v; want ErrShuttingDown", err)
	}
	if err := e.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCacheDir: a second engine on the same cache directory loads the
// compiled module instead of compiling it; a damaged cache file is replaced.
func TestCacheDir(t *testing.T) {
	dir := t.TempDir()
	wasm := enginetest.Agent(t, "echo_fabric")
	spec := executor.ModuleSpec{Name: "echo", Wasm: wasm}
	e1 := newEngine(t, Options{Workers: 1, CacheDir: dir})
	m, err := e1.Compile(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	wantSuccess(t, m.Run(context.Background(), testInvocation([]byte("one"))), "one")
	ins, _ := instrument(wasm)
	path := e1.cachePath(ins.Wasm)
	art, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no cache file after Compile: %v", err)
	}
	if !bytes.Equal(art, m.(*module).artifacts[0]) {
		t.Error("the cache file is not the module's artifact")
	}

	var logs bytes.Buffer
	e2 := newEngine(t, Options{Workers: 1, CacheDir: dir})
	e2.log = zerolog.New(&logs).Level(zerolog.DebugLevel)
	m2, err := e2.Compile(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "loaded from the cache") {
		t.Errorf("the second engine compiled again; logs: %s", logs.String())
	}
	wantSuccess(t, m2.Run(context.Background(), testInvocation([]byte("two"))), "two")

	if err := os.WriteFile(path, []byte("not an artifact"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	m3, err := e2.Compile(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	wantSuccess(t, m3.Run(context.Background(), testInvocation([]byte("three"))), "three")
	if !strings.Contains(logs.String(), "does not load") {
		t.Errorf("a damaged cache file was not reported; logs: %s", logs.String())
	}
	// The artifact replaced the damaged file (compiling twice need not give
	// the same bytes): the next Compile loads it.
	logs.Reset()
	if _, err := e2.Compile(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "loaded from the cache") {
		t.Errorf("the damaged cache file was not replaced; logs: %s", logs.String())
	}
	// A module wasmer refuses stays refused, whatever the cache holds.
	if _, err := e2.Compile(context.Background(), executor.ModuleSpec{Name: "x", Wasm: growModuleReserved(0, 0x80, 0x00)}); !errors.Is(err, protocol.ErrInvalidModule) {
		t.Errorf("Compile of an invalid module: %v; want ErrInvalidModule", err)
	}
}

// TestWorkerEnvironment: a worker sees none of the server's environment but
// what the loader and the Go runtime need.
func TestWorkerEnvironment(t *testing.T) {
	t.Setenv("FABRIC_TOKEN", "secret")
	t.Setenv("GOGC", "150")
	e := newEngine(t, Options{Workers: 1})
	pid := waitWorkers(t, e, 1)[0]
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	env := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	has := func(kv string) bool {
		for _, e := range env {
			if e == kv {
				return true
			}
		}
		return false
	}
	if has("FABRIC_TOKEN=secret") || !has("GOGC=150") || !has(workerEnv+"="+workerEnvValue) {
		t.Errorf("worker environment %q; want the worker marker and GOGC, without FABRIC_TOKEN", env)
	}
}
