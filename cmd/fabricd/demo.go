package main

// fabricd demo: a short tour of Fabric through its real API. It starts the
// same fabricd that `serve` runs (serve itself, on 127.0.0.1:0 and
// --data :memory:), connects to it over a WebSocket like any client, runs a
// mixed workload, prints every task.event as it streams, then a summary from
// kpi.get and agent.stats, and stops the server as a SIGTERM would.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/chimera-fabric/fabric/internal/agentbuild"
	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

// demoAgents are the example agents the workload uses.
var demoAgents = []string{"cpu", "echo", "flaky", "jsonxform"}

// demoPriorities are submitted in this order (least urgent first) while
// every worker is busy, so that the order they start in shows the queue's.
var demoPriorities = []protocol.Priority{protocol.Background, protocol.Low, protocol.Normal, protocol.High, protocol.Critical}

// demoLongN is the cpu agent's input for a task that runs until stopped:
// counting the primes up to 10⁹ by trial division takes hours.
const demoLongN = 1_000_000_000

func demo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fabricd demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `fabricd demo runs a short mixed workload on an in-process fabricd
(--data :memory:, a WebSocket on 127.0.0.1) through the real JSON-RPC API,
printing each task.event as it streams and a summary at the end.

Usage: fabricd demo [flags]

`)
		fs.PrintDefaults()
	}
	agents := fs.String("agents", "", "directory with the example agents' modules ("+strings.Join(demoAgents, ", ")+
		" as NAME.wasm; 'make agents' writes bin/agents); by default they are built from examples/ with the Go toolchain")
	workers := fs.Int("workers", 2, "workers of the in-process fabricd")
	engine := fs.String("engine", "wazero", "WebAssembly engine: "+strings.Join(engineNames(), " or "))
	logLevel := fs.String("log-level", "warn", "level of fabricd's own logs, written to stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fabricd demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg := defaultConfig()
	cfg.Listen, cfg.Data = "127.0.0.1:0", ":memory:"
	cfg.Workers, cfg.Engine, cfg.LogLevel = *workers, *engine, *logLevel
	cfg.DrainTimeout = 5 * time.Second
	if err := cfg.Validate("serve"); err != nil {
		fmt.Fprintf(stderr, "fabricd demo: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, cleanup, err := demoAgentDir(ctx, *agents, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "fabricd demo: %v\n", err)
		return 1
	}
	defer cleanup()
	cfg.Agents = dir

	// The server: serve, as `fabricd serve` runs it, told to stop by srvCtx.
	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- serve(srvCtx, "serve", cfg, newLogger(cfg, stderr), nil, nil, func(addr string) { addrc <- addr })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		if err == nil {
			err = errors.New("interrupted before fabricd was serving")
		}
		fmt.Fprintf(stderr, "fabricd demo: starting fabricd: %v\n", err)
		return 1
	}

	werr := runDemo(ctx, "ws://"+addr+"/rpc", stdout)
	fmt.Fprintln(stdout, "\nStopping fabricd: it drains as on SIGTERM (no new tasks, running ones finish or are requeued) and closes the connections.")
	stopServer()
	serr := <-errc
	switch {
	case werr != nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "fabricd demo: interrupted")
		return 1
	case werr != nil:
		fmt.Fprintf(stderr, "fabricd demo: %v\n", werr)
		return 1
	case serr != nil:
		fmt.Fprintf(stderr, "fabricd demo: fabricd stopped on an error: %v\n", serr)
		return 1
	}
	fmt.Fprintln(stdout, "fabricd stopped cleanly. That was the demo: 'make run' starts a fabricd to try the fabric CLI against.")
	return 0
}

// demoAgentDir returns a directory holding the demo's agents as NAME.wasm:
// the one given, once checked, or a temporary one filled from agentbuild's
// cache (which builds examples/NAME with GOOS=wasip1 when its sources
// changed). cleanup removes what demoAgentDir made.
func demoAgentDir(ctx context.Context, given string, stdout io.Writer) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	if given != "" {
		var missing []string
		for _, a := range demoAgents {
			if _, err := os.Stat(filepath.Join(given, a+".wasm")); err != nil {
				missing = append(missing, a+".wasm")
			}
		}
		if len(missing) > 0 {
			return "", cleanup, fmt.Errorf("--agents %s: want the example agents %s there; missing %s (run 'make agents')",
				given, strings.Join(demoAgents, ", "), strings.Join(missing, ", "))
		}
		return given, cleanup, nil
	}
	fmt.Fprintf(stdout, "Building the example agents %s from examples/ (cached after the first time)...\n", strings.Join(demoAgents, ", "))
	tmp, err := os.MkdirTemp("", "fabricd-demo-agents-")
	if err != nil {
		return "", cleanup, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	for _, a := range demoAgents {
		err := func() error {
			pkg, err := agentbuild.PackageDir("examples/" + a)
			if err != nil {
				return err
			}
			built, err := agentbuild.Cached(ctx, pkg, false)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(built)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(tmp, a+".wasm"), b, 0o600)
		}()
		if err != nil {
			cleanup()
			return "", func() {}, fmt.Errorf("building the example agent %s: %w\n"+
				"(the demo builds the agents from the source tree fabricd was built in; elsewhere run 'make agents' and pass --agents bin/agents)", a, err)
		}
	}
	return tmp, cleanup, nil
}

