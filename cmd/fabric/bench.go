package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/internal/loadgen"
	"github.com/chimera-fabric/fabric/protocol"
)

// loadFlags are the flags of bench and soak that shape the load.
type loadFlags struct {
	modes             string
	connections       int
	idle              int
	inFlight          int
	duration          time.Duration
	count             int64
	batch             int
	agent             string
	mix               string
	input             string
	agentInputs       *listFlag
	inputSize         int
	priorities        string
	timeoutMs         int64
	maxRetries        int
	register          *listFlag
	echoURL           string
	keepSubscriptions bool
}

func (lf *loadFlags) define(fs *flag.FlagSet, defMode string, defDuration time.Duration) {
	lf.agentInputs = &listFlag{}
	lf.register = &listFlag{}
	fs.StringVar(&lf.modes, "mode", defMode, "what to do: submit-wait, submit-subscribe, submit (without waiting for the tasks), health (system.health round trips) or echo (raw WebSocket echo); bench takes a comma list and runs each in turn, side by side")
	fs.IntVar(&lf.connections, "connections", 4, "WebSocket connections")
	fs.IntVar(&lf.idle, "idle-connections", 0, "more connections, opened first and kept open doing nothing during the run (their cost per connection is reported)")
	fs.IntVar(&lf.inFlight, "in-flight", 8, "workers per connection, each with one task (or one batch) in flight")
	fs.DurationVar(&lf.duration, "duration", defDuration, "how long to issue new work (then the work in flight ends)")
	fs.Int64Var(&lf.count, "count", 0, "tasks or round trips to do instead of a duration")
	fs.IntVar(&lf.batch, "batch", 1, "tasks (or calls) per JSON-RPC batch")
	fs.StringVar(&lf.agent, "agent", "echo", "the agent of every task (see --mix)")
	fs.StringVar(&lf.mix, "mix", "", "a weighted mix of agents instead of --agent: `AGENT:WEIGHT,...` as in echo:3,cpu:1")
	fs.StringVar(&lf.input, "input", "{}", "every task's input, as JSON")
	fs.Var(lf.agentInputs, "agent-input", "one agent's input instead of --input: `AGENT=JSON`, as in cpu=1000 (repeatable)")
	fs.IntVar(&lf.inputSize, "input-size", 0, "instead of --input, a JSON string of this many `bytes`")
	fs.StringVar(&lf.priorities, "priority", "normal", "task priority, or a comma list cycled over the tasks")
	fs.Int64Var(&lf.timeoutMs, "timeout-ms", 0, "each task's timeout in `ms` (default: the server's)")
	fs.IntVar(&lf.maxRetries, "max-retries", -1, "each task's max_retries (default: the server's)")
	fs.Var(lf.register, "register", "register `NAME=FILE.wasm` before the run (repeatable; same bytes again is a no-op)")
	fs.StringVar(&lf.echoURL, "echo-url", "", "the echo server of --mode echo, as `fabric echo-server` prints it (default: one started in this process)")
	fs.BoolVar(&lf.keepSubscriptions, "keep-subscriptions", false, "submit-subscribe: never unsubscribe (what such clients cost the server)")
}

// configs builds one loadgen.Config per mode.
// durationGiven says whether --duration was on the command line.
func (lf *loadFlags) configs(c *cli, durationGiven bool) ([]loadgen.Config, error) {
	var modes []loadgen.Mode
	for _, s := range strings.Split(lf.modes, ",") {
		m, err := loadgen.ParseMode(strings.TrimSpace(s))
		if err != nil {
			return nil, usagef("--mode: %v", err)
		}
		modes = append(modes, m)
	}
	mixText := lf.agent + ":1"
	if lf.mix != "" {
		mixText = lf.mix
	}
	mix, err := loadgen.ParseMix(mixText)
	if err != nil {
		return nil, usagef("--mix: %v", err)
	}
	for _, ai := range lf.agentInputs.vals {
		name, in, ok := strings.Cut(ai, "=")
		if !ok || !json.Valid([]byte(in)) {
			return nil, usagef("--agent-input: want AGENT=JSON, as in cpu=1000; got %q", ai)
		}
		found := false
		for i := range mix {
			if mix[i].Agent == name {
				mix[i].Input, found = json.RawMessage(in), true
			}
		}
		if !found {
			return nil, usagef("--agent-input: agent %q is not in the mix (%s)", name, mixText)
		}
	}
	if !json.Valid([]byte(lf.input)) {
		return nil, usagef("--input: not valid JSON: %q (quote text as '\"text\"')", lf.input)
	}
	var pris []protocol.Priority
	for _, s := range strings.Split(lf.priorities, ",") {
		p, err := protocol.ParsePriority(strings.TrimSpace(s))
		if err != nil {
			return nil, usagef("--priority: %v", err)
		}
		pris = append(pris, p)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"connections", lf.connections}, {"in-flight", lf.inFlight}, {"batch", lf.batch}} {
		if f.v < 1 {
			return nil, usagef("--%s: want >= 1; got %d", f.name, f.v)
		}
	}
	if lf.count < 0 {
		return nil, usagef("--count: want >= 0; got %d", lf.count)
	}
	if lf.count > 0 && durationGiven {
		return nil, usagef("--count and --duration: give one")
	}
	var out []loadgen.Config
	for _, m := range modes {
		cfg := loadgen.Config{
			URL: c.url, Token: c.token, Mode: m,
			Connections: lf.connections, IdleConnections: lf.idle, InFlight: lf.inFlight, Batch: lf.batch,
			Duration: lf.duration, Count: lf.count,
			Mix: mix, Input: json.RawMessage(lf.input), InputSize: lf.inputSize,
			Priorities: pris, TimeoutMs: lf.timeoutMs, KeepSubscriptions: lf.keepSubscriptions,
		}
		if lf.count > 0 {
			cfg.Duration = 0
		}
		if lf.maxRetries >= 0 {
			cfg.MaxRetries = &lf.maxRetries
		}
		if m == loadgen.ModeEcho {
			cfg.URL = lf.echoURL // "" until the run starts one
		}
		probe := cfg
		if probe.URL == "" {
			probe.URL = "ws://127.0.0.1:1/echo"
		}
		if err := probe.Validate(); err != nil {
			return nil, usagef("%v", err)
		}
		out = append(out, cfg)
	}
	return out, nil
}

