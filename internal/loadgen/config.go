// Package loadgen drives a running fabricd over real WebSockets and measures
// what it sees: throughput, latency percentiles, errors by code, and the
// server's own CPU time per operation (from its /metrics). `fabric bench`
// and `fabric soak` are its command line; the CLI's tests run it against a
// real fabricd.
//
// A run opens Connections connections and runs InFlight workers on each.
// A worker does one operation at a time (one task, or one batch of Batch
// tasks) until Count operations have been claimed or Duration has passed,
// then the run waits for the operations in flight to end. The modes:
//
//	submit-wait       task.submit, then task.wait; a task's latency is from
//	                  the submit's send to the wait's answer
//	submit-subscribe  task.submit {subscribe: true}; the task is done when
//	                  its terminal task.event arrives, after which the
//	                  subscription is dropped (an unsubscribe notification)
//	submit            task.submit alone: the task's latency is the submit's
//	                  answer, and the run does not wait for tasks to end (it
//	                  fills the queue; a task that later fails is not seen)
//	health            system.health round trips: the floor of any call
//	echo              the bytes of a system.health request sent over a bare
//	                  WebSocket to an echo server (EchoHandler) and read
//	                  back: the floor under the JSON-RPC layer
//
// An overloaded answer (-32002) is counted apart from the errors and
// honoured: the worker sleeps for its data.retry_after_ms and submits the
// task again, and the wait is part of that task's latency.
package loadgen

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Mode is what a run's workers do.
type Mode string

// The modes; see the package documentation.
const (
	ModeSubmitWait      Mode = "submit-wait"
	ModeSubmitSubscribe Mode = "submit-subscribe"
	ModeSubmit          Mode = "submit"
	ModeHealth          Mode = "health"
	ModeEcho            Mode = "echo"
)

// Modes lists every mode.
var Modes = []Mode{ModeSubmitWait, ModeSubmitSubscribe, ModeSubmit, ModeHealth, ModeEcho}

// ParseMode parses a mode's name.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("want one of submit-wait, submit-subscribe, submit, health, echo; got %q", s)
}

func (m Mode) submits() bool {
	return m == ModeSubmitWait || m == ModeSubmitSubscribe || m == ModeSubmit
}

// MixEntry is one kind of task in a run's mix: tasks of Agent are submitted
// Weight times out of every sum-of-weights tasks.
type MixEntry struct {
	Agent  string
	Weight int
	// Input is the task's input (JSON); nil uses Config.Input.
	Input json.RawMessage
}

// ParseMix parses "echo:3,cpu:1" (a missing weight is 1).
func ParseMix(s string) ([]MixEntry, error) {
	var mix []MixEntry
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, hasW := strings.Cut(part, ":")
		e := MixEntry{Agent: name, Weight: 1}
		if hasW {
			n, err := strconv.Atoi(w)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%q: want AGENT:WEIGHT with a weight >= 1, as in echo:3,cpu:1", part)
			}
			e.Weight = n
		}
		if e.Agent == "" {
			return nil, fmt.Errorf("%q: want AGENT:WEIGHT, as in echo:3,cpu:1", part)
		}
		mix = append(mix, e)
	}
	if len(mix) == 0 {
		return nil, fmt.Errorf("want AGENT[:WEIGHT],... as in echo:3,cpu:1; got %q", s)
	}
	return mix, nil
}

// Config is one run's settings. The zero value of each optional field has
// the documented default, filled by Validate.
type Config struct {
	URL   string // ws://HOST:PORT/rpc (the echo server's URL in echo mode)
	Token string
	Mode  Mode

	Connections int // default 1
	// IdleConnections are opened before the run and kept open, sending
	// nothing, while it runs: what many open connections cost the server
	// and do to the latency of the work (Report.Idle).
	IdleConnections int
	InFlight        int           // workers per connection; default 1
	Duration        time.Duration // how long to issue new operations; default 10s when Count is 0
	Count           int64         // operations (tasks, or round trips) to do; 0: run for Duration
	Batch           int           // tasks or calls per JSON-RPC batch; default 1 (no batches)

	Mix        []MixEntry          // required for the submit modes
	Input      json.RawMessage     // default {}
	InputSize  int                 // > 0: every input is a JSON string of this many bytes
	Priorities []protocol.Priority // cycled over the tasks; default normal
	TimeoutMs  int64               // each task's timeout_ms; 0: the server's default
	MaxRetries *int                // each task's max_retries; nil: the server's default

	// KeepSubscriptions leaves each task's subscription open after its last
	// event (submit-subscribe): what a client that never unsubscribes costs
	// the server.
	KeepSubscriptions bool

	// MetricsURL is the server's /metrics, read before and after the run
	// for its CPU time; default derived from URL; "-" reads none (an echo
	// server in the load generator's own process).
	MetricsURL string

	// Progress, when set, is called every ProgressEvery (default 500ms)
	// from a goroutine of the run.
	Progress      func(Progress)
	ProgressEvery time.Duration

	// Drain bounds how long the operations in flight may take to end once
	// the run stops issuing new ones or its context ends. Default 1 minute.
	Drain time.Duration
}

