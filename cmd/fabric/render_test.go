package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		frac  float64
		width int
		want  string
	}{
		{0, 10, "          "},
		{1, 10, "██████████"},
		{0.5, 10, "█████     "},
		{0.45, 10, "████▌     "},   // 36 eighths: 4 cells and a half
		{0.0125, 10, "▏         "}, // one eighth
		{0.9875, 10, "█████████▉"}, // 79 eighths
		{0.33, 4, "█▍  "},          // 10.56 → 11 eighths
		{-0.5, 5, "     "},         // clamped
		{7, 5, "█████"},            // clamped
		{math.NaN(), 3, "   "},     // as 0
		{0.5, 0, ""},               // no room
		{0.999, 20, "████████████████████"}, // rounds up to full
	} {
		got := bar(tc.frac, tc.width)
		if got != tc.want {
			t.Errorf("bar(%v, %d) = %q, want %q", tc.frac, tc.width, got, tc.want)
		}
		if tc.width > 0 && len([]rune(got)) != tc.width {
			t.Errorf("bar(%v, %d) is %d cells wide", tc.frac, tc.width, len([]rune(got)))
		}
	}
	if got, want := progressText(0.45, 10), "[████▌     ]  45%"; got != want {
		t.Errorf("progressText = %q, want %q", got, want)
	}
	if got, want := progressText(1.5, 4), "[████] 100%"; got != want {
		t.Errorf("progressText above 1 = %q, want %q", got, want)
	}
}

