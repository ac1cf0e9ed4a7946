package enginetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// stopBound is how soon a guest must stop after its timeout or cancel: far
// more than it needs, so that a noisy machine cannot fail the suite, and far
// less than "never".
const stopBound = 10 * time.Second

func (s *suite) testTime(t *testing.T) {
	for _, c := range []struct {
		agent string
		spec  executor.ModuleSpec
	}{
		{"loop", executor.ModuleSpec{}},
		{"startloop", executor.ModuleSpec{}},
		{"fib", executor.ModuleSpec{}},
		{"sleep", executor.ModuleSpec{Capabilities: []string{protocol.CapClock}}},
	} {
		t.Run(c.agent+" timeout", func(t *testing.T) {
			m := s.compile(t, c.agent, c.spec)
			in := inv("")
			in.Timeout = 200 * time.Millisecond
			start := time.Now()
			out := run(t, m, in)
			if d := time.Since(start); d > stopBound {
				t.Fatalf("a 200ms timeout stopped the guest after %s", d)
			}
			wantErr(t, out, protocol.CodeTimeout)
			s.healthy(t)
		})
		t.Run(c.agent+" cancel", func(t *testing.T) {
			m := s.compile(t, c.agent, c.spec)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := inv("")
			in.Timeout = time.Hour // a cancel is not a timeout
			timer := time.AfterFunc(100*time.Millisecond, cancel)
			defer timer.Stop()
			start := time.Now()
			out := runCtx(ctx, t, m, in)
			if d := time.Since(start); d > stopBound {
				t.Fatalf("a cancel stopped the guest after %s", d)
			}
			wantErr(t, out, protocol.CodeCancelled)
			s.healthy(t)
		})
	}
	t.Run("cancelled before the run", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		wantErr(t, runCtx(ctx, t, s.compile(t, "loop", executor.ModuleSpec{}), inv("")), protocol.CodeCancelled)
	})
	t.Run("sleep on the fake clock", func(t *testing.T) {
		wantOK(t, run(t, s.compile(t, "sleep", executor.ModuleSpec{}), inv("")), "woke")
	})
}

// clockReadings runs the clock agent and parses its readings.
func clockReadings(t *testing.T, m executor.Module) (wall, mono, mono2 uint64) {
	t.Helper()
	out := run(t, m, inv(""))
	if out.Err != nil {
		t.Fatalf("clock: %s: %s", out.Err.Code, out.Err.Message)
	}
	vals := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out.Output)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("clock output %q: %v", out.Output, err)
		}
		vals[k] = n
	}
	return vals["wall"], vals["mono"], vals["mono2"]
}

func (s *suite) testCapabilities(t *testing.T) {
	t.Run("fake clock", func(t *testing.T) {
		m := s.compile(t, "clock", executor.ModuleSpec{})
		wall, mono, mono2 := clockReadings(t, m)
		if want := uint64(executor.FakeWallEpoch.UnixNano()); wall != want {
			t.Fatalf("wall %d; want the fake clock's %d", wall, want)
		}
		if mono2 <= mono {
			t.Fatalf("monotonic readings %d then %d; want them to increase", mono, mono2)
		}
		w2, m2, m22 := clockReadings(t, m)
		if w2 != wall || m2 != mono || m22 != mono2 {
			t.Fatalf("second run read %d %d %d; want the same as the first: %d %d %d", w2, m2, m22, wall, mono, mono2)
		}
	})
	t.Run("real clock", func(t *testing.T) {
		m := s.compile(t, "clock", executor.ModuleSpec{Capabilities: []string{protocol.CapClock}})
		before := time.Now()
		wall, mono, mono2 := clockReadings(t, m)
		after := time.Now()
		got := time.Unix(0, int64(wall))
		if got.Before(before.Add(-time.Minute)) || got.After(after.Add(time.Minute)) {
			t.Fatalf("wall %s; want the host's time, about %s", got, before)
		}
		if mono2 < mono {
			t.Fatalf("monotonic readings %d then %d; want them not to decrease", mono, mono2)
		}
	})
	t.Run("seeded random", func(t *testing.T) {
		m := s.compile(t, "random", executor.ModuleSpec{})
		in := inv("")
		a, b := run(t, m, in), run(t, m, in)
		in.Seed = 2
		c := run(t, m, in)
		for _, o := range []executor.Outcome{a, b, c} {
			if o.Err != nil || len(o.Output) != 32 {
				t.Fatalf("random: %+v; want 32 bytes", o)
			}
		}
		if !bytes.Equal(a.Output, b.Output) {
			t.Fatal("two runs with the same seed drew different bytes")
		}
		if bytes.Equal(a.Output, c.Output) {
			t.Fatal("two runs with different seeds drew the same bytes")
		}
	})
	t.Run("host random", func(t *testing.T) {
		m := s.compile(t, "random", executor.ModuleSpec{Capabilities: []string{protocol.CapRandom}})
		a, b := run(t, m, inv("")), run(t, m, inv(""))
		if a.Err != nil || b.Err != nil || len(a.Output) != 32 {
			t.Fatalf("random: %+v %+v", a.Err, b.Err)
		}
		if bytes.Equal(a.Output, b.Output) {
			t.Fatal("two runs with the random capability drew the same bytes")
		}
	})
}

