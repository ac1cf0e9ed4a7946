package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SoakConfig is a soak: a steady load (Load, for Load.Duration) while the
// server's resident memory, goroutines, open files and store size are
// sampled, and the verdict whether any of them grew without bound.
type SoakConfig struct {
	Load Config
	// DataDir is fabricd's --data directory when it is durable and on this
	// machine; its size is sampled too. "" samples no store size.
	DataDir string
	// Interval between samples; default 1s.
	Interval time.Duration
	// Warmup is left out of the comparison: caches filling, pools growing
	// and the store's first pages are not a leak. Default a sixth of the
	// load's duration.
	Warmup time.Duration
	// Tolerance is how much each measure may grow, relative to its mean
	// over the first third of the samples after the warm-up, by the last
	// third, on top of an absolute slack per measure (Slack). Default 0.25.
	Tolerance float64
	// Settle bounds how long goroutines and open files may take to come
	// back to the level before the load once it has ended. Default 15s.
	Settle time.Duration
	// OnSample, when set, is called with each sample as it is taken.
	OnSample func(Sample)
}

// Slack is the absolute growth each measure may show beyond the relative
// Tolerance: the noise of a healthy process (a GC cycle's worth of heap,
// a few transient goroutines and descriptors, a store's page cache).
var Slack = map[string]float64{
	"rss_bytes":   16 << 20,
	"heap_bytes":  16 << 20,
	"goroutines":  16,
	"open_fds":    8,
	"store_bytes": 4 << 20,
	// Once the load has ended: a store's pool of read connections, opened
	// under load and kept idle, holds a few files each.
	"open_fds_after": 16,
}

// Sample is the server's state at one moment of a soak.
type Sample struct {
	AtS        float64 `json:"at_s"`
	RSSBytes   float64 `json:"rss_bytes"`
	HeapBytes  float64 `json:"heap_bytes"`
	Goroutines float64 `json:"goroutines"`
	OpenFDs    float64 `json:"open_fds"`
	StoreBytes float64 `json:"store_bytes,omitempty"`
	Ops        int64   `json:"ops"` // operations completed so far
}

func (s Sample) get(metric string) float64 {
	switch metric {
	case "rss_bytes":
		return s.RSSBytes
	case "heap_bytes":
		return s.HeapBytes
	case "goroutines":
		return s.Goroutines
	case "open_fds":
		return s.OpenFDs
	case "store_bytes":
		return s.StoreBytes
	}
	return 0
}

// Check is one measure's verdict: First and Last are its means over the
// first and the last third of the samples after the warm-up; Limit is the
// most Last may be.
type Check struct {
	Metric string  `json:"metric"`
	First  float64 `json:"first"`
	Last   float64 `json:"last"`
	Limit  float64 `json:"limit"`
	OK     bool    `json:"ok"`
	Note   string  `json:"note,omitempty"`
}

// SoakReport is what a soak saw.
type SoakReport struct {
	Load     *Report  `json:"load"`
	Baseline Sample   `json:"baseline"` // before the load
	Samples  []Sample `json:"samples"`
	After    Sample   `json:"after"` // once the load ended and settled
	Checks   []Check  `json:"checks"`
	// Throughput over the first and the last third: the load was steady if
	// they are alike.
	FirstThirdPerS float64 `json:"first_third_per_s"`
	LastThirdPerS  float64 `json:"last_third_per_s"`
	OK             bool    `json:"ok"`
}

// Soak runs a soak. It returns an error when the soak could not run (bad
// config, no /metrics, the load could not start); a leak, or a load that
// failed, is in the report (OK false).
func Soak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	if cfg.Load.Count != 0 {
		return nil, errors.New("soak: want a duration, not a count: the load must be steady for a known time")
	}
	if cfg.Load.Duration <= 0 {
		cfg.Load.Duration = 2 * time.Minute
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = cfg.Load.Duration / 6
	}
	if cfg.Warmup < 0 || cfg.Warmup >= cfg.Load.Duration {
		return nil, fmt.Errorf("soak: warm-up: want 0..%v (the duration); got %v", cfg.Load.Duration, cfg.Warmup)
	}
	if n := (cfg.Load.Duration - cfg.Warmup) / cfg.Interval; n < 6 {
		return nil, fmt.Errorf("soak: %v of load after a %v warm-up holds %d samples at one per %v; want at least 6: lengthen the duration or shorten the interval",
			cfg.Load.Duration, cfg.Warmup, n, cfg.Interval)
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = 0.25
	}
	if cfg.Tolerance < 0 {
		return nil, fmt.Errorf("soak: tolerance: want >= 0; got %v", cfg.Tolerance)
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 15 * time.Second
	}
	if err := cfg.Load.Validate(); err != nil {
		return nil, err
	}
	if cfg.Load.MetricsURL == "-" {
		return nil, errors.New("soak: needs the server's /metrics")
	}
	sampler := &sampler{cfg: &cfg}
	base, err := sampler.take(ctx, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}

	var ops atomic.Int64
	user := cfg.Load.Progress
	cfg.Load.Progress = func(p Progress) {
		ops.Store(p.Ops)
		if user != nil {
			user(p)
		}
	}
	cfg.Load.ProgressEvery = min(cfg.Load.ProgressEvery, cfg.Interval/2)

	rep := &SoakReport{Baseline: base}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var sampleErr error
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(cfg.Interval)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-tick.C:
				s, err := sampler.take(sctx, now.Sub(start), ops.Load())
				if err != nil {
					if sctx.Err() == nil && sampleErr == nil {
						sampleErr = err
					}
					continue
				}
				rep.Samples = append(rep.Samples, s)
				if cfg.OnSample != nil {
					cfg.OnSample(s)
				}
			}
		}
	}()
	load, err := Run(ctx, cfg.Load)
	stop()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	rep.Load = load
	if sampleErr != nil && len(rep.Samples) == 0 {
		return nil, fmt.Errorf("soak: sampling: %w", sampleErr)
	}

	rep.Checks, rep.FirstThirdPerS, rep.LastThirdPerS = analyze(rep.Samples, cfg.Warmup.Seconds(), cfg.Tolerance, cfg.DataDir != "")
	rep.After, rep.Checks = sampler.settle(ctx, base, rep.Checks)
	rep.OK = load.OK()
	for _, c := range rep.Checks {
		rep.OK = rep.OK && c.OK
	}
	return rep, nil
}

