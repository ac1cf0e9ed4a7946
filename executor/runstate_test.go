package executor_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

func newState(inv *executor.Invocation, abi string) *executor.RunState {
	var s executor.RunState
	s.Init(inv, abi, "run")
	return &s
}

func TestStderrLines(t *testing.T) {
	s := newState(&executor.Invocation{}, protocol.ABIWasiCommand)
	w := s.Stderr()
	long := strings.Repeat("x", executor.MaxLogLineBytes+10)
	for _, chunk := range []string{"one\r\ntw", "o\n\nthree", " and more\n", long, "\nlast without newline"} {
		if n, err := w.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	out := s.Outcome(executor.End{})
	var got []string
	for _, l := range out.Logs {
		if l.Level != "info" {
			t.Errorf("level %s; want info", l.Level)
		}
		got = append(got, l.Msg)
	}
	want := []string{"one", "two", "", "three and more", long[:executor.MaxLogLineBytes], "xxxxxxxxxx", "last without newline"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q; want %q", trunc(got), trunc(want))
	}
}

func trunc(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > 20 {
			s = s[:20] + "…"
		}
		out[i] = s
	}
	return out
}

func TestLogQuota(t *testing.T) {
	const limit = 3 * (10 + executor.LogLineOverhead)
	s := newState(&executor.Invocation{LogLimitBytes: limit}, protocol.ABIFabricV1)
	mem := []byte(strings.Repeat("0123456789", 2))
	for i := 0; i < 5; i++ {
		if err := s.Log(mem, int32(i-1), 0, 10); err != nil {
			t.Fatal(err)
		}
	}
	// Empty lines cost the overhead too.
	if err := s.Log(mem, 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	out := s.Outcome(executor.End{})
	if !out.LogsTruncated || len(out.Logs) != 3 {
		t.Fatalf("%d lines, truncated %v; want 3 lines, truncated", len(out.Logs), out.LogsTruncated)
	}
	for i, lvl := range []string{"debug", "debug", "info"} { // -1 counts as debug
		if out.Logs[i].Level != lvl {
			t.Errorf("line %d level %s; want %s", i, out.Logs[i].Level, lvl)
		}
	}
	s = newState(&executor.Invocation{}, protocol.ABIFabricV1)
	_ = s.Log(mem, 99, 0, 1)
	if out := s.Outcome(executor.End{}); out.Logs[0].Level != "error" {
		t.Fatalf("level 99 logged as %s; want error", out.Logs[0].Level)
	}
}

func TestOutputLimit(t *testing.T) {
	s := newState(&executor.Invocation{OutputLimitBytes: 10}, protocol.ABIWasiCommand)
	w := s.Stdout()
	if n, err := w.Write([]byte("0123456789")); n != 10 || err != nil {
		t.Fatalf("a write up to the limit: %d, %v", n, err)
	}
	if n, err := w.Write([]byte("x")); n != 0 || !errors.Is(err, executor.ErrGuestStopped) {
		t.Fatalf("a write past the limit: %d, %v; want 0, ErrGuestStopped", n, err)
	}
	out := s.Outcome(executor.End{})
	if out.Err == nil || out.Err.Code != protocol.CodeOutputLimit || string(out.Output) != "0123456789" {
		t.Fatalf("outcome %+v, output %q; want output_limit with the first 10 bytes", out.Err, out.Output)
	}

	s = newState(&executor.Invocation{OutputLimitBytes: 4}, protocol.ABIFabricV1)
	if err := s.OutputWrite([]byte("abcdef"), 0, 6); err == nil || err.Code != protocol.CodeOutputLimit {
		t.Fatalf("OutputWrite past the limit: %v", err)
	}
	if out := s.Outcome(executor.End{}); string(out.Output) != "abcd" {
		t.Fatalf("output %q; want what fits", out.Output)
	}
}

func TestFabricStdoutIsLogs(t *testing.T) {
	s := newState(&executor.Invocation{}, protocol.ABIFabricV1)
	_, _ = s.Stdout().Write([]byte("printed\n"))
	out := s.Outcome(executor.End{Returned: true})
	if len(out.Output) != 0 || len(out.Logs) != 1 || out.Logs[0].Msg != "printed" {
		t.Fatalf("output %q logs %+v; want a fabric-v1 stdout line as a log line", out.Output, out.Logs)
	}
}

func TestKPIs(t *testing.T) {
	s := newState(&executor.Invocation{}, protocol.ABIFabricV1)
	mem := make([]byte, 256)
	copy(mem, "ok")
	copy(mem[16:], "\xff\xfe")
	_ = s.KPI(mem, 0, 2, 1)
	_ = s.KPI(mem, 0, 2, 2)
	_ = s.KPI(mem, 0, 2, math.Inf(1))
	_ = s.KPI(mem, 16, 2, 1)                         // not UTF-8
	_ = s.KPI(mem, 0, executor.MaxKPINameBytes+1, 1) // too long
	for i := 0; i < executor.MaxKPIs+5; i++ {
		copy(mem[32:], []byte{'k', byte('A' + i%26), byte('A' + i/26)})
		_ = s.KPI(mem, 32, 3, float64(i))
	}
	out := s.Outcome(executor.End{})
	if out.KPIs["ok"] != 2 || len(out.KPIs) != executor.MaxKPIs {
		t.Fatalf("kpis: ok=%v, %d names; want ok=2 (the last value), %d names", out.KPIs["ok"], len(out.KPIs), executor.MaxKPIs)
	}
}

func TestErrorWrite(t *testing.T) {
	mem := bytes.Repeat([]byte("e"), executor.MaxErrorBytes+100)
	s := newState(&executor.Invocation{}, protocol.ABIFabricV1)
	_ = s.ErrorWrite(mem, 0, 5)
	_ = s.ErrorWrite(mem, 0, uint32(len(mem)))
	out := s.Outcome(executor.End{Returned: true})
	if out.Err == nil || out.Err.Code != protocol.CodeAgentError || len(out.Err.Message) != executor.MaxErrorBytes {
		t.Fatalf("outcome %v; want agent_error with the last message cut to %d bytes", out.Err.Code, executor.MaxErrorBytes)
	}
}

func TestOutcomePrecedence(t *testing.T) {
	trap := protocol.NewTaskError(protocol.CodeTrap, "wasm error: unreachable")
	timeout := protocol.NewTaskError(protocol.CodeTimeout, "late")
	mem := []byte("boom")
	for _, c := range []struct {
		name     string
		setup    func(s *executor.RunState)
		end      executor.End
		wantCode string
	}{
		{"success", nil, executor.End{Returned: true}, ""},
		{"non-zero return", nil, executor.End{Returned: true, Return: 2}, protocol.CodeAgentError},
		{"error_write beats exit status", func(s *executor.RunState) { _ = s.ErrorWrite(mem, 0, 4) },
			executor.End{Err: s0().ExitStatus(1)}, protocol.CodeAgentError},
		{"timeout beats error_write", func(s *executor.RunState) { _ = s.ErrorWrite(mem, 0, 4) },
			executor.End{Err: timeout}, protocol.CodeTimeout},
		{"trap after a refused grow", nil, executor.End{Err: trap, MemoryRefused: true}, protocol.CodeMemoryLimit},
		{"refused grow, then success", nil, executor.End{Returned: true, MemoryRefused: true}, ""},
		{"refused grow, then timeout", nil, executor.End{Err: timeout, MemoryRefused: true}, protocol.CodeTimeout},
		{"host stop beats the engine", func(s *executor.RunState) { _ = s.OutputWrite(mem, 10, 1) },
			executor.End{Err: timeout}, protocol.CodeTrap},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newState(&executor.Invocation{}, protocol.ABIFabricV1)
			if c.setup != nil {
				c.setup(s)
			}
			out := s.Outcome(c.end)
			got := ""
			if out.Err != nil {
				got = out.Err.Code
			}
			if got != c.wantCode {
				t.Fatalf("code %q (%v); want %q", got, out.Err, c.wantCode)
			}
		})
	}
}