// abuse is a hostabuse agent's input: one fabric call and its arguments.
func abuse(op, a, b, c uint32) string {
	var in [16]byte
	binary.LittleEndian.PutUint32(in[0:], op)
	binary.LittleEndian.PutUint32(in[4:], a)
	binary.LittleEndian.PutUint32(in[8:], b)
	binary.LittleEndian.PutUint32(in[12:], c)
	return string(in[:])
}

// Ops of the hostabuse agent.
const (
	opOutput = iota
	opError
	opLog
	opKPI
	opInput
	opProgress
)

func (s *suite) testHostPointers(t *testing.T) {
	m := s.compile(t, "hostabuse", executor.ModuleSpec{})
	const page = 65536
	for _, c := range []struct {
		name         string
		op, a, b, cc uint32
		fn           string // the fabric function a trap names; "" for success
	}{
		{"output far out", opOutput, 0xfffffff0, 100, 0, "fabric.output_write"},
		{"output length wraps", opOutput, 16, 0xffffffff, 0, "fabric.output_write"},
		{"output huge length", opOutput, 0, 0x7fffffff, 0, "fabric.output_write"},
		{"output one past the end", opOutput, page - 6, 7, 0, "fabric.output_write"},
		{"output pointer past the end, empty", opOutput, page + 1, 0, 0, "fabric.output_write"},
		{"error out", opError, page, 1, 0, "fabric.error_write"},
		{"log out", opLog, 0xffffffff, 2, 1, "fabric.log"},
		{"kpi name out", opKPI, page - 2, 8, 1, "fabric.kpi"},
		{"input_read past the end", opInput, page - 8, 0, 0, "fabric.input_read"},
		{"input_read far out", opInput, 0x80000000, 0, 0, "fabric.input_read"},
		{"output at the very end", opOutput, page - 6, 6, 0, ""},
		{"output empty at the end", opOutput, page, 0, 0, ""},
		{"log odd level", opLog, 0, 4, 99, ""},
		{"progress negative", opProgress, 0xffffffff, 0, 0, ""},
		{"input_read at the end", opInput, page - 16, 0, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := run(t, m, inv(abuse(c.op, c.a, c.b, c.cc)))
			if c.fn != "" {
				wantErr(t, out, protocol.CodeTrap, c.fn, "out of bounds")
				s.healthy(t)
				return
			}
			if out.Err != nil {
				t.Fatalf("outcome %s: %s; want success", out.Err.Code, out.Err.Message)
			}
		})
	}
	t.Run("in-bounds reads see guest memory", func(t *testing.T) {
		in := abuse(opOutput, 0, 16, 0)
		wantOK(t, run(t, m, inv(in)), in)
		// error_write(4, 4) reads the input's a field, 4.
		errIn := abuse(opError, 4, 4, 0)
		out := run(t, m, inv(errIn))
		wantErr(t, out, protocol.CodeAgentError)
		if out.Err.Message != errIn[4:8] {
			t.Fatalf("error message %q; want %q", out.Err.Message, errIn[4:8])
		}
		out = run(t, m, inv(abuse(opLog, 0, 4, 7)))
		if out.Err != nil || len(out.Logs) != 1 || out.Logs[0].Level != "error" || out.Logs[0].Msg != abuse(opLog, 0, 4, 7)[:4] {
			t.Fatalf("log of level 7: %+v; want one error line with the input's first bytes", out)
		}
	})
}

func (s *suite) testHostPanic(t *testing.T) {
	in := inv("x")
	in.OnProgress = func(float64) { panic("the scheduler's callback broke") }
	wantErr(t, run(t, s.health, in), protocol.CodeInternal, "the scheduler's callback broke")
	s.healthy(t)
}

