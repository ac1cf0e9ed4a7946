package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Report is what a run measured.
type Report struct {
	Mode        Mode   `json:"mode"`
	URL         string `json:"url"`
	Connections int    `json:"connections"`
	InFlight    int    `json:"in_flight"`
	Batch       int    `json:"batch"`
	Mix         string `json:"mix,omitempty"`
	InputBytes  int    `json:"input_bytes,omitempty"`

	ElapsedS float64 `json:"elapsed_s"`
	// Ops are the operations that ended well: tasks that succeeded, or
	// round trips answered.
	Ops            int64   `json:"ops"`
	ThroughputPerS float64 `json:"throughput_per_s"`
	LatencyMs      Latency `json:"latency_ms"`

	// Submitted counts the tasks the server accepted; Failed those that
	// ended failed or cancelled (by task error code in TaskErrors);
	// Incomplete those accepted that the run never saw end.
	Submitted  int64            `json:"submitted,omitempty"`
	Failed     int64            `json:"failed,omitempty"`
	Incomplete int64            `json:"incomplete,omitempty"`
	TaskErrors map[string]int64 `json:"task_errors,omitempty"`

	// Overloads counts -32002 answers, each honoured by sleeping its
	// retry_after_ms (OverloadWaitMs in all) and trying again.
	Overloads      int64 `json:"overloads,omitempty"`
	OverloadWaitMs int64 `json:"overload_wait_ms,omitempty"`
	// Errors counts every other error by JSON-RPC code, or "transport".
	Errors map[string]int64 `json:"errors,omitempty"`
	// FirstError is the text of the first error, for the reader.
	FirstError string `json:"first_error,omitempty"`

	// CPU time per operation: the load generator's own process, and the
	// server's (process_cpu_seconds_total from its /metrics) when known.
	ClientCPUUsPerOp float64  `json:"client_cpu_us_per_op"`
	ServerCPUUsPerOp *float64 `json:"server_cpu_us_per_op,omitempty"`

	// The server's state before and after the run, from its /metrics.
	ServerBefore *ServerState `json:"server_before,omitempty"`
	ServerAfter  *ServerState `json:"server_after,omitempty"`
	// Idle is what the idle connections cost the server.
	Idle *IdleReport `json:"idle,omitempty"`

	Interrupted bool `json:"interrupted,omitempty"`
}

// OK reports whether every operation completed without an error other than
// an overload.
func (r *Report) OK() bool {
	return r.Failed == 0 && r.Incomplete == 0 && len(r.Errors) == 0 && !r.Interrupted
}

// Problem says what was wrong with a run that is not OK.
func (r *Report) Problem() string {
	var s []string
	if r.Failed > 0 {
		s = append(s, fmt.Sprintf("%d tasks failed (%s)", r.Failed, countsText(r.TaskErrors)))
	}
	if r.Incomplete > 0 {
		s = append(s, fmt.Sprintf("%d tasks did not complete", r.Incomplete))
	}
	if len(r.Errors) > 0 {
		s = append(s, fmt.Sprintf("errors %s; the first: %s", countsText(r.Errors), r.FirstError))
	}
	if r.Interrupted {
		s = append(s, "interrupted")
	}
	if len(s) == 0 {
		return ""
	}
	return strings.Join(s, "; ")
}

func countsText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += k + "=" + strconv.FormatInt(m[k], 10)
	}
	return s
}

// Progress is a run's state while it runs.
type Progress struct {
	Elapsed   time.Duration
	Ops       int64
	Rate      float64 // ops per second over the last interval
	InFlight  int64   // operations started and not ended
	Errors    int64
	Overloads int64
	Failed    int64
}

// run is the state of one run, shared by its workers.
type run struct {
	cfg      Config
	deadline time.Time
	stopping atomic.Bool // no new operations
	claimed  atomic.Int64

	payloads [][]byte // pre-encoded task.submit params, in submit order
	seq      atomic.Int64
	hist     histogram

	ops, submitted, failed, incomplete atomic.Int64
	overloads, overloadWaitMs          atomic.Int64
	errCount, inFlight                 atomic.Int64

	mu         sync.Mutex
	errors     map[string]int64
	taskErrors map[string]int64
	firstError string
}