// Validate checks c and fills its defaults.
func (c *Config) Validate() error {
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return fmt.Errorf("mode: %v", err)
	}
	if !strings.HasPrefix(c.URL, "ws://") && !strings.HasPrefix(c.URL, "wss://") {
		return fmt.Errorf("url: want ws://HOST:PORT/rpc or wss://…; got %q", c.URL)
	}
	defInt := func(name string, p *int, def, max int) error {
		if *p == 0 {
			*p = def
		}
		if *p < 1 || *p > max {
			return fmt.Errorf("%s: want 1..%d; got %d", name, max, *p)
		}
		return nil
	}
	if err := defInt("connections", &c.Connections, 1, 100_000); err != nil {
		return err
	}
	if c.IdleConnections < 0 || c.IdleConnections > 1_000_000 {
		return fmt.Errorf("idle-connections: want 0..1000000; got %d", c.IdleConnections)
	}
	if err := defInt("in-flight", &c.InFlight, 1, 100_000); err != nil {
		return err
	}
	if err := defInt("batch", &c.Batch, 1, 10_000); err != nil {
		return err
	}
	if c.Count < 0 {
		return fmt.Errorf("count: want >= 0; got %d", c.Count)
	}
	if c.Duration < 0 {
		return fmt.Errorf("duration: want >= 0; got %v", c.Duration)
	}
	if c.Count == 0 && c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Mode.submits() {
		if len(c.Mix) == 0 {
			return fmt.Errorf("mix: want at least one agent for mode %s", c.Mode)
		}
		for _, e := range c.Mix {
			if e.Weight < 1 {
				return fmt.Errorf("mix: agent %q: want a weight >= 1; got %d", e.Agent, e.Weight)
			}
			if e.Input != nil && !json.Valid(e.Input) {
				return fmt.Errorf("mix: agent %q: its input is not JSON: %q", e.Agent, e.Input)
			}
		}
	}
	if c.Input == nil {
		c.Input = json.RawMessage(`{}`)
	}
	if !json.Valid(c.Input) {
		return fmt.Errorf("input: not JSON: %q", c.Input)
	}
	if c.InputSize < 0 || c.InputSize == 1 {
		return fmt.Errorf("input-size: want 0 (use the input as given) or >= 2 bytes (a JSON string); got %d", c.InputSize)
	}
	if len(c.Priorities) == 0 {
		c.Priorities = []protocol.Priority{protocol.Normal}
	}
	if c.TimeoutMs < 0 {
		return fmt.Errorf("timeout-ms: want >= 0; got %d", c.TimeoutMs)
	}
	if c.MaxRetries != nil && *c.MaxRetries < 0 {
		return fmt.Errorf("max-retries: want >= 0; got %d", *c.MaxRetries)
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 500 * time.Millisecond
	}
	if c.Drain <= 0 {
		c.Drain = time.Minute
	}
	if c.MetricsURL == "" {
		u, err := MetricsURL(c.URL)
		if err != nil {
			return err
		}
		c.MetricsURL = u
	}
	return nil
}

// MetricsURL derives fabricd's /metrics URL from its WebSocket URL:
// ws://HOST:PORT/rpc gives http://HOST:PORT/metrics.
func MetricsURL(wsURL string) (string, error) {
	rest, ok := strings.CutPrefix(wsURL, "ws://")
	scheme := "http://"
	if !ok {
		if rest, ok = strings.CutPrefix(wsURL, "wss://"); !ok {
			return "", fmt.Errorf("url: want ws://HOST:PORT/rpc or wss://…; got %q", wsURL)
		}
		scheme = "https://"
	}
	host, _, _ := strings.Cut(rest, "/")
	return scheme + host + "/metrics", nil
}

// payloads are the pre-encoded params of the tasks of a mix, in the order
// a run submits them (the weights spread out, priorities cycled).
func (c *Config) payloads() ([][]byte, error) {
	var seq [][]byte
	input := c.Input
	if c.InputSize > 0 {
		input = json.RawMessage(`"` + strings.Repeat("x", c.InputSize-2) + `"`)
	}
	// Interleave the weights (echo:2,cpu:1 gives echo cpu echo, not echo
	// echo cpu) so that any stretch of the run holds the mix.
	left := make([]int, len(c.Mix))
	total := 0
	for i, e := range c.Mix {
		left[i] = e.Weight
		total += e.Weight
	}
	var order []int
	for len(order) < total {
		for i := range c.Mix {
			if left[i] > 0 {
				order = append(order, i)
				left[i]--
			}
		}
	}
	// The sequence is the mix repeated until the priorities line up again.
	n := total * len(c.Priorities)
	for k := 0; k < n; k++ {
		e := c.Mix[order[k%total]]
		in := input
		if e.Input != nil {
			in = e.Input
		}
		pri := c.Priorities[k%len(c.Priorities)]
		p := protocol.SubmitParams{
			Agent: e.Agent, Input: in, TimeoutMs: c.TimeoutMs, MaxRetries: c.MaxRetries,
			Subscribe: c.Mode == ModeSubmitSubscribe,
		}
		if pri != protocol.Normal {
			p.Priority = &pri
		}
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encoding the params of agent %q: %w", e.Agent, err)
		}
		seq = append(seq, b)
	}
	return seq, nil
}
