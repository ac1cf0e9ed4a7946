//go:build wasmer

package wasmer

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/wasmerio/wasmer-go/wasmer"
	"golang.org/x/sys/unix"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// errStop is the error a host function returns to stop the guest; the
// reason is recorded in the run (RunState's stop, a WASI exit, ...).
var errStop = errors.New("guest stopped by the host")

// guestRun is one task's run inside a worker.
type guestRun struct {
	w    *worker
	q    *runRequest
	inv  executor.Invocation
	rs   executor.RunState // the worker's copy; the parent keeps another from the events
	wasi wasiCtx
	rand executor.SeededRand
	inst *instance
	mem  unsafe.Pointer // wasm_memory_t*, nil when the module has no memory

	wallNext, monoNext int64 // the fake clocks' next readings
	wasiFailed         string

	// sampled is the memory the flusher samples, so that the parent knows
	// the memory's size should it have to kill the worker.
	sampleMu  sync.Mutex
	sampled   unsafe.Pointer
	lastPages uint32
}

func newGuestRun(w *worker, q *runRequest) *guestRun {
	r := &guestRun{w: w, q: q}
	r.inv = executor.Invocation{Input: q.Input, OutputLimitBytes: q.OutputLimit, LogLimitBytes: q.LogLimit}
	r.rs.Init(&r.inv, q.ABI, q.Entry)
	r.wasi = wasiCtx{
		mem:    r.memory,
		args:   q.Args,
		stdout: &eventStdio{r: r, t: evStdout, local: r.rs.Stdout()},
		stderr: &eventStdio{r: r, t: evStderr, local: r.rs.Stderr()},
	}
	r.wasi.stdin.Reset(q.Input)
	if q.Clock {
		r.wasi.walltime = func() int64 { return time.Now().UnixNano() }
		r.wasi.nanotime = monotonic
		r.wasi.sleep = func(ns int64) { time.Sleep(time.Duration(ns)) }
	} else {
		r.wallNext = executor.FakeWallEpoch.UnixNano()
		r.wasi.walltime = func() int64 {
			v := r.wallNext
			r.wallNext += int64(executor.FakeClockStep)
			return v
		}
		r.wasi.nanotime = func() int64 {
			v := r.monoNext
			r.monoNext += int64(executor.FakeClockStep)
			return v
		}
		r.wasi.sleep = func(int64) {}
	}
	if q.Random {
		r.wasi.rand = crand.Reader
	} else {
		r.rand.Seed(q.Seed)
		r.wasi.rand = &r.rand
	}
	return r
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func threadCPU() uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// sampleMemory reports the memory's size to the parent when it changed.
func (r *guestRun) sampleMemory() {
	r.sampleMu.Lock()
	defer r.sampleMu.Unlock()
	if r.sampled == nil {
		return
	}
	if pages := memoryPages(r.sampled); pages != r.lastPages {
		r.lastPages = pages
		r.emit(evMemory, (&enc{}).u32(pages).b)
	}
}

func (r *guestRun) setSampled(m unsafe.Pointer) {
	r.sampleMu.Lock()
	defer r.sampleMu.Unlock()
	r.sampled = m
}

// memory is the guest's whole linear memory as it is now.
func (r *guestRun) memory() []byte {
	if r.mem == nil {
		return nil
	}
	return memoryBytes(r.mem)
}

// emit sends an event of the run to the parent.
func (r *guestRun) emit(t byte, payload []byte) {
	_ = r.w.ev.send(t, payload, false)
}

// eventStdio is the guest's fd 1 or 2: what it writes goes to the parent as
// an event and to the worker's RunState, which may stop the guest.
type eventStdio struct {
	r     *guestRun
	t     byte
	local interface{ Write([]byte) (int, error) }
}

func (s *eventStdio) Write(p []byte) (int, error) {
	if s.r.rs.Stopped() == nil {
		s.r.emit(s.t, (&enc{}).bytes(p).b)
	}
	n, err := s.local.Write(p)
	if errors.Is(err, executor.ErrGuestStopped) {
		return n, errStop
	}
	return n, err
}

// run instantiates m, runs the module's start function, _initialize and the
// entry, and reports how the run ended.
func (r *guestRun) run(es *engineState, m *heldModule) runDone {
	q := r.q
	var done runDone
	// The guest thread's CPU time (onGuestThread: this goroutine is locked
	// to it), read once before and once after: a read is a system call.
	cpu0 := threadCPU()
	inst, err := instantiate(es, m)
	if err != nil {
		done = runDone{End: endError, Code: protocol.CodeTrap, Message: "instantiating the module: " + err.Error()}
		done.CPUNanos = threadCPU() - cpu0
		return done
	}
	r.inst = inst
	defer func() {
		r.setSampled(nil)
		r.inst, r.mem = nil, nil
		r.w.spent = inst // closed once the parent has the outcome
	}()
	if q.HasMemory {
		if r.mem, err = inst.memory(exportMemory); err != nil {
			return internalDone("the instrumented module's memory: %v", err)
		}
		r.setSampled(r.mem)
	}
	var refused unsafe.Pointer
	if q.GrowGuarded {
		quota, err := inst.global(exportQuota)
		if err == nil {
			refused, err = inst.global(exportRefused)
		}
		if err != nil {
			return internalDone("setting the memory quota: %v", err)
		}
		globalSetI32(quota, int32(uint32(q.QuotaPages)))
	}
	if q.Metered {
		pointsSet(inst, q.Fuel)
	}

	type phase struct {
		export, where string
		results       int
	}
	var phases []phase
	if q.HasStart {
		phases = append(phases, phase{exportStart, "instantiating the module: ", 0})
	}
	if q.Initialize {
		phases = append(phases, phase{executor.InitializeExport, executor.InitializeExport + ": ", 0})
	}
	results := 0
	if q.ABI == protocol.ABIFabricV1 {
		results = 1
	}
	phases = append(phases, phase{q.Entry, "", results})
	for _, p := range phases {
		f, err := inst.function(p.export)
		if err != nil {
			done = internalDone("%v", err)
			break
		}
		res, err := callGuest(f, p.results)
		if err != nil {
			done = internalDone("%v", err)
			break
		}
		done = r.classify(res, p.where)
		if res.Trapped || done.End != endNormal {
			break
		}
		if p.results == 1 {
			done.End, done.Return = endReturned, res.Value
		}
	}

	if stop := r.rs.Stopped(); stop != nil {
		done.StopCode, done.StopMessage = stop.Code, stop.Message
	}
	done.CPUNanos = threadCPU() - cpu0
	if r.mem != nil {
		done.PeakBytes = uint64(memoryPages(r.mem)) * executor.WasmPageSize
	}
	if refused != nil {
		done.MemoryRefused = globalGetI32(refused) != 0
	}
	if q.Metered {
		done.Metered = true
		if pointsExhausted(inst) {
			done.FuelConsumed = q.Fuel
		} else {
			done.FuelConsumed = q.Fuel - min(q.Fuel, pointsGet(inst))
		}
	}
	return done
}

// classify says how a guest call ended, in the wazero engine's terms and
// order: the host's stop, then a WASI exit, then the guest's own failure.
func (r *guestRun) classify(res callResult, where string) runDone {
	if !res.Trapped {
		return runDone{End: endNormal}
	}
	switch {
	case r.rs.Stopped() != nil:
		return runDone{End: endNormal} // the RunState has the reason
	case r.wasi.exited:
		if r.wasi.exitStatus == 0 {
			return runDone{End: endNormal}
		}
		return runDone{End: endExit, ExitStatus: r.wasi.exitStatus}
	case r.wasiFailed != "":
		return runDone{End: endError, Code: protocol.CodeInternal, Message: fmt.Sprintf(
			"%s%s.%s on a stdio descriptor: it has no file system to set times on", where, executor.WASIModule, r.wasiFailed)}
	case r.q.Metered && pointsExhausted(r.inst):
		return runDone{End: endError, Code: protocol.CodeFuelExhausted, Message: fmt.Sprintf(
			"%sthe task used up its fuel of %d", where, r.q.Fuel)}
	case strings.Contains(res.Trap, "call stack exhausted"):
		return runDone{End: endError, Code: protocol.CodeTrap, Message: fmt.Sprintf(
			"%scall stack exhausted (stack overflow): the guest recursed too deeply\nwasm error: %s", where, res.Trap)}
	}
	return runDone{End: endError, Code: protocol.CodeTrap, Message: fmt.Sprintf("%swasm error: %s", where, res.Trap)}
}

// hostTable lists every host function; a function's index is its id in
// fabHostCall. It is built once, at init, and never changes.
var hostTable = buildHostTable()

func buildHostTable() []hostFunc {
	var t []hostFunc
	for _, f := range executor.FabricFunctions {
		impl, ok := fabricImpls[f.Name]
		if !ok {
			panic("no implementation of fabric." + f.Name)
		}
		t = append(t, hostFunc{module: executor.FabricModule, name: f.Name,
			params: f.Type.Params, results: f.Type.Results, call: impl})
	}
	for _, f := range wasiFunctions {
		hf := hostFunc{module: executor.WASIModule, name: f.name, params: f.params}
		if !f.noErrno {
			hf.results = []executor.ValType{i32}
		}
		fn := f.fn
		hf.call = func(r *guestRun, p []uint64) (uint64, bool) {
			errno, err := fn(&r.wasi, p)
			switch {
			case err == errWASIPanic:
				r.wasiFailed = hf.name
				return 0, true
			case err != nil:
				return 0, true
			}
			return uint64(errno), false
		}
		t = append(t, hf)
	}
	return t
}

// callHost serves a host call of the run; a Go panic in it becomes the
// run's internal error (a panic must not unwind through wasmer's frames).
func (r *guestRun) callHost(f *hostFunc, p []uint64) (res uint64, stop bool) {
	defer func() {
		if v := recover(); v != nil {
			r.rs.Panicked(f.module+"."+f.name, v)
			res, stop = 0, true
		}
	}()
	return f.call(r, p)
}

// hostImports creates the store's host functions, once; they serve
// whichever run is current. It returns them (to keep alive) and their
// externs by hostKey, which modules' imports are resolved against.
func hostImports(store *wasmer.Store) ([]*wasmer.Function, map[string]unsafe.Pointer, error) {
	var keep []*wasmer.Function
	externs := map[string]unsafe.Pointer{}
	for id, f := range hostTable {
		fn, err := newHostFunction(store, funcType(f.params, f.results), id)
		if err != nil {
			return nil, nil, fmt.Errorf("host function %s.%s: %w", f.module, f.name, err)
		}
		keep = append(keep, fn)
		externs[hostKey(f.module, f.name)] = hostExtern(fn)
	}
	return keep, externs, nil
}

func funcType(params, results []executor.ValType) *wasmer.FunctionType {
	return wasmer.NewFunctionType(valueTypes(params), valueTypes(results))
}

func valueTypes(ts []executor.ValType) []*wasmer.ValueType {
	kinds := make([]wasmer.ValueKind, len(ts))
	for i, t := range ts {
		switch t {
		case executor.I32:
			kinds[i] = wasmer.I32
		case executor.I64:
			kinds[i] = wasmer.I64
		case executor.F32:
			kinds[i] = wasmer.F32
		case executor.F64:
			kinds[i] = wasmer.F64
		default:
			panic(fmt.Sprintf("host function value type %s", t))
		}
	}
	return wasmer.NewValueTypes(kinds...)
}

// guestBytes is mem[ptr:ptr+n] when the range is inside the memory.
func (r *guestRun) guestBytes(ptr, n uint64) ([]byte, bool) {
	return executor.GuestRange(r.memory(), uint32(ptr), uint32(n))
}

var fabricImpls = map[string]func(r *guestRun, p []uint64) (uint64, bool){
	"input_len": func(r *guestRun, _ []uint64) (uint64, bool) {
		return uint64(uint32(r.rs.InputLen())), false
	},
	"input_read": func(r *guestRun, p []uint64) (uint64, bool) {
		return 0, r.rs.InputRead(r.memory(), uint32(p[0])) != nil
	},
	"output_write": func(r *guestRun, p []uint64) (uint64, bool) {
		if b, ok := r.guestBytes(p[0], p[1]); ok && r.rs.Stopped() == nil {
			r.emit(evOutput, (&enc{}).bytes(b).b)
		}
		return 0, r.rs.OutputWrite(r.memory(), uint32(p[0]), uint32(p[1])) != nil
	},
	"error_write": func(r *guestRun, p []uint64) (uint64, bool) {
		if b, ok := r.guestBytes(p[0], p[1]); ok {
			r.emit(evError, (&enc{}).bytes(b).b)
		}
		return 0, r.rs.ErrorWrite(r.memory(), uint32(p[0]), uint32(p[1])) != nil
	},
	"log": func(r *guestRun, p []uint64) (uint64, bool) {
		if b, ok := r.guestBytes(p[1], p[2]); ok {
			r.emit(evLog, (&enc{}).u32(uint32(p[0])).bytes(b).b)
		}
		return 0, r.rs.Log(r.memory(), int32(uint32(p[0])), uint32(p[1]), uint32(p[2])) != nil
	},
	"progress": func(r *guestRun, p []uint64) (uint64, bool) {
		switch r.q.Crash {
		case crashCgo:
			r.w.ev.flush()
			crashNative()
		case crashHostFn:
			panic("a host function failed (test hook)")
		}
		r.emit(evProgress, (&enc{}).u32(uint32(p[0])).b)
		return 0, false
	},
	"kpi": func(r *guestRun, p []uint64) (uint64, bool) {
		v := math.Float64frombits(p[2])
		if b, ok := r.guestBytes(p[0], p[1]); ok {
			r.emit(evKPI, (&enc{}).bytes(b).f64(v).b)
		}
		return 0, r.rs.KPI(r.memory(), uint32(p[0]), uint32(p[1]), v) != nil
	},
}