// Run runs the load described by cfg and reports what it measured. It
// returns an error only when the run could not start (a bad Config, a
// connection refused); what went wrong during the run is in the Report.
// When ctx ends the run stops issuing operations, waits up to cfg.Drain
// for those in flight, and reports with Interrupted set.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, errors: map[string]int64{}, taskErrors: map[string]int64{}}
	if cfg.Mode.submits() {
		seq, err := cfg.payloads()
		if err != nil {
			return nil, err
		}
		r.payloads = seq
	}

	// Connect first: the clock starts once every connection is up.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conns, err := r.dial(dctx)
	cancel()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()

	var idle *IdleReport
	if cfg.IdleConnections > 0 {
		var closeIdle func()
		idle, closeIdle, err = r.dialIdle(ctx)
		if err != nil {
			return nil, err
		}
		defer closeIdle()
	}

	cpu0 := processCPU()
	srv0 := r.serverState(ctx)

	// Operations run on their own context: ending ctx stops new ones, and
	// those in flight get cfg.Drain to end.
	opCtx, opCancel := context.WithCancel(context.Background())
	defer opCancel()
	start := time.Now()
	if cfg.Count == 0 {
		r.deadline = start.Add(cfg.Duration)
	}
	stopWatch := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		r.watch(ctx, opCancel, start, stopWatch)
	}()

	var wg sync.WaitGroup
	for _, c := range conns {
		for range cfg.InFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.worker(opCtx, c)
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopWatch)
	watch.Wait()

	cpu1 := processCPU()
	srv1 := r.serverState(context.Background())
	rep := &Report{
		Mode: cfg.Mode, URL: cfg.URL, Connections: cfg.Connections, InFlight: cfg.InFlight, Batch: cfg.Batch,
		ElapsedS:       elapsed.Seconds(),
		Ops:            r.ops.Load(),
		LatencyMs:      r.hist.latency(),
		Submitted:      r.submitted.Load(),
		Failed:         r.failed.Load(),
		Incomplete:     r.incomplete.Load(),
		Overloads:      r.overloads.Load(),
		OverloadWaitMs: r.overloadWaitMs.Load(),
		Interrupted:    ctx.Err() != nil,
	}
	if cfg.Mode.submits() {
		rep.Mix = mixText(cfg.Mix)
		rep.InputBytes = cfg.InputSize
	}
	r.mu.Lock()
	if len(r.errors) > 0 {
		rep.Errors, rep.FirstError = r.errors, r.firstError
	}
	if len(r.taskErrors) > 0 {
		rep.TaskErrors = r.taskErrors
	}
	r.mu.Unlock()
	if rep.Ops > 0 {
		rep.ThroughputPerS = float64(rep.Ops) / elapsed.Seconds()
		rep.ClientCPUUsPerOp = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(rep.Ops)
		if srv0 != nil && srv1 != nil {
			v := (srv1.CPUSeconds - srv0.CPUSeconds) * 1e6 / float64(rep.Ops)
			rep.ServerCPUUsPerOp = &v
		}
	}
	rep.ServerBefore, rep.ServerAfter, rep.Idle = srv0, srv1, idle
	return rep, nil
}

func mixText(mix []MixEntry) string {
	s := ""
	for i, e := range mix {
		if i > 0 {
			s += ","
		}
		s += e.Agent + ":" + strconv.Itoa(e.Weight)
	}
	return s
}

// watch reports progress, and on the end of ctx stops the run and gives the
// operations in flight cfg.Drain before cancelling them.
func (r *run) watch(ctx context.Context, cancelOps context.CancelFunc, start time.Time, done <-chan struct{}) {
	tick := time.NewTicker(r.cfg.ProgressEvery)
	defer tick.Stop()
	var drain <-chan time.Time
	var lastOps int64
	last := start
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			r.stopping.Store(true)
			drain = time.After(r.cfg.Drain)
			ctx = context.Background() // once
		case <-drain:
			cancelOps()
		case now := <-tick.C:
			if r.cfg.Progress == nil {
				continue
			}
			ops := r.ops.Load()
			rate := float64(ops-lastOps) / now.Sub(last).Seconds()
			lastOps, last = ops, now
			r.cfg.Progress(Progress{
				Elapsed: now.Sub(start), Ops: ops, Rate: rate, InFlight: r.inFlight.Load(),
				Errors: r.errCount.Load(), Overloads: r.overloads.Load(), Failed: r.failed.Load(),
			})
		}
	}
}