type sampler struct{ cfg *SoakConfig }

func (s *sampler) take(ctx context.Context, at time.Duration, ops int64) (Sample, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := Scrape(sctx, s.cfg.Load.MetricsURL, s.cfg.Load.Token)
	if err != nil {
		return Sample{}, err
	}
	need := func(name string) (float64, error) {
		v, ok := m[name]
		if !ok {
			return 0, fmt.Errorf("metrics: %s has no %s", s.cfg.Load.MetricsURL, name)
		}
		return v, nil
	}
	smp := Sample{AtS: at.Seconds(), Ops: ops}
	if smp.RSSBytes, err = need("process_resident_memory_bytes"); err != nil {
		return Sample{}, err
	}
	if smp.Goroutines, err = need("go_goroutines"); err != nil {
		return Sample{}, err
	}
	if smp.OpenFDs, err = need("process_open_fds"); err != nil {
		return Sample{}, err
	}
	smp.HeapBytes = m["go_memstats_heap_inuse_bytes"]
	if s.cfg.DataDir != "" {
		n, err := DirSize(s.cfg.DataDir)
		if err != nil {
			return Sample{}, err
		}
		smp.StoreBytes = float64(n)
	}
	return smp, nil
}

// analyze compares the mean of each measure over the last third of the
// samples after the warm-up with its mean over the first third.
func analyze(samples []Sample, warmupS, tol float64, store bool) (checks []Check, firstPerS, lastPerS float64) {
	var steady []Sample
	for _, s := range samples {
		if s.AtS >= warmupS {
			steady = append(steady, s)
		}
	}
	metrics := []string{"rss_bytes", "heap_bytes", "goroutines", "open_fds"}
	if store {
		metrics = append(metrics, "store_bytes")
	}
	if len(steady) < 3 {
		for _, m := range metrics {
			checks = append(checks, Check{Metric: m, Note: fmt.Sprintf("%d samples after the warm-up; want at least 3", len(steady))})
		}
		return checks, 0, 0
	}
	third := len(steady) / 3
	first, last := steady[:third], steady[len(steady)-third:]
	mean := func(ss []Sample, m string) float64 {
		sum := 0.0
		for _, s := range ss {
			sum += s.get(m)
		}
		return sum / float64(len(ss))
	}
	for _, m := range metrics {
		f, l := mean(first, m), mean(last, m)
		c := Check{Metric: m, First: f, Last: l, Limit: f*(1+tol) + Slack[m]}
		c.OK = l <= c.Limit
		if !c.OK {
			c.Note = fmt.Sprintf("grew from %.0f to %.0f under steady load (limit %.0f)", f, l, c.Limit)
		}
		checks = append(checks, c)
	}
	rate := func(ss []Sample) float64 {
		if len(ss) < 2 || ss[len(ss)-1].AtS <= ss[0].AtS {
			return 0
		}
		return float64(ss[len(ss)-1].Ops-ss[0].Ops) / (ss[len(ss)-1].AtS - ss[0].AtS)
	}
	return checks, rate(first), rate(last)
}

// settle waits, once the load has ended and its connections are closed,
// for the goroutines and open files to come back near where they were
// before it, and adds that check.
func (s *sampler) settle(ctx context.Context, base Sample, checks []Check) (Sample, []Check) {
	limitG := base.Goroutines + Slack["goroutines"]
	limitF := base.OpenFDs + Slack["open_fds_after"]
	deadline := time.Now().Add(s.cfg.Settle)
	var last Sample
	for {
		smp, err := s.take(ctx, 0, 0)
		if err == nil {
			last = smp
			if smp.Goroutines <= limitG && smp.OpenFDs <= limitF {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cg := Check{Metric: "goroutines_after", First: base.Goroutines, Last: last.Goroutines, Limit: limitG, OK: last.Goroutines <= limitG}
	if !cg.OK {
		cg.Note = fmt.Sprintf("%.0f goroutines %v after the load ended, %.0f before it began", last.Goroutines, s.cfg.Settle, base.Goroutines)
	}
	cf := Check{Metric: "open_fds_after", First: base.OpenFDs, Last: last.OpenFDs, Limit: limitF, OK: last.OpenFDs <= limitF}
	if !cf.OK {
		cf.Note = fmt.Sprintf("%.0f open files %v after the load ended, %.0f before it began", last.OpenFDs, s.cfg.Settle, base.OpenFDs)
	}
	return last, append(checks, cg, cf)
}