// runDemo runs the workload against the fabricd at url.
func runDemo(ctx context.Context, url string, stdout io.Writer) error {
	c, err := client.Dial(ctx, url, client.Options{BlockNotifications: true})
	if err != nil {
		return err
	}
	p := newDemoPrinter(stdout)
	events := make(chan struct{})
	go func() {
		defer close(events)
		for n := range c.Notifications() {
			if n.Method != protocol.NotifyTaskEvent {
				continue
			}
			var ev protocol.TaskEvent
			if err := json.Unmarshal(n.Params, &ev); err == nil {
				p.event(ev)
			}
		}
	}()
	d := &demoRun{c: c, p: p}
	err = d.run(ctx, url)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = cerr
	}
	<-events
	return err
}

type demoRun struct {
	c       *client.Client
	p       *demoPrinter
	workers int
}

func (d *demoRun) call(ctx context.Context, method string, params, result any) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := d.c.Call(cctx, method, params, result); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

func (d *demoRun) run(ctx context.Context, url string) error {
	var h protocol.Health
	if err := d.call(ctx, protocol.MethodSystemHealth, nil, &h); err != nil {
		return err
	}
	var k protocol.KPIReport
	if err := d.call(ctx, protocol.MethodKPIGet, nil, &k); err != nil {
		return err
	}
	d.workers = k.Workers
	var al protocol.AgentList
	if err := d.call(ctx, protocol.MethodAgentList, nil, &al); err != nil {
		return err
	}
	var names []string
	for _, a := range al.Agents {
		names = append(names, a.Name+" ("+a.ABI+")")
	}
	d.p.printf("fabricd %s is serving on %s: engine %s, %d workers, --data :memory:.\n", h.Version, url, h.Engine, k.Workers)
	d.p.printf("Agents registered: %s.\n", strings.Join(names, ", "))
	d.p.printf("This client subscribed to every task's events; each task.event is printed as it arrives:\n")
	d.p.printf("seconds since the start, the event's seq, the task, its state, and what the event carries.\n")
	var sub protocol.SubscriptionResult
	if err := d.call(ctx, protocol.MethodTaskSubscribe, map[string]any{}, &sub); err != nil {
		return err
	}

	for _, phase := range []func(context.Context) error{d.basics, d.progress, d.retries, d.timeout, d.prioritiesAndCancel} {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	return d.summary(ctx)
}

// submit submits a task and names it in the event stream.
func (d *demoRun) submit(ctx context.Context, name, agent string, input any, opts map[string]any) (string, error) {
	params := map[string]any{"agent": agent, "input": input}
	var shown []string
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		params[k] = opts[k]
		shown = append(shown, k+" "+compact(opts[k], 60))
	}
	var r protocol.SubmitResult
	if err := d.call(ctx, protocol.MethodTaskSubmit, params, &r); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	line := fmt.Sprintf("submit   %-16s %-10s input %s", name, agent, compact(input, 48))
	if len(shown) > 0 {
		line += "  (" + strings.Join(shown, ", ") + ")"
	}
	d.p.submitted(r.TaskID, name, line)
	return r.TaskID, nil
}

// wait waits until the task is terminal and its last event is printed.
func (d *demoRun) wait(ctx context.Context, id string) (protocol.Task, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var t protocol.Task
		if err := d.call(ctx, protocol.MethodTaskWait, map[string]any{"task_id": id, "timeout_ms": 30_000}, &t); err != nil {
			return t, err
		}
		if t.State.Terminal() {
			return t, d.p.awaitTerminal(ctx, id, deadline)
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("task %s (%s) still %s after two minutes", d.p.nameOf(id), id, t.State)
		}
	}
}

