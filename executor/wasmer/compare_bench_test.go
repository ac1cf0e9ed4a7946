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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/protocol"
)

// The benchmarks of this file put both engines beside wasmer-go itself, in
// one run, for the targets of issue 4:
//
//	go test -tags wasmer -run '^$' -bench 'Instantiate|Grow16|Spin' ./executor/wasmer/
//
// "bare" is wasmer-go v1.0.4 called in this process, as its documentation
// shows (no worker, no instrumentation, no outcome); "wazero" and "wasmer"
// are a task run through executor.Wazero and this package's Engine.

// bareModule compiles wasm with wasmer-go (Cranelift, as the Engine does).
func bareModule(b *testing.B, wasm []byte) *wasmer.Module {
	b.Helper()
	store := wasmer.NewStore(wasmer.NewEngineWithConfig(wasmer.NewConfig().UseUniversalEngine().UseCraneliftCompiler()))
	m, err := wasmer.NewModule(store, wasm)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		m.Close()
		store.Close()
	})
	return m
}

// bareRun instantiates m, calls entry (() -> i32) and closes the instance.
func bareRun(b *testing.B, m *wasmer.Module, entry string) {
	inst, err := wasmer.NewInstance(m, wasmer.NewImportObject())
	if err != nil {
		b.Fatal(err)
	}
	fn, err := inst.Exports.GetFunction(entry)
	if err != nil {
		b.Fatal(err)
	}
	res, err := fn()
	if err != nil {
		b.Fatal(err)
	}
	if res.(int32) != 0 {
		b.Fatalf("%s returned %v; want 0", entry, res)
	}
	inst.Close()
}

