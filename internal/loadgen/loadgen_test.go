package loadgen

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The histogram's percentiles are within its 1/64 bucket width of the
// exact ones, over spreads of every shape.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, gen := range map[string]func() time.Duration{
		"uniform µs":  func() time.Duration { return time.Duration(rng.IntN(1000)) * time.Microsecond },
		"exponential": func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) },
		"bimodal": func() time.Duration {
			return []time.Duration{40 * time.Microsecond, 30 * time.Millisecond}[rng.IntN(2)]
		},
		"tiny ns":      func() time.Duration { return time.Duration(rng.IntN(100)) },
		"one value":    func() time.Duration { return 1234567 },
		"minutes long": func() time.Duration { return time.Duration(rng.IntN(30)) * time.Minute },
	} {
		t.Run(name, func(t *testing.T) {
			var h histogram
			var all []time.Duration
			for range 20000 {
				d := gen()
				h.record(d)
				all = append(all, d)
			}
			slices.Sort(all)
			for _, q := range []float64{0.5, 0.9, 0.99, 1} {
				exact := all[int(q*float64(len(all)))-1]
				got := h.quantile(q)
				tol := float64(exact)/64 + 1
				if exact >= 1<<maxExp {
					tol = float64(exact) // beyond the histogram's range: counted as its top
				}
				if diff := float64(got - exact); diff > tol || -diff > tol {
					t.Errorf("q%.2f = %v, exact %v (tolerance %v)", q, got, exact, time.Duration(tol))
				}
			}
			if time.Duration(h.max.Load()) != all[len(all)-1] {
				t.Errorf("max %v, want %v", time.Duration(h.max.Load()), all[len(all)-1])
			}
		})
	}
	var empty histogram
	if l := empty.latency(); l != (Latency{}) {
		t.Errorf("empty histogram: %+v", l)
	}
}