func TestFormats(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		got, want string
	}{
		{relTime(now, now), "just now"},
		{relTime(now.Add(-999*time.Millisecond), now), "just now"},
		{relTime(now.Add(-42*time.Second), now), "42s ago"},
		{relTime(now.Add(-3*time.Minute-59*time.Second), now), "3m ago"},
		{relTime(now.Add(-5*time.Hour), now), "5h ago"},
		{relTime(now.Add(-47*time.Hour), now), "47h ago"},
		{relTime(now.Add(-72*time.Hour), now), "3d ago"},
		{relTime(now.Add(4*time.Second), now), "in 4s"},
		{relTime(now.Add(100*time.Millisecond), now), "now"},
		{relTime(time.Time{}, now), "-"},
		{relTimePtr(nil, now), "-"},
		{fmtDuration(0), "0s"},
		{fmtDuration(850 * time.Microsecond), "850µs"},
		{fmtDuration(2500 * time.Microsecond), "2.5ms"},
		{fmtDuration(12 * time.Millisecond), "12ms"},
		{fmtDuration(1500 * time.Millisecond), "1.50s"},
		{fmtDuration(123 * time.Second), "2m03s"},
		{fmtDuration(62 * time.Minute), "1h02m"},
		{fmtDuration(-2 * time.Second), "-2.00s"},
		{fmtMs(0.25), "250µs"},
		{fmtMs(math.NaN()), "-"},
		{fmtBytes(512), "512 B"},
		{fmtBytes(12_600), "12.3 KiB"},
		{fmtBytes(4 << 20), "4.0 MiB"},
		{fmtBytes(3 << 40), "3.0 TiB"},
		{fmtNum(3), "3"},
		{fmtNum(2.5), "2.5"},
		{fmtNum(1.0 / 3), "0.3333"},
		{truncate("hello", 10), "hello"},
		{truncate("hello world", 6), "hello…"},
		{truncate("héllo wörld", 4), "hél…"},
		{shortDigest("sha256:0123456789abcdef0123"), "sha256:0123456789ab"},
		{shortDigest("odd"), "odd"},
		{queueByPriority(map[string]int{"high": 2, "low": 1}), "critical 0, high 2, normal 0, low 1, background 0"},
		{fmtLimits(protocol.Limits{}), "the server's"},
		{fmtLimits(protocol.Limits{MemoryMB: 64, TimeoutMs: 1500}), "memory 64 MiB, timeout 1.50s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestLiveRegion checks the exact terminal codes of in-place redrawing.
func TestLiveRegion(t *testing.T) {
	var b bytes.Buffer
	r := &liveRegion{w: &b, width: 12}
	steps := []struct {
		permanent, live []string
		want            string
	}{
		{nil, []string{"a", "b"}, "\r\x1b[Ja\nb\n"},
		{[]string{"done"}, []string{"c"}, "\x1b[2A\r\x1b[Jdone\nc\n"},
		{nil, []string{"a line far too long"}, "\x1b[1A\r\x1b[Ja line far…\n"},
		{nil, nil, "\x1b[1A\r\x1b[J"},
		{nil, []string{"x"}, "\r\x1b[Jx\n"},
	}
	for i, s := range steps {
		b.Reset()
		r.draw(s.permanent, s.live)
		if b.String() != s.want {
			t.Errorf("draw %d wrote %q, want %q", i, b.String(), s.want)
		}
	}
}

var (
	t0   = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	half = 0.5
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr[T any](v T) *T { return &v }

func TestTaskLine(t *testing.T) {
	s := &taskState{id: "0123456789abcdef", agent: "cpu"}
	if changed := s.apply(protocol.TaskEvent{TaskID: s.id, State: protocol.StateRunning, Attempt: 1, At: at(0)}); !changed {
		t.Error("queued → running: not a change")
	}
	if got, want := s.line(at(1500*time.Millisecond), 10), "01234567  cpu           [··········]      running  attempt 1  1.50s"; got != want {
		t.Errorf("running, no progress:\n got %q\nwant %q", got, want)
	}
	if changed := s.apply(protocol.TaskEvent{TaskID: s.id, State: protocol.StateRunning, Attempt: 1, At: at(time.Second), Progress: &half}); changed {
		t.Error("a progress event counted as a change")
	}
	if got, want := s.line(at(2*time.Second), 10), "01234567  cpu           [█████     ]  50%  running  attempt 1  2.00s"; got != want {
		t.Errorf("running at 50%%:\n got %q\nwant %q", got, want)
	}
	s.apply(protocol.TaskEvent{TaskID: s.id, State: protocol.StateRetrying, Attempt: 1, At: at(3 * time.Second),
		Error: &protocol.TaskError{Code: "trap", Message: "unreachable"}})
	if got, want := s.line(at(4*time.Second), 10), "01234567  cpu             retrying  attempt 1  1.00s  after trap"; got != want {
		t.Errorf("retrying:\n got %q\nwant %q", got, want)
	}
}

// sampleTask is a finished task with every field the detail view shows.
func sampleTask() protocol.Task {
	return protocol.Task{
		TaskID: "6f1c2d3e-0000-4000-8000-000000000001", Agent: "cpu", Priority: protocol.High,
		State: protocol.StateSucceeded, Attempt: 2, MaxRetries: 3,
		Labels:    map[string]string{"team": "core", "env": "ci"},
		CreatedAt: at(-90 * time.Second), StartedAt: ptr(at(-80 * time.Second)), FinishedAt: ptr(at(-78 * time.Second)),
		IdempotencyKey: "k-1",
		AttemptErrors:  []protocol.TaskError{{Code: "trap", Message: "unreachable executed", Retryable: true}},
		Result: &protocol.ExecutionResult{
			Output:     json.RawMessage(`{"n":1000,"primes":168}`),
			Usage:      protocol.ResourceUsage{CPUSeconds: 0.0123, MemoryPeakMB: 2, FuelConsumed: ptr(uint64(4096))},
			KPIs:       map[string]float64{"primes": 168},
			Logs:       []protocol.LogLine{{Level: "info", Msg: "counting the primes up to 1000", At: at(-80 * time.Second)}},
			DurationMs: 1987.5,
		},
	}
}

func sampleReport() protocol.KPIReport {
	return protocol.KPIReport{
		At: t0, WindowS: 60, Submitted: 120, Completed: 110, Failed: 3, ThroughputPerS: 1.8333,
		LatencyMs:  protocol.LatencyMs{P50: 12.5, P90: 40, P99: 120},
		QueueDepth: map[string]int{"high": 1, "normal": 5},
		Running:    3, Workers: 4,
		Agents: []protocol.AgentStats{{Name: "cpu", TasksTotal: 113, Succeeded: 110, Failed: 3, Running: 3,
			AvgDurationMs: 15, P50Ms: 12.5, P99Ms: 120, CPUSecondsTotal: 1.5, MemoryPeakMBMax: 3, LastTaskAt: ptr(at(-2 * time.Second))}},
		Custom: map[string]float64{"primes": 18480},
	}
}

// TestRendering compares the human views with golden files.
func TestRendering(t *testing.T) {
	c := newCLI(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	c.now = func() time.Time { return t0 }
	var b bytes.Buffer

	c.printTask(&b, sampleTask())
	failed := sampleTask()
	failed.State, failed.Result, failed.AttemptErrors, failed.Labels = protocol.StateFailed, nil, nil, nil
	failed.Error = &protocol.TaskError{Code: "timeout", Message: "ran past 1s"}
	b.WriteString("---\n")
	c.printTask(&b, failed)
	binary := sampleTask()
	binary.Result.Output, binary.Result.OutputBase64, binary.Result.Logs = nil, []byte{0, 1, 2, 0xff}, nil
	b.WriteString("---\n")
	c.printTask(&b, binary)
	text := sampleTask()
	text.Result.Output, text.Result.OutputBase64 = nil, []byte("two\nlines\n")
	b.WriteString("---\n")
	printOutput(&b, text.Result)
	golden(t, "task.golden", b.String())

	b.Reset()
	c.printKPI(&b, sampleReport())
	b.WriteString("---\n")
	b.WriteString(kpiLine(sampleReport()) + "\n")
	golden(t, "kpi.golden", b.String())

	b.Reset()
	c.taskTable(&b, []protocol.Task{sampleTask(), failed})
	b.WriteString("---\n")
	c.printAgent(&b, protocol.Agent{Name: "cpu", Digest: "sha256:" + strings.Repeat("ab", 32), ABI: "wasi-command",
		SizeBytes: 2_345_678, Capabilities: []string{"clock"}, RegisteredAt: at(-3 * time.Hour)})
	golden(t, "tables.golden", b.String())
}

// TestWatchTerminal feeds events to watch's terminal view and compares what
// it drew, escape codes and all, with a golden file.
func TestWatchTerminal(t *testing.T) {
	var out bytes.Buffer
	c := newCLI(context.Background(), &out, &bytes.Buffer{}, func(string) string { return "" })
	c.now = func() time.Time { return at(2 * time.Second) }
	c.tty = true
	w := &watcher{c: c, live: map[string]*taskState{}, region: &liveRegion{w: &out, width: 100}}
	ev := func(id string, state protocol.State, attempt int, d time.Duration, progress *float64) protocol.TaskEvent {
		return protocol.TaskEvent{Seq: int64(d / time.Millisecond), TaskID: id, Agent: "cpu", State: state, Attempt: attempt, At: at(d), Progress: progress}
	}
	a, b := "aaaaaaaa-1", "bbbbbbbb-2"
	for _, e := range []protocol.TaskEvent{
		ev(a, protocol.StateQueued, 0, 0, nil),
		ev(a, protocol.StateRunning, 1, 100*time.Millisecond, nil),
		ev(b, protocol.StateRunning, 1, 200*time.Millisecond, nil),
		ev(a, protocol.StateRunning, 1, 300*time.Millisecond, ptr(0.25)),
		ev(b, protocol.StateRunning, 1, 400*time.Millisecond, ptr(0.9)),
		ev(a, protocol.StateSucceeded, 1, 500*time.Millisecond, nil),
	} {
		w.event(e)
		out.WriteString("|\n") // marks where one draw ends
	}
	golden(t, "watch_tty.golden", out.String())

	// Without a terminal: one line per event.
	out.Reset()
	c.tty = false
	w = &watcher{c: c, live: map[string]*taskState{}}
	fail := ev(b, protocol.StateFailed, 2, 900*time.Millisecond, nil)
	fail.Error = &protocol.TaskError{Code: "trap", Message: "unreachable"}
	for _, e := range []protocol.TaskEvent{ev(a, protocol.StateRunning, 1, 100*time.Millisecond, ptr(0.25)), fail} {
		w.event(e)
	}
	golden(t, "watch_lines.golden", out.String())
}