func wazeroEngine(b *testing.B) *executor.Wazero {
	b.Helper()
	e, err := executor.NewWazero(executor.WazeroOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func compileSpec(b *testing.B, e executor.Engine, spec executor.ModuleSpec) executor.Module {
	b.Helper()
	m, err := e.Compile(context.Background(), spec)
	if err != nil {
		b.Fatalf("Compile(%s): %v", spec.Name, err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// runTasks runs inv on m b.N times and reports, beside the time per task,
// the CPU time per task of this process (cpu-us/op: the engine's side, the
// benchmark's loop and the Go runtime) and, for the wasmer engine (e not
// nil), of its workers (worker-us/op).
func runTasks(b *testing.B, e *Engine, m executor.Module, inv executor.Invocation) {
	ctx := context.Background()
	if out := m.Run(ctx, inv); out.Err != nil { // warm: the worker loads the module
		b.Fatal(out.Err)
	}
	var pids []int
	if e != nil {
		pids = e.pool.livePids()
	}
	self0, workers0 := selfCPU(b), procsCPU(b, pids)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out := m.Run(ctx, inv); out.Err != nil { // a fabric-v1 entry returning 1 is agent_error
			b.Fatal(out.Err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((selfCPU(b)-self0).Microseconds())/float64(b.N), "cpu-us/op")
	if e != nil {
		if now := e.pool.livePids(); !slices.Equal(now, pids) {
			b.Fatalf("workers %v became %v: a worker was replaced", pids, now)
		}
		b.ReportMetric(float64((procsCPU(b, pids)-workers0).Microseconds())/float64(b.N), "worker-us/op")
	}
}

// selfCPU is the CPU time this process has used.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procsCPU is the CPU time the processes pids have used, from
// /proc/PID/stat (utime and stime, in USER_HZ ticks of 10 ms).
func procsCPU(b *testing.B, pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The fields after the command's closing parenthesis begin with the
		// state (field 3); utime and stime are fields 14 and 15.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			b.Fatalf("/proc/%d/stat: %d fields after the command; want at least 13", pid, len(f))
		}
		for _, s := range f[11:13] {
			ticks, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				b.Fatalf("/proc/%d/stat: %v", pid, err)
			}
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return total
}

// BenchmarkInstantiate is a fresh instance of the smallest module (noop:
// one page of memory, run returns 0, no imports), issue 4's "a fresh
// instance of a small module costs no more than wasmer's instantiate":
//
//	bare/instantiate            wasmer-go's NewInstance and Close
//	bare/instantiate-call-close the same with run called
//	wazero/task                 a task on executor.Wazero: Run, outcome built
//	wasmer/task                 a task on this package's Engine (one worker)
func BenchmarkInstantiate(b *testing.B) {
	wasm := enginetest.Agent(b, "noop")
	b.Run("bare/instantiate", func(b *testing.B) {
		m := bareModule(b, wasm)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			inst, err := wasmer.NewInstance(m, wasmer.NewImportObject())
			if err != nil {
				b.Fatal(err)
			}
			inst.Close()
		}
	})
	b.Run("bare/instantiate-call-close", func(b *testing.B) {
		m := bareModule(b, wasm)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			bareRun(b, m, "run")
		}
	})
	spec := executor.ModuleSpec{Name: "noop", Wasm: wasm}
	b.Run("wazero/task", func(b *testing.B) {
		runTasks(b, nil, compileSpec(b, wazeroEngine(b), spec), benchInv(nil, 0))
	})
	b.Run("wasmer/task", func(b *testing.B) {
		e := newEngine(b, Options{Workers: 1})
		runTasks(b, e, compileSpec(b, e, spec), benchInv(nil, 0))
	})
}

// BenchmarkGrow16 is issue 4's "an agent that grows its memory to 16 MiB":
// testdata/grow16.wat grows from one page to 256 in 1 MiB steps, then writes
// a byte per 64 KiB wasm page (run) or per 4 KiB OS page (run_dense, every
// page of the 16 MiB faulted in). Each iteration is a fresh instance: bare
// wasmer-go instantiates, calls and closes; the engines run a task (64 MiB
// quota).
func BenchmarkGrow16(b *testing.B) {
	wasm, err := os.ReadFile(filepath.Join("testdata", "grow16.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	for _, entry := range []string{"run", "run_dense"} {
		b.Run("bare/"+entry, func(b *testing.B) {
			m := bareModule(b, wasm)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bareRun(b, m, entry)
			}
		})
		spec := executor.ModuleSpec{Name: "grow16", Wasm: wasm, Entry: entry}
		b.Run("wazero/"+entry, func(b *testing.B) {
			runTasks(b, nil, compileSpec(b, wazeroEngine(b), spec), benchInv(nil, 0))
		})
		b.Run("wasmer/"+entry, func(b *testing.B) {
			e := newEngine(b, Options{Workers: 1})
			runTasks(b, e, compileSpec(b, e, spec), benchInv(nil, 0))
		})
	}
}

// BenchmarkWorkerRun is the worker's side of a task without the pipes: a
// worker in this process, on a guest thread, serves run requests of noop
// and of grow16 (decoding, instantiating, calling, the outcome's frame
// written to memory, the instance closed), so that the engine's per-task
// cost splits into the worker's and the round trip's.
func BenchmarkWorkerRun(b *testing.B) {
	grow, err := os.ReadFile(filepath.Join("testdata", "grow16.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, entry string
		wasm        []byte
	}{{"noop", "run", enginetest.Agent(b, "noop")}, {"grow16", "run", grow}} {
		b.Run(c.name, func(b *testing.B) {
			w := &worker{modules: map[moduleKey]*heldModule{}, cfg: initConfig{
				Version: protocolVersion, StackBytes: DefaultStackBytes, Compiler: CompilerCranelift}}
			var events bytes.Buffer
			w.ev.w = bufio.NewWriter(&events)
			if msg := w.setup(); msg != "" {
				b.Fatal(msg)
			}
			ins, err := instrument(c.wasm)
			if err != nil {
				b.Fatal(err)
			}
			if reply := w.compile(&compileRequest{Key: "m", Wasm: ins.Wasm}); reply.Err != "" {
				b.Fatal(reply.Err)
			}
			q := &runRequest{Key: "m", ABI: protocol.ABIFabricV1, Entry: c.entry, HasStart: ins.HasStart,
				HasMemory: ins.HasMemory, GrowGuarded: ins.GrowGuarded, QuotaPages: 1024,
				OutputLimit: 1 << 20, LogLimit: 64 << 10}
			payload := q.encode()
			var bad error
			b.ReportAllocs()
			b.ResetTimer()
			err = onGuestThread(DefaultStackBytes, func() { // b.Fatal must not end the guest thread
				for i := 0; i < b.N && bad == nil; i++ {
					events.Reset()
					if bad = w.request(msgRun, payload); bad == nil {
						bad = wantReturned(events.Bytes())
					}
				}
			})
			if err != nil || bad != nil {
				b.Fatalf("run: %v %v", err, bad)
			}
		})
	}
}

// wantReturned finds the evDone frame among events and checks that the
// entry returned 0.
func wantReturned(events []byte) error {
	for len(events) >= 5 {
		n := int(binary.LittleEndian.Uint32(events))
		if n < 1 || 4+n > len(events) {
			break
		}
		if events[4] == evDone {
			var done runDone
			if err := done.decode(events[5 : 4+n]); err != nil {
				return err
			}
			if done.End != endReturned || done.Return != 0 {
				return fmt.Errorf("the run ended %+v; want the entry to return 0", done)
			}
			return nil
		}
		events = events[4+n:]
	}
	return errors.New("no evDone frame among the events")
}