func TestBuckets(t *testing.T) {
	prev := -1
	for _, ns := range []int64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 1<<40 - 1, 1 << 40, 1 << 62} {
		b := bucketOf(ns)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d (of %d)", ns, b, prev, histBuckets)
		}
		prev = b
		if lo, hi := bucketRange(b); ns < 1<<maxExp && (ns < lo || ns >= hi) {
			t.Errorf("bucketOf(%d) = %d whose range is [%d, %d)", ns, b, lo, hi)
		}
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []MixEntry
		err  string
	}{
		{in: "echo", want: []MixEntry{{Agent: "echo", Weight: 1}}},
		{in: "echo:3, cpu:1", want: []MixEntry{{Agent: "echo", Weight: 3}, {Agent: "cpu", Weight: 1}}},
		{in: "echo:0", err: "weight >= 1"},
		{in: "echo:x", err: "weight >= 1"},
		{in: ":2", err: "want AGENT:WEIGHT"},
		{in: " , ", err: "want AGENT[:WEIGHT]"},
	} {
		got, err := ParseMix(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMix(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.EqualFunc(got, tc.want, func(a, b MixEntry) bool { return a.Agent == b.Agent && a.Weight == b.Weight }) {
			t.Errorf("ParseMix(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// The weights are interleaved, the priorities cycled, inputs per agent.
func TestPayloads(t *testing.T) {
	cfg := Config{
		URL: "ws://x/rpc", Mode: ModeSubmitSubscribe,
		Mix:        []MixEntry{{Agent: "echo", Weight: 2}, {Agent: "cpu", Weight: 1, Input: json.RawMessage(`1000`)}},
		Input:      json.RawMessage(`{"a":1}`),
		Priorities: []protocol.Priority{protocol.High, protocol.Normal},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	seq, err := cfg.payloads()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range seq {
		got = append(got, string(p))
	}
	want := []string{
		`{"agent":"echo","input":{"a":1},"priority":"high","subscribe":true}`,
		`{"agent":"cpu","input":1000,"subscribe":true}`,
		`{"agent":"echo","input":{"a":1},"priority":"high","subscribe":true}`,
		`{"agent":"echo","input":{"a":1},"subscribe":true}`,
		`{"agent":"cpu","input":1000,"priority":"high","subscribe":true}`,
		`{"agent":"echo","input":{"a":1},"subscribe":true}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("payloads:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	cfg = Config{URL: "ws://x/rpc", Mode: ModeSubmitWait, Mix: []MixEntry{{Agent: "echo", Weight: 1}}, InputSize: 10}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	seq, _ = cfg.payloads()
	var p protocol.SubmitParams
	if err := json.Unmarshal(seq[0], &p); err != nil || len(p.Input) != 10 {
		t.Errorf("input-size 10: %s (%v)", p.Input, err)
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config {
		return Config{URL: "ws://127.0.0.1:1/rpc", Mode: ModeSubmitWait, Mix: []MixEntry{{Agent: "echo", Weight: 1}}}
	}
	c := ok()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Connections != 1 || c.InFlight != 1 || c.Batch != 1 || c.Duration != 10*time.Second ||
		c.MetricsURL != "http://127.0.0.1:1/metrics" || string(c.Input) != "{}" {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Mode = "fast" }, `mode: want one of submit-wait`},
		{func(c *Config) { c.URL = "http://x" }, `url: want ws://`},
		{func(c *Config) { c.Connections = -1 }, "connections: want 1..100000; got -1"},
		{func(c *Config) { c.Batch = 20000 }, "batch: want 1..10000"},
		{func(c *Config) { c.Count = -5 }, "count: want >= 0"},
		{func(c *Config) { c.Mix = nil }, "mix: want at least one agent"},
		{func(c *Config) { c.Input = json.RawMessage("{") }, "input: not JSON"},
		{func(c *Config) { c.InputSize = 1 }, "input-size: want 0"},
		{func(c *Config) { c.TimeoutMs = -1 }, "timeout-ms: want >= 0"},
	} {
		c := ok()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v; want an error with %q", err, tc.want)
		}
	}
	h := Config{URL: "wss://h:9/rpc", Mode: ModeHealth}
	if err := h.Validate(); err != nil || h.MetricsURL != "https://h:9/metrics" {
		t.Errorf("health needs no mix: %v; metrics %s", err, h.MetricsURL)
	}
}

func TestParseExposition(t *testing.T) {
	m, err := parseExposition(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 1.2345e+07
fabric_tasks_finished_total{agent="echo",outcome="succeeded"} 10
fabric_tasks_finished_total{agent="cpu",outcome="failed"} 2 1700000000000
weird{le="+Inf",x="a}b"} 7
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 42, "process_resident_memory_bytes": 12345000,
		"sum:fabric_tasks_finished_total": 12, "sum:weird": 7}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, m[k], v, m)
		}
	}
	for _, bad := range []string{"novalue\n", "x{a=\"1\" 3\n", "x abc\n"} {
		if _, err := parseExposition(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// analyze fails a measure that climbs, passes one that is flat or noisy,
// and leaves the warm-up out.
func TestAnalyze(t *testing.T) {
	series := func(f func(i int) Sample) []Sample {
		var ss []Sample
		for i := range 30 {
			s := f(i)
			s.AtS = float64(i)
			s.Ops = int64(i * 1000)
			ss = append(ss, s)
		}
		return ss
	}
	verdict := func(checks []Check) map[string]bool {
		m := map[string]bool{}
		for _, c := range checks {
			m[c.Metric] = c.OK
		}
		return m
	}
	flat := series(func(i int) Sample {
		return Sample{RSSBytes: 50 << 20, HeapBytes: 20 << 20, Goroutines: 30 + float64(i%5), OpenFDs: 12, StoreBytes: 8 << 20}
	})
	checks, first, last := analyze(flat, 5, 0.25, true)
	for m, ok := range verdict(checks) {
		if !ok {
			t.Errorf("flat: %s failed: %+v", m, checks)
		}
	}
	if first != 1000 || last != 1000 {
		t.Errorf("throughput %v, %v; want 1000/s both", first, last)
	}

	leak := series(func(i int) Sample {
		return Sample{RSSBytes: 50<<20 + float64(i)*(8<<20), Goroutines: 30 + float64(i*10), OpenFDs: 12, HeapBytes: 20 << 20}
	})
	v := verdict(func() []Check { c, _, _ := analyze(leak, 5, 0.25, false); return c }())
	if v["rss_bytes"] || v["goroutines"] || !v["open_fds"] || !v["heap_bytes"] {
		t.Errorf("leak: verdicts %v; want rss and goroutines failed, the rest ok", v)
	}
	if _, ok := v["store_bytes"]; ok {
		t.Errorf("store checked without a data dir")
	}

	// A steep warm-up followed by a plateau is not a leak.
	warm := series(func(i int) Sample {
		return Sample{RSSBytes: float64(min(i, 5)) * (100 << 20), Goroutines: 30, OpenFDs: 12}
	})
	c, _, _ := analyze(warm, 5, 0.25, false)
	if v := verdict(c); !v["rss_bytes"] {
		t.Errorf("warm-up counted: %+v", c)
	}
	c, _, _ = analyze(flat[:4], 2, 0.25, false)
	if c[0].OK || !strings.Contains(c[0].Note, "want at least 3") {
		t.Errorf("too few samples: %+v", c)
	}
}

// Echo mode against the echo server: every round trip comes back whole, in
// order, over several connections and workers; batches echo whole.
func TestEchoRun(t *testing.T) {
	srv, err := StartEchoServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, batch := range []int{1, 5} {
		rep, err := Run(context.Background(), Config{URL: srv.URL, Mode: ModeEcho, Connections: 3, InFlight: 4, Count: 600, Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Ops != 600 || rep.LatencyMs.Max <= 0 || rep.ServerCPUUsPerOp == nil {
			t.Errorf("batch %d: %+v; want 600 ops, OK, latency and server CPU measured", batch, rep)
		}
	}
	// Count stops at exactly the count whatever the workers claim at once.
	rep, err := Run(context.Background(), Config{URL: srv.URL, Mode: ModeEcho, Connections: 2, InFlight: 3, Count: 7, Batch: 4})
	if err != nil || rep.Ops != 7 {
		t.Errorf("count 7 in batches of 4: %+v, %v", rep, err)
	}
}

// A server that is not there is an error from Run, not a report.
func TestRunRefused(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "ws://127.0.0.1:1/rpc", Mode: ModeHealth, Count: 1})
	if err == nil || !strings.Contains(err.Error(), "connection 1 of 1") {
		t.Errorf("got %v; want the dial error", err)
	}
}

// Ending the context stops the run: it reports what it did, interrupted.
func TestRunInterrupted(t *testing.T) {
	srv, err := StartEchoServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var progressed bool
	cfg := Config{URL: srv.URL, Mode: ModeEcho, Duration: time.Hour, ProgressEvery: 10 * time.Millisecond,
		Progress: func(p Progress) {
			progressed = true
			if p.Ops > 100 {
				cancel()
			}
		}}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.OK() || rep.Ops <= 100 || !progressed {
		t.Errorf("%+v; want an interrupted run of > 100 ops", rep)
	}
}

// The answers' members the run reads, and task.wait's params, as
// encoding/json has them.
func TestAnswersAndWaitParams(t *testing.T) {
	id, sub, err := submitAnswer(json.RawMessage(`{"task_id":"t-1","state":"queued","created":true,"subscription_id":"s\u002d1"}`))
	if err != nil || id != "t-1" || sub != "s-1" {
		t.Fatalf("submitAnswer: %q %q %v", id, sub, err)
	}
	if _, _, err := submitAnswer(json.RawMessage(`{"state":"queued"}`)); err == nil {
		t.Fatal("submitAnswer without task_id: want an error")
	}
	e, err := waitAnswer(json.RawMessage(`{"task_id":"t","state":"failed","result":{"output":{"state":"x"}},"error":{"code":"trap","message":"m"}}`))
	if err != nil || e.state != protocol.StateFailed || e.code != "trap" {
		t.Fatalf("waitAnswer: %+v %v", e, err)
	}
	if e, err := waitAnswer(json.RawMessage(`{"state":"running"}`)); err != nil || e.state.Terminal() || e.code != "" {
		t.Fatalf("waitAnswer of a running task: %+v %v", e, err)
	}
	if _, err := waitAnswer(json.RawMessage(`{"state":"done"}`)); err == nil {
		t.Fatal("waitAnswer of an unknown state: want an error")
	}
	for _, id := range []string{"0193f5a2-7c4e-7d3a-9c1b-2f4e5a6b7c8d", `q"uote`, "<&>", "é", "tab\t"} {
		want, _ := json.Marshal(protocol.WaitParams{TaskID: id})
		if got := waitParams(id); string(got) != string(want) {
			t.Errorf("waitParams(%q) = %s; want %s", id, got, want)
		}
	}
}