// claim takes up to want operations for a worker; 0 means stop.
func (r *run) claim(want int) int {
	if r.stopping.Load() {
		return 0
	}
	if r.cfg.Count == 0 {
		if time.Now().After(r.deadline) {
			r.stopping.Store(true)
			return 0
		}
		r.claimed.Add(int64(want))
		return want
	}
	end := r.claimed.Add(int64(want))
	over := end - r.cfg.Count
	switch {
	case over <= 0:
		return want
	case over >= int64(want):
		return 0
	}
	return want - int(over)
}

// payload returns the params of the run's k-th task.
func (r *run) payload(k int64) []byte {
	return r.payloads[k%int64(len(r.payloads))]
}

// fail records an error of an operation (not an overload).
func (r *run) fail(err error) {
	key := "transport"
	var pe *protocol.Error
	if errors.As(err, &pe) {
		key = strconv.FormatInt(pe.Code, 10)
	}
	r.errCount.Add(1)
	r.mu.Lock()
	r.errors[key]++
	if r.firstError == "" {
		r.firstError = err.Error()
	}
	r.mu.Unlock()
}

// taskFailed records a task that ended failed or cancelled.
func (r *run) taskFailed(code string) {
	if code == "" {
		code = "unknown"
	}
	r.failed.Add(1)
	r.mu.Lock()
	r.taskErrors[code]++
	r.mu.Unlock()
}

// overloaded reports whether err is -32002, and if so how long to wait.
func overloaded(err error) (time.Duration, bool) {
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.ErrOverloaded.Code {
		return 0, false
	}
	wait := 100 * time.Millisecond
	switch v := pe.Data["retry_after_ms"].(type) {
	case float64:
		wait = time.Duration(v * float64(time.Millisecond))
	case int64:
		wait = time.Duration(v) * time.Millisecond
	}
	return min(max(wait, 0), 30*time.Second), true
}

// backoff sleeps for an overload's retry_after_ms; false if ctx ended.
func (r *run) backoff(ctx context.Context, d time.Duration) bool {
	r.overloadWaitMs.Add(d.Milliseconds())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// conn is one of a run's connections.
type conn interface {
	close()
}

func (r *run) dial(ctx context.Context) ([]conn, error) {
	conns := make([]conn, 0, r.cfg.Connections)
	fail := func(err error) ([]conn, error) {
		for _, c := range conns {
			c.close()
		}
		return nil, err
	}
	for range r.cfg.Connections {
		var c conn
		var err error
		if r.cfg.Mode == ModeEcho {
			c, err = dialEcho(ctx, r.cfg.URL, r.cfg.Token, r.cfg.Batch)
		} else {
			c, err = r.dialRPC(ctx)
		}
		if err != nil {
			return fail(fmt.Errorf("connection %d of %d: %w", len(conns)+1, r.cfg.Connections, err))
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func (r *run) worker(ctx context.Context, c conn) {
	switch c := c.(type) {
	case *echoConn:
		r.echoWorker(ctx, c)
	case *rpcConn:
		switch r.cfg.Mode {
		case ModeHealth:
			r.healthWorker(ctx, c)
		case ModeSubmitWait:
			r.submitWaitWorker(ctx, c)
		case ModeSubmitSubscribe:
			r.submitSubscribeWorker(ctx, c)
		case ModeSubmit:
			r.submitWorker(ctx, c)
		}
	}
}

// ServerState is what the server's /metrics said at one moment.
type ServerState struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	RSSBytes    float64 `json:"rss_bytes"`
	HeapBytes   float64 `json:"heap_bytes"`
	Goroutines  float64 `json:"goroutines"`
	OpenFDs     float64 `json:"open_fds"`
	QueueDepth  float64 `json:"queue_depth"`
	Connections float64 `json:"connections"`
}

// serverState reads the server's /metrics; nil when there are none.
func (r *run) serverState(ctx context.Context) *ServerState {
	if r.cfg.MetricsURL == "" || r.cfg.MetricsURL == "-" {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := Scrape(sctx, r.cfg.MetricsURL, r.cfg.Token)
	if err != nil {
		return nil
	}
	if _, ok := m["process_cpu_seconds_total"]; !ok {
		return nil
	}
	return &ServerState{
		CPUSeconds: m["process_cpu_seconds_total"], RSSBytes: m["process_resident_memory_bytes"],
		HeapBytes: m["go_memstats_heap_inuse_bytes"], Goroutines: m["go_goroutines"],
		OpenFDs: m["process_open_fds"], QueueDepth: m["sum:fabric_queue_depth"],
		// By transport, or (before fabricd labelled it) bare.
		Connections: m["fabric_connections_open"] + m["sum:fabric_connections_open"],
	}
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
