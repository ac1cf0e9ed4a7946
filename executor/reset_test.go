package executor

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Instance reset (see Wazero): a module's instances are reset in place only
// when that is equivalent to a fresh instance, and then a task in a reset
// instance observes exactly what a task in a fresh one observes. The
// comparisons run the same tasks on an engine that resets and on one that
// instantiates every task anew (FreshInstances).

const resetProbePath = "testdata/agents/resetprobe.wasm"

func compileFile(t *testing.T, e *Wazero, path string) *wazeroModule {
	t.Helper()
	m, err := e.Compile(context.Background(), ModuleSpec{Name: filepath.Base(path), Wasm: testAgent(t, path)})
	if err != nil {
		t.Fatalf("Compile(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m.(*wazeroModule)
}

// sameOutcome fails t unless a and b are the same outcome (durations,
// log times and instantiation aside).
func sameOutcome(t *testing.T, what string, a, b Outcome) {
	t.Helper()
	diff := func(format string, args ...any) { t.Errorf("%s: "+format, append([]any{what}, args...)...) }
	if !bytes.Equal(a.Output, b.Output) {
		diff("output %q; fresh %q", a.Output, b.Output)
	}
	switch {
	case (a.Err == nil) != (b.Err == nil):
		diff("error %+v; fresh %+v", a.Err, b.Err)
	case a.Err != nil && (a.Err.Code != b.Err.Code || a.Err.Message != b.Err.Message):
		diff("error %s: %s; fresh %s: %s", a.Err.Code, a.Err.Message, b.Err.Code, b.Err.Message)
	}
	if len(a.Logs) != len(b.Logs) || a.LogsTruncated != b.LogsTruncated {
		diff("%d log lines (truncated %v); fresh %d (%v)", len(a.Logs), a.LogsTruncated, len(b.Logs), b.LogsTruncated)
	} else {
		for i := range a.Logs {
			if a.Logs[i].Level != b.Logs[i].Level || a.Logs[i].Msg != b.Logs[i].Msg {
				diff("log line %d %+v; fresh %+v", i, a.Logs[i], b.Logs[i])
			}
		}
	}
	if fmt.Sprint(a.KPIs) != fmt.Sprint(b.KPIs) {
		diff("KPIs %v; fresh %v", a.KPIs, b.KPIs)
	}
	if a.Usage.MemoryPeakMB != b.Usage.MemoryPeakMB {
		diff("memory_peak_mb %v; fresh %v", a.Usage.MemoryPeakMB, b.Usage.MemoryPeakMB)
	}
}

// TestResetEligibility: Compile resets the instances of a module only when
// nothing but its memory and mutable globals can change, and names what
// stops it otherwise.
func TestResetEligibility(t *testing.T) {
	e := reuseEngine(t, WazeroOptions{})
	for _, path := range []string{resetProbePath, statefulPath, "../testdata/agents/noop.wasm",
		"../testdata/agents/echo_fabric.wasm", "../testdata/agents/echo.wasm", "../testdata/agents/reactor.wasm"} {
		if m := compileFile(t, e, path); !m.reset {
			t.Errorf("%s: not reset (%s); want reset", path, m.notReset)
		}
	}
	for name, why := range map[string]string{
		"tableset": "table.set", "tablegrow": "table.grow", "tablefill": "table.fill", "tablecopy": "table.copy",
		"tableinit": "table.init", "elemdrop": "elem.drop", "datadrop": "data.drop",
		"tableexport": `exports table "table"`, "v128": "mutable v128",
		"fdclose": "wasi_snapshot_preview1.fd_close",
	} {
		m := compileFile(t, e, "testdata/agents/reset_"+name+".wasm")
		if m.reset || !strings.Contains(m.notReset, why) {
			t.Errorf("reset_%s: reset %v (%q); want no reset, for %q", name, m.reset, m.notReset, why)
		}
	}
	if m := compileStateful(t, e, true); m.reset || !strings.Contains(m.notReset, "reuses instances") {
		t.Errorf("with ReuseInstances: reset %v (%q); want no reset", m.reset, m.notReset)
	}
	fresh := reuseEngine(t, WazeroOptions{FreshInstances: true})
	if m := compileFile(t, fresh, resetProbePath); m.reset || !strings.Contains(m.notReset, "FreshInstances") {
		t.Errorf("with FreshInstances: reset %v (%q); want no reset", m.reset, m.notReset)
	}
}

// TestResetEquivalent runs resetprobe's tasks, each way of ending included,
// on a resetting engine and on a fresh one: every task observes the same
// memory, globals (exported or not, of every type), start function and
// _initialize runs, clocks, random bytes and passive segment, and ends the
// same way; after a normal return the next task ran in the reset instance,
// after anything else in a new one.
func TestResetEquivalent(t *testing.T) {
	ctx := context.Background()
	reset := compileFile(t, reuseEngine(t, WazeroOptions{}), resetProbePath)
	fresh := compileFile(t, reuseEngine(t, WazeroOptions{FreshInstances: true}), resetProbePath)
	if !reset.reset || fresh.reset {
		t.Fatalf("reset %v, fresh %v; want a resetting engine and a fresh one", reset.reset, fresh.reset)
	}
	var first []byte
	kept := false // the reset engine kept an instance after the last task
	for i, c := range []struct {
		input  string
		code   string
		kept   bool // the instance is reset and kept after it
		adjust func(*Invocation)
		cancel bool
	}{
		{"n", "", true, nil, false},
		{"n", "", true, nil, false},
		{"e", protocol.CodeAgentError, true, nil, false}, // returned: error_write is the agent's business
		{"r", protocol.CodeAgentError, true, nil, false},
		{"n", "", true, func(in *Invocation) { in.MemoryLimitBytes = 1 << 30 }, false}, // a larger quota than the first
		{"t", protocol.CodeTrap, false, nil, false},
		{"n", "", true, nil, false},
		{"g", "", false, nil, false}, // grew: a memory cannot shrink
		{"n", "", true, nil, false},
		{"g", protocol.CodeMemoryLimit, false, func(in *Invocation) { in.MemoryLimitBytes = WasmPageSize }, false},
		{"n", "", true, nil, false},
		{"x", "", false, nil, false}, // proc_exit closes the instance
		{"n", "", true, nil, false},
		{"l", protocol.CodeTimeout, false, func(in *Invocation) { in.Timeout = 30 * time.Millisecond }, false},
		{"n", "", true, nil, false},
		{"l", protocol.CodeCancelled, false, nil, true},
		{"n", "", true, nil, false},
		{"n", protocol.CodeOutputLimit, false, func(in *Invocation) { in.OutputLimitBytes = 8 }, false},
		{"n", "", true, nil, false},
		{"", "", true, func(in *Invocation) { in.Seed = 99 }, false},
	} {
		what := fmt.Sprintf("task %d (%q)", i, c.input)
		in := reuseInv(c.input)
		if c.adjust != nil {
			c.adjust(&in)
		}
		run := func(m *wazeroModule) Outcome {
			if !c.cancel {
				return m.Run(ctx, in)
			}
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			time.AfterFunc(20*time.Millisecond, cancel)
			return m.Run(cctx, in)
		}
		made := reset.instances.Load()
		got, want := run(reset), run(fresh)
		made = reset.instances.Load() - made
		sameOutcome(t, what, got, want)
		code := ""
		if got.Err != nil {
			code = got.Err.Code
		}
		if code != c.code {
			t.Fatalf("%s: outcome %q (%+v); want %q", what, code, got.Err, c.code)
		}
		if (made == 0) != kept || got.Instantiate <= 0 {
			t.Errorf("%s: %d instances made, instantiate %s; want an instance made only when none was kept, and the time measured either way",
				what, made, got.Instantiate)
		}
		kept = c.kept
		if n := len(reset.idle); (n == 1) != kept {
			t.Errorf("%s: %d idle instances; want %v", what, n, kept)
		}
		if len(got.Output) < 15*8 {
			continue
		}
		if in.Seed != reuseInv("").Seed {
			continue // other random bytes
		}
		if first == nil {
			first = got.Output
			checkProbe(t, first)
		} else if !bytes.Equal(got.Output, first) {
			t.Errorf("%s: observed %x; the first task observed %x", what, got.Output, first)
		}
	}
}

// checkProbe checks resetprobe's first observation against its source:
// what instantiation, the start function and _initialize leave.
func checkProbe(t *testing.T, obs []byte) {
	t.Helper()
	v := func(i int) uint64 { return binary.LittleEndian.Uint64(obs[8*i:]) }
	wall := uint64(FakeWallEpoch.UnixNano())
	for i, want := range map[int]uint64{1: 1, 2: 7, 3: uint64(1<<64 - 5), 4: 0x3fc00000, 5: 0xc002000000000000,
		6: 1, 7: 100, 8: 1, 9: 1, 10: wall, 11: 0, 13: 1, 14: 1} {
		if got := v(i); got != want {
			t.Errorf("resetprobe observed %#x as value %d; want %#x", got, i, want)
		}
	}
}

// TestResetIneligibleIsolated: each module Compile does not reset would
// show a reset: its second task would see what the first changed (a
// table, a dropped segment, the upper half of a v128 global, a closed
// stdout). Run as they are, every task sees a fresh instance; run with the
// reset forced on, the second task does not, which is why they are not
// reset.
func TestResetIneligibleIsolated(t *testing.T) {
	ctx := context.Background()
	e := reuseEngine(t, WazeroOptions{})
	for _, name := range []string{"tableset", "tablegrow", "tablefill", "tablecopy", "tableinit",
		"elemdrop", "datadrop", "v128", "fdclose"} {
		t.Run(name, func(t *testing.T) {
			m := compileFile(t, e, "testdata/agents/reset_"+name+".wasm")
			for i := range 3 {
				wantOutput(t, m.Run(ctx, reuseInv(fmt.Sprint(i))), "1")
			}
			m.reset = true // what a reset would do
			wantOutput(t, m.Run(ctx, reuseInv("")), "1")
			if out := m.Run(ctx, reuseInv("")); out.Err == nil && string(out.Output) == "1" {
				t.Fatalf("a forced reset: the second task's output %q; want the first task's change to show", out.Output)
			}
		})
	}
}

// TestResetIdle: a reset instance is kept within the idle bounds, its
// memory is counted in the engine's idle bytes, and closing the module
// hands it back.
func TestResetIdle(t *testing.T) {
	ctx := context.Background()
	e := reuseEngine(t, WazeroOptions{MaxIdleMemoryBytes: WasmPageSize})
	m := compileFile(t, e, resetProbePath)
	if out := m.Run(ctx, reuseInv("n")); out.Err != nil || len(m.idle) != 1 || e.idleBytes.Load() != WasmPageSize {
		t.Fatalf("after a task: %+v, %d idle, %d idle bytes; want one idle instance of one page", out.Err, len(m.idle), e.idleBytes.Load())
	}
	other := compileFile(t, e, resetProbePath)
	if out := other.Run(ctx, reuseInv("n")); out.Err != nil || len(other.idle) != 0 || len(other.shells) != 1 {
		t.Fatalf("past MaxIdleMemoryBytes: %+v, %d idle, %d shells; want the instance closed", out.Err, len(other.idle), len(other.shells))
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m.idle) != 0 || e.idleBytes.Load() != 0 {
		t.Fatalf("after Close: %d idle, %d idle bytes; want none", len(m.idle), e.idleBytes.Load())
	}
}

// TestMemImage: an image restores exactly the bytes it was taken from over
// any garbage, with runs split only at long zero gaps.
func TestMemImage(t *testing.T) {
	src := make([]byte, 4096)
	copy(src[1:], "ab")
	src[100] = 1
	src[100+imageGap] = 2 // a gap of imageGap-1 zeros: one run
	src[300] = 3          // far: runs of their own
	src[4095] = 4
	img := newMemImage(src)
	if len(img.runs) != 4 || img.runs[1].off != 100 || len(img.runs[1].data) != imageGap+1 {
		t.Fatalf("runs %+v; want 4, the second of %d bytes at 100", img.runs, imageGap+1)
	}
	for _, dirty := range []byte{0, 0xff, 0x5a} {
		mem := bytes.Repeat([]byte{dirty}, len(src))
		img.restore(mem)
		if !bytes.Equal(mem, src) {
			t.Fatalf("restored over %#x: differs from the image", dirty)
		}
	}
	empty := newMemImage(make([]byte, 64))
	mem := bytes.Repeat([]byte{9}, 64)
	empty.restore(mem)
	if len(empty.runs) != 0 || !bytes.Equal(mem, make([]byte, 64)) {
		t.Fatalf("an all-zero image: runs %+v, restored %x", empty.runs, mem)
	}
}

// TestResetAgents runs every test agent's tasks on a resetting engine and on
// a fresh one: the same outcomes, task after task, whether the agent is
// reset or not.
func TestResetAgents(t *testing.T) {
	ctx := context.Background()
	paths, _ := filepath.Glob("../testdata/agents/*.wasm")
	own, _ := filepath.Glob("testdata/agents/*.wasm")
	paths = append(paths, own...)
	if len(paths) < 20 {
		t.Fatalf("%d test agents; want the conformance suite's and this package's", len(paths))
	}
	opts := WazeroOptions{MaxMemoryBytes: 16 << 20}
	reset := reuseEngine(t, opts)
	opts.FreshInstances = true
	fresh := reuseEngine(t, opts)
	loops := map[string]bool{"loop.wasm": true, "spin.wasm": true, "startloop.wasm": true, "fib.wasm": true}
	resets := 0
	for _, p := range paths {
		spec := ModuleSpec{Name: filepath.Base(p), Wasm: testAgent(t, p)}
		rm, rerr := reset.Compile(ctx, spec)
		fm, ferr := fresh.Compile(ctx, spec)
		if (rerr == nil) != (ferr == nil) {
			t.Fatalf("%s: Compile: %v; fresh %v", p, rerr, ferr)
		}
		if rerr != nil {
			continue
		}
		for i, input := range []string{"hello", "", "n", "hello", "x", "hello"} {
			in := reuseInv(input)
			in.Timeout = 2 * time.Second
			if loops[spec.Name] {
				in.Timeout = 20 * time.Millisecond
			}
			in.MemoryLimitBytes = 8 << 20
			made := rm.(*wazeroModule).instances.Load()
			got, want := rm.Run(ctx, in), fm.Run(ctx, in)
			if (got.Err != nil && got.Err.Code == protocol.CodeTimeout) || (want.Err != nil && want.Err.Code == protocol.CodeTimeout) {
				continue // where a guest stopped is the clock's business
			}
			if rm.(*wazeroModule).instances.Load() == made {
				resets++
			}
			sameOutcome(t, fmt.Sprintf("%s task %d", filepath.Base(p), i), got, want)
		}
		_ = rm.Close(ctx)
		_ = fm.Close(ctx)
	}
	if resets == 0 {
		t.Fatal("no task ran in a reset instance")
	}
}