// waitRunning polls task.get until the task runs.
func (d *demoRun) waitRunning(ctx context.Context, id string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var t protocol.Task
		if err := d.call(ctx, protocol.MethodTaskGet, map[string]any{"task_id": id}, &t); err != nil {
			return err
		}
		switch {
		case t.State == protocol.StateRunning:
			return nil
		case t.State.Terminal():
			return fmt.Errorf("task %s ended %s before it was seen running", d.p.nameOf(id), t.State)
		case time.Now().After(deadline):
			return fmt.Errorf("task %s still %s after a minute", d.p.nameOf(id), t.State)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *demoRun) cancel(ctx context.Context, id string) (protocol.Task, error) {
	var t protocol.Task
	if err := d.call(ctx, protocol.MethodTaskCancel, map[string]any{"task_id": id}, &t); err != nil {
		return t, err
	}
	d.p.printf("cancel   %-16s task.cancel answered: %s\n", d.p.nameOf(id), t.State)
	return t, nil
}

func (d *demoRun) waitAll(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		if _, err := d.wait(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (d *demoRun) basics(ctx context.Context) error {
	d.p.header("1. Tasks that succeed, and one that fails at once")
	a, err := d.submit(ctx, "hello", "echo", map[string]any{"hello": "fabric"}, nil)
	if err != nil {
		return err
	}
	b, err := d.submit(ctx, "sort", "jsonxform", map[string]any{"op": "sort", "data": []int{5, 3, 8, 1}}, nil)
	if err != nil {
		return err
	}
	c, err := d.submit(ctx, "shout", "jsonxform", map[string]any{"op": "upper", "data": map[string]any{"greeting": "hello", "n": 1}}, nil)
	if err != nil {
		return err
	}
	e, err := d.submit(ctx, "bad-op", "jsonxform", map[string]any{"op": "shuffle", "data": []int{1, 2}}, map[string]any{"max_retries": 0})
	if err != nil {
		return err
	}
	return d.waitAll(ctx, a, b, c, e)
}

func (d *demoRun) progress(ctx context.Context) error {
	d.p.header("2. A CPU-bound task reporting progress and a KPI")
	id, err := d.submit(ctx, "primes", "cpu", 2_000_000, nil)
	if err != nil {
		return err
	}
	return d.waitAll(ctx, id)
}

func (d *demoRun) retries(ctx context.Context) error {
	d.p.header("3. Retries with backoff: one task that always fails, one that fails half the time")
	always, err := d.submit(ctx, "always-fails", "flaky", map[string]any{}, map[string]any{
		"max_retries": 2, "backoff": map[string]any{"initial_ms": 200, "multiplier": 2, "jitter": 0},
	})
	if err != nil {
		return err
	}
	half, err := d.submit(ctx, "coin-flip", "flaky", map[string]any{"probability": 0.5}, map[string]any{
		"max_retries": 10, "backoff": map[string]any{"initial_ms": 100, "multiplier": 1, "jitter": 0},
	})
	if err != nil {
		return err
	}
	if err := d.waitAll(ctx, always, half); err != nil {
		return err
	}
	var t protocol.Task
	if err := d.call(ctx, protocol.MethodTaskGet, map[string]any{"task_id": always}, &t); err != nil {
		return err
	}
	codes := make([]string, len(t.AttemptErrors))
	for i, e := range t.AttemptErrors {
		codes[i] = e.Code
	}
	d.p.printf("task.get always-fails: %s after %d attempts (max_retries %d); attempt_errors [%s]: its dead-letter record.\n",
		t.State, t.Attempt, t.MaxRetries, strings.Join(codes, ", "))
	return nil
}

func (d *demoRun) timeout(ctx context.Context) error {
	d.p.header("4. A task over its time limit")
	id, err := d.submit(ctx, "too-slow", "cpu", demoLongN, map[string]any{"timeout_ms": 500, "max_retries": 0})
	if err != nil {
		return err
	}
	return d.waitAll(ctx, id)
}

func (d *demoRun) prioritiesAndCancel(ctx context.Context) error {
	d.p.header("5. Priorities and cancellation")
	d.p.printf("Long cpu tasks take all %d workers; while they run, echo tasks are queued from background up to critical.\n", d.workers)
	var blockers []string
	for i := 1; i <= d.workers; i++ {
		id, err := d.submit(ctx, fmt.Sprintf("busy-%d", i), "cpu", demoLongN, map[string]any{"timeout_ms": 120_000, "max_retries": 0})
		if err != nil {
			return err
		}
		blockers = append(blockers, id)
	}
	for _, id := range blockers {
		if err := d.waitRunning(ctx, id); err != nil {
			return err
		}
	}
	var queued []string
	for _, pr := range demoPriorities {
		id, err := d.submit(ctx, "prio-"+pr.String(), "echo", map[string]any{"priority": pr.String()}, map[string]any{"priority": pr.String()})
		if err != nil {
			return err
		}
		queued = append(queued, id)
	}
	never, err := d.submit(ctx, "never-runs", "echo", "cancelled while queued", map[string]any{"priority": "critical"})
	if err != nil {
		return err
	}
	if _, err := d.cancel(ctx, never); err != nil {
		return err
	}
	d.p.printf("Cancelling busy-1 stops its guest; its worker then takes the queued tasks, most urgent first.\n")
	if _, err := d.cancel(ctx, blockers[0]); err != nil {
		return err
	}
	if err := d.waitAll(ctx, append([]string{never, blockers[0]}, queued...)...); err != nil {
		return err
	}
	order := d.p.startOrder(queued)
	names := make([]string, len(order))
	for i, id := range order {
		names[i] = strings.TrimPrefix(d.p.nameOf(id), "prio-")
	}
	d.p.printf("Started in order: %s (submitted in the opposite order).\n", strings.Join(names, ", "))
	for _, id := range blockers[1:] {
		if _, err := d.cancel(ctx, id); err != nil {
			return err
		}
	}
	return d.waitAll(ctx, blockers[1:]...)
}

func (d *demoRun) summary(ctx context.Context) error {
	d.p.header("Summary")
	var k protocol.KPIReport
	if err := d.call(ctx, protocol.MethodKPIGet, nil, &k); err != nil {
		return err
	}
	var st protocol.AgentStatsList
	if err := d.call(ctx, protocol.MethodAgentStats, map[string]any{}, &st); err != nil {
		return err
	}
	d.p.printf("kpi.get over its %.0f s window: %d submitted, %d completed (%d of them failed), %.2f tasks/s.\n",
		k.WindowS, k.Submitted, k.Completed, k.Failed, k.ThroughputPerS)
	d.p.printf("Latency from submit to the end: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms.\n", k.LatencyMs.P50, k.LatencyMs.P90, k.LatencyMs.P99)
	if len(k.Custom) > 0 {
		var kv []string
		for name, v := range k.Custom {
			kv = append(kv, fmt.Sprintf("%s=%g", name, v))
		}
		sort.Strings(kv)
		d.p.printf("Custom KPIs reported by agents (summed): %s.\n", strings.Join(kv, ", "))
	}
	d.p.printf("\nagent.stats:\n")
	d.p.table(func(w io.Writer) {
		fmt.Fprintln(w, "  AGENT\tTASKS\tSUCCEEDED\tFAILED\tCANCELLED\tAVG MS\tP50 MS\tP99 MS\tCPU S\tPEAK MB")
		for _, a := range st.Agents {
			fmt.Fprintf(w, "  %s\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.3f\t%.1f\n", a.Name, a.TasksTotal, a.Succeeded, a.Failed, a.Cancelled,
				a.AvgDurationMs, a.P50Ms, a.P99Ms, a.CPUSecondsTotal, a.MemoryPeakMBMax)
		}
	})
	d.p.printf("\n%s\n", d.p.tally())
	return nil
}

// demoPrinter writes the demo's account. Events may arrive before the
// submit that made their task has returned; they wait until the task is
// named, so that each task's lines follow its submit line.
type demoPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	start    time.Time
	names    map[string]string
	pending  map[string][]protocol.TaskEvent
	started  map[string]int64 // seq of a task's first running event
	terminal map[string]bool
	states   map[protocol.State]int
	codes    map[string]int // error codes of failed and retried attempts
	retries  int
	progress int
}

func newDemoPrinter(w io.Writer) *demoPrinter {
	return &demoPrinter{
		w: w, start: time.Now(),
		names: map[string]string{}, pending: map[string][]protocol.TaskEvent{},
		started: map[string]int64{}, terminal: map[string]bool{},
		states: map[protocol.State]int{}, codes: map[string]int{},
	}
}

func (p *demoPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *demoPrinter) header(title string) {
	p.printf("\n── %s ──\n", title)
}

func (p *demoPrinter) table(f func(w io.Writer)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	f(tw)
	tw.Flush()
}

func (p *demoPrinter) nameOf(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.names[id]; ok {
		return n
	}
	return id
}

// submitted prints a submit line, names the task and prints its events that
// came first.
func (p *demoPrinter) submitted(id, name, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, line)
	p.names[id] = name
	for _, ev := range p.pending[id] {
		p.print(ev)
	}
	delete(p.pending, id)
}

func (p *demoPrinter) event(ev protocol.TaskEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.names[ev.TaskID]; !ok {
		p.pending[ev.TaskID] = append(p.pending[ev.TaskID], ev)
		return
	}
	p.print(ev)
}

// print writes one event's line and counts it; p.mu is held.
func (p *demoPrinter) print(ev protocol.TaskEvent) {
	name := p.names[ev.TaskID]
	var what string
	switch {
	case ev.Progress != nil:
		p.progress++
		what = progressBar(*ev.Progress)
	case ev.State == protocol.StateQueued:
		what = "waiting for a worker"
	case ev.State == protocol.StateRunning:
		if _, ok := p.started[ev.TaskID]; !ok {
			p.started[ev.TaskID] = ev.Seq
		}
		what = fmt.Sprintf("attempt %d", ev.Attempt)
	case ev.State == protocol.StateRetrying:
		p.retries++
		what = fmt.Sprintf("attempt %d failed, %s; retried after a backoff", ev.Attempt, describeError(ev.Error))
		if ev.Error != nil {
			p.codes[ev.Error.Code]++
		}
	case ev.State == protocol.StateSucceeded:
		what = fmt.Sprintf("attempt %d: %s", ev.Attempt, describeResult(ev.Result))
	case ev.State == protocol.StateFailed, ev.State == protocol.StateCancelled:
		what = describeError(ev.Error)
		if ev.State == protocol.StateFailed {
			what = fmt.Sprintf("attempt %d, no retry left: %s", ev.Attempt, what)
			if ev.Error != nil {
				p.codes[ev.Error.Code]++
			}
		}
	}
	if ev.State.Terminal() {
		p.states[ev.State]++
		p.terminal[ev.TaskID] = true
	}
	fmt.Fprintf(p.w, "  %7.3fs  #%-4d %-16s %-10s %s\n", ev.At.Sub(p.start).Seconds(), ev.Seq, name, ev.State, what)
}

// awaitTerminal waits until the task's terminal event has been printed.
func (p *demoPrinter) awaitTerminal(ctx context.Context, id string, deadline time.Time) error {
	for {
		p.mu.Lock()
		done := p.terminal[id]
		p.mu.Unlock()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task %s is finished but its last task.event never came", p.nameOf(id))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startOrder sorts ids by when they first ran (the seq of their first
// running event: the store numbers events in commit order).
func (p *demoPrinter) startOrder(ids []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(ids)
	sort.SliceStable(out, func(i, j int) bool { return p.started[out[i]] < p.started[out[j]] })
	return out
}

func (p *demoPrinter) tally() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var codes []string
	for c, n := range p.codes {
		codes = append(codes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(codes)
	return fmt.Sprintf("Seen in the event stream: %d succeeded, %d failed, %d cancelled; %d retries; %d progress updates; failed attempts by code: %s.",
		p.states[protocol.StateSucceeded], p.states[protocol.StateFailed], p.states[protocol.StateCancelled],
		p.retries, p.progress, strings.Join(codes, ", "))
}

func progressBar(f float64) string {
	const width = 20
	n := int(f*width + 0.5)
	n = max(0, min(width, n))
	return fmt.Sprintf("▕%s%s▏ %3.0f%%", strings.Repeat("█", n), strings.Repeat("░", width-n), f*100)
}

func describeError(e *protocol.TaskError) string {
	if e == nil {
		return "no error given"
	}
	return e.Code + ": " + truncate(e.Message, 90)
}

func describeResult(r *protocol.ExecutionResult) string {
	if r == nil {
		return "no result"
	}
	out := ""
	switch {
	case len(r.Output) > 0:
		out = "output " + truncate(string(r.Output), 60)
	case len(r.OutputBase64) > 0:
		out = fmt.Sprintf("output %d bytes (not JSON)", len(r.OutputBase64))
	default:
		out = "no output"
	}
	if len(r.KPIs) > 0 {
		var kv []string
		for name, v := range r.KPIs {
			kv = append(kv, fmt.Sprintf("%s=%g", name, v))
		}
		sort.Strings(kv)
		out += ", KPIs " + strings.Join(kv, " ")
	}
	return fmt.Sprintf("%s in %.1f ms", out, r.DurationMs)
}

func compact(v any, n int) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return truncate(string(b), n)
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