func (s *suite) testUsage(t *testing.T) {
	m := s.compile(t, "spin", executor.ModuleSpec{})
	var in [4]byte
	binary.LittleEndian.PutUint32(in[:], 300_000_000)
	out := run(t, m, inv(string(in[:])))
	if out.Err != nil {
		t.Fatalf("spin: %s: %s", out.Err.Code, out.Err.Message)
	}
	u := out.Usage
	if u.CPUSeconds <= 0 || u.CPUSeconds > out.Duration.Seconds()*1.5+0.05 {
		t.Errorf("cpu_seconds %v over a run of %s; want positive and not above the run's time", u.CPUSeconds, out.Duration)
	}
	if u.MemoryPeakMB != 1.0/16 {
		t.Errorf("memory_peak_mb %v; want one page, %v", u.MemoryPeakMB, 1.0/16)
	}
	if u.NetworkTxBytes != 0 || u.NetworkRxBytes != 0 || u.DiskIOOps != 0 || u.GPUUtilization != nil {
		t.Errorf("usage %+v; want no network, no disk, no GPU", u)
	}
	if out.Duration <= 0 {
		t.Errorf("duration %s; want positive", out.Duration)
	}
	metered := false
	if mt, ok := s.eng.(executor.Meterer); ok {
		metered = mt.Metering()
	}
	if !metered {
		if u.FuelConsumed != nil {
			t.Errorf("fuel_consumed %d from an engine that does not meter", *u.FuelConsumed)
		}
		fuel := inv(string(in[:]))
		fuel.Fuel = 1000
		if out := run(t, m, fuel); out.Err == nil {
			t.Error("a run asking for fuel succeeded on an engine that cannot meter it")
		}
	}
}

func (s *suite) testModuleClose(t *testing.T) {
	m := s.compile(t, "noop", executor.ModuleSpec{})
	wantOK(t, run(t, m, inv("")), "")
	if err := m.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantErr(t, run(t, m, inv("")), protocol.CodeAgentMissing)

	// Closing a module under a running guest lets that run finish.
	loop := s.compile(t, "loop", executor.ModuleSpec{})
	var started atomic.Bool
	done := make(chan executor.Outcome, 1)
	go func() {
		in := inv("")
		in.Timeout = 300 * time.Millisecond
		started.Store(true)
		done <- loop.Run(context.Background(), in)
	}()
	eventually(t, stopBound, "run started", started.Load)
	if err := loop.Close(context.Background()); err != nil {
		t.Fatalf("Close under a run: %v", err)
	}
	select {
	case out := <-done:
		if out.Err == nil || (out.Err.Code != protocol.CodeTimeout && out.Err.Code != protocol.CodeAgentMissing) {
			t.Fatalf("run under Close: %+v; want timeout (or agent_missing if Close came first)", out.Err)
		}
	case <-time.After(stopBound):
		t.Fatal("the run under Close never ended")
	}
	s.healthy(t)
}

// testEngineClose closes an engine under a running guest: the guest is
// stopped, its run fails, and Close returns.
func testEngineClose(t *testing.T, newEngine func(t *testing.T) executor.Engine) {
	eng := newEngine(t)
	m, err := eng.Compile(context.Background(), executor.ModuleSpec{Name: "loop", Wasm: Agent(t, "loop")})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	var started atomic.Bool
	done := make(chan executor.Outcome, 1)
	go func() {
		started.Store(true)
		in := inv("")
		in.Timeout = time.Hour
		done <- m.Run(context.Background(), in)
	}()
	eventually(t, stopBound, "run started", started.Load)
	time.Sleep(50 * time.Millisecond) // let it enter the guest, most likely
	ctx, cancel := context.WithTimeout(context.Background(), stopBound)
	defer cancel()
	if err := eng.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case out := <-done:
		if out.Err == nil {
			t.Fatal("a run of an endless loop succeeded while its engine closed")
		}
	case <-time.After(stopBound):
		t.Fatal("the run never ended after its engine closed")
	}
	if err := eng.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	out := m.Run(context.Background(), inv(""))
	if out.Err == nil {
		t.Fatal("Run on a closed engine succeeded")
	}
	if _, err := eng.Compile(context.Background(), executor.ModuleSpec{Name: "noop", Wasm: Agent(t, "noop")}); err == nil {
		t.Fatal("Compile on a closed engine succeeded")
	}
}