func s0() *executor.RunState { return newState(&executor.Invocation{}, protocol.ABIWasiCommand) }

func TestExitStatusTail(t *testing.T) {
	s := newState(&executor.Invocation{LogLimitBytes: 1}, protocol.ABIWasiCommand)
	for i := 0; i < 8; i++ {
		_, _ = s.Stderr().Write([]byte(strings.Repeat(string(rune('a'+i)), 300) + "\n"))
	}
	_, _ = s.Stderr().Write([]byte("partial"))
	err := s.ExitStatus(2)
	lines := strings.Split(err.Message, "\n")
	if lines[0] != "exit status 2; last stderr lines:" || len(lines) != 6 || lines[5] != "partial" ||
		lines[1] != strings.Repeat("e", 256) {
		t.Fatalf("message %q; want the status and the last 5 lines, cut to 256 bytes, even past the log quota", err.Message)
	}
}

func TestProgress(t *testing.T) {
	var got []float64
	s := newState(&executor.Invocation{OnProgress: func(p float64) { got = append(got, p) }}, protocol.ABIFabricV1)
	for _, p := range []int32{-1, 0, 500, 1000, 1001, math.MaxInt32, math.MinInt32} {
		s.Progress(p)
	}
	want := []float64{0, 0.5, 1, 1, 1}
	if len(got) != len(want) {
		t.Fatalf("progress %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("progress %v; want %v", got, want)
		}
	}
}

func TestSeededRand(t *testing.T) {
	var a, b, c executor.SeededRand
	a.Seed(7)
	b.Seed(7)
	c.Seed(8)
	x := make([]byte, 37)
	_, _ = a.Read(x)
	// The same stream read in odd pieces.
	y := make([]byte, 37)
	for off := 0; off < len(y); off += 5 {
		_, _ = b.Read(y[off:min(off+5, len(y))])
	}
	z := make([]byte, 37)
	_, _ = c.Read(z)
	if !bytes.Equal(x, y) || bytes.Equal(x, z) {
		t.Fatalf("seeded streams: same seed equal %v, other seed different %v", bytes.Equal(x, y), !bytes.Equal(x, z))
	}
}