// registerAgents registers the --register modules.
func (lf *loadFlags) registerAgents(c *cli) error {
	for _, r := range lf.register.vals {
		name, path, ok := strings.Cut(r, "=")
		if !ok || name == "" || path == "" {
			return usagef("--register: want NAME=FILE.wasm; got %q", r)
		}
		wasm, err := os.ReadFile(path)
		if err != nil {
			return usagef("--register: %v", err)
		}
		if _, err := c.call(protocol.MethodAgentRegister, protocol.RegisterParams{Name: name, Wasm: wasm}); err != nil {
			return fmt.Errorf("registering %s from %s: %w", name, path, err)
		}
	}
	return nil
}

// progress draws the live progress line on a terminal's stderr.
type progress struct {
	c     *cli
	label string
	mu    sync.Mutex
	drawn bool
}

func (p *progress) show(pr loadgen.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("%s %6.1fs  %d ops  %.0f/s  in flight %d", p.label, pr.Elapsed.Seconds(), pr.Ops, pr.Rate, pr.InFlight)
	if pr.Overloads > 0 {
		line += fmt.Sprintf("  overloaded %d", pr.Overloads)
	}
	if pr.Errors > 0 || pr.Failed > 0 {
		line += fmt.Sprintf("  errors %d  failed %d", pr.Errors, pr.Failed)
	}
	if len(line) > p.c.width-1 {
		line = line[:p.c.width-1]
	}
	fmt.Fprintf(p.c.stderr, "\r\033[K%s", line)
	p.drawn = true
}

func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.c.stderr, "\r\033[K")
		p.drawn = false
	}
}

var benchCmd = &command{
	name:    "bench",
	summary: "drive fabricd with load and report throughput, latency percentiles and errors",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		lf := &loadFlags{}
		lf.define(fs, string(loadgen.ModeSubmitWait), 10*time.Second)
		return func([]string) error {
			cfgs, err := lf.configs(c, flagSet(fs, "duration"))
			if err != nil {
				return err
			}
			ctx, cancel := c.context(0)
			defer cancel()
			if err := lf.registerAgents(c); err != nil {
				return err
			}
			var reps []*loadgen.Report
			var problems []string
			for _, cfg := range cfgs {
				rep, err := c.runLoad(ctx, cfg)
				if err != nil {
					return err
				}
				reps = append(reps, rep)
				if c.json {
					b, _ := json.Marshal(rep)
					c.emit(b)
				} else {
					if len(reps) > 1 {
						fmt.Fprintln(c.stdout)
					}
					rep.WriteText(c.stdout)
				}
				if !rep.OK() {
					problems = append(problems, fmt.Sprintf("%s: %s", rep.Mode, rep.Problem()))
				}
				if ctx.Err() != nil {
					break
				}
			}
			if !c.json {
				loadgen.WriteComparison(c.stdout, reps)
			}
			if len(problems) > 0 {
				return failedf("%s", strings.Join(problems, "\n"))
			}
			return nil
		}
	},
}

// runLoad runs one mode, starting an echo server in this process for echo
// mode when --echo-url names none.
func (c *cli) runLoad(ctx context.Context, cfg loadgen.Config) (*loadgen.Report, error) {
	if cfg.Mode == loadgen.ModeEcho && cfg.URL == "" {
		srv, err := loadgen.StartEchoServer("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		cfg.URL = srv.URL
		cfg.MetricsURL = "-" // its CPU is this process's
	}
	p := &progress{c: c, label: string(cfg.Mode)}
	if c.errTTY {
		cfg.Progress = p.show
	}
	rep, err := loadgen.Run(ctx, cfg)
	p.clear()
	return rep, err
}

var echoServerCmd = &command{
	name:    "echo-server",
	summary: "serve a raw WebSocket echo: the floor that bench --mode echo --echo-url measures",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		listen := fs.String("listen", "127.0.0.1:7421", "`HOST:PORT` to listen on")
		return func([]string) error {
			srv, err := loadgen.StartEchoServer(*listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s\n", srv.URL)
			if f, ok := c.stdout.(interface{ Sync() error }); ok {
				f.Sync()
			}
			ctx, cancel := c.context(0)
			defer cancel()
			<-ctx.Done()
			srv.Close()
			return nil
		}
	},
}
