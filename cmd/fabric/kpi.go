package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

var kpiCmd = &command{
	name:    "kpi",
	summary: "live KPIs: throughput, latency, queue depth, workers, agents; --once for one report",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		interval := fs.Duration("interval", time.Second, "time between reports (100ms..1h)")
		once := fs.Bool("once", false, "print one report (kpi.get) and exit")
		return func([]string) error {
			if *once {
				r, shown, err := callResult[protocol.KPIReport](c, protocol.MethodKPIGet, protocol.Empty{})
				if err != nil || shown {
					return err
				}
				c.printKPI(c.stdout, r)
				return nil
			}
			ms := interval.Milliseconds()
			if ms < protocol.MinKPIIntervalMs || ms > protocol.MaxKPIIntervalMs {
				return usagef("--interval: want 100ms..1h; got %v", *interval)
			}
			return c.kpiLive(ms)
		}
	},
}

// kpiLive shows kpi.get at once, then every kpi.report: redrawn in place on
// a terminal, else a line (or with --json the report) per report.
func (c *cli) kpiLive(intervalMs int64) error {
	ctx, cancel := c.context(0)
	defer cancel()
	cl, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var region *liveRegion
	if c.tty && !c.json {
		region = &liveRegion{w: c.stdout, width: c.width}
		io.WriteString(c.stdout, "\x1b[?25l") // hide the cursor while redrawing
		defer io.WriteString(c.stdout, "\x1b[?25h")
	}
	show := func(raw json.RawMessage) error {
		if c.json {
			c.emit(raw)
			return nil
		}
		var r protocol.KPIReport
		if err := decode(raw, &r); err != nil {
			return err
		}
		if region == nil {
			fmt.Fprintln(c.stdout, kpiLine(r))
			return nil
		}
		var b strings.Builder
		c.printKPI(&b, r)
		region.draw(nil, strings.Split(strings.TrimRight(b.String(), "\n"), "\n"))
		return nil
	}
	var first json.RawMessage
	if err := cl.Call(ctx, protocol.MethodKPIGet, protocol.Empty{}, &first); err != nil {
		return err
	}
	if err := show(first); err != nil {
		return err
	}
	if err := cl.Call(ctx, protocol.MethodKPISubscribe, protocol.KPISubscribeParams{IntervalMs: intervalMs}, nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			if c.ctx.Err() != nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil // interrupted, or --timeout: the ways kpi ends
			}
			return ctx.Err()
		case n, ok := <-cl.Notifications():
			if !ok {
				return cl.Err()
			}
			if n.Method != protocol.NotifyKPIReport {
				continue
			}
			var note struct {
				Report json.RawMessage `json:"report"`
			}
			if err := decode(n.Params, &note); err != nil {
				return err
			}
			if err := show(note.Report); err != nil {
				return err
			}
		}
	}
}

// printKPI renders a report as the multi-line view.
func (c *cli) printKPI(w io.Writer, r protocol.KPIReport) {
	fmt.Fprintf(w, "fabric KPIs at %s, over the last %s\n\n", r.At.Local().Format("15:04:05"), fmtDuration(secondsDuration(r.WindowS)))
	row := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-12s"+format+"\n", append([]any{label}, args...)...)
	}
	row("throughput", "%s/s  submitted %d  completed %d  failed %d", fmtRate(r.ThroughputPerS), r.Submitted, r.Completed, r.Failed)
	row("latency", "p50 %s  p90 %s  p99 %s", fmtMs(r.LatencyMs.P50), fmtMs(r.LatencyMs.P90), fmtMs(r.LatencyMs.P99))
	row("queue", "%d waiting: %s", queueTotal(r.QueueDepth), queueByPriority(r.QueueDepth))
	row("running", "%d of %d workers  [%s]", r.Running, r.Workers, bar(ratio(r.Running, r.Workers), 20))
	if len(r.Custom) > 0 {
		row("custom", "%s", sortedKV(r.Custom, fmtNum))
	}
	if len(r.Agents) > 0 {
		fmt.Fprintln(w)
		c.statsTable(w, r.Agents)
	}
}

// kpiLine is a report in one line, for logs.
func kpiLine(r protocol.KPIReport) string {
	return fmt.Sprintf("%s  throughput %s/s  completed %d  failed %d  p50 %s  p90 %s  p99 %s  queue %d (%s)  running %d/%d",
		r.At.Local().Format("15:04:05"), fmtRate(r.ThroughputPerS), r.Completed, r.Failed,
		fmtMs(r.LatencyMs.P50), fmtMs(r.LatencyMs.P90), fmtMs(r.LatencyMs.P99),
		queueTotal(r.QueueDepth), queueByPriority(r.QueueDepth), r.Running, r.Workers)
}

func fmtRate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func queueTotal(q map[string]int) int {
	n := 0
	for _, v := range q {
		n += v
	}
	return n
}

// queueByPriority lists the depth of every priority, most urgent first.
func queueByPriority(q map[string]int) string {
	parts := make([]string, 0, len(protocol.Priorities))
	for _, p := range protocol.Priorities {
		parts = append(parts, fmt.Sprintf("%s %d", p, q[p.String()]))
	}
	return strings.Join(parts, ", ")
}

func ratio(a, b int) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

var healthCmd = &command{
	name:    "health",
	summary: "the server's health (system.health); exit status 1 unless it is ok",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func([]string) error {
			raw, err := c.call(protocol.MethodSystemHealth, protocol.Empty{})
			if err != nil {
				return err
			}
			var h protocol.Health
			if err := decode(raw, &h); err != nil {
				return err
			}
			if c.json {
				c.emit(raw)
			} else {
				tw := newTable(c.stdout)
				fmt.Fprintf(tw, "status\t%s\n", h.Status)
				fmt.Fprintf(tw, "version\t%s\n", h.Version)
				fmt.Fprintf(tw, "engine\t%s\n", h.Engine)
				fmt.Fprintf(tw, "uptime\t%s\n", fmtDuration(secondsDuration(h.UptimeS).Truncate(time.Second)))
				fmt.Fprintf(tw, "queue depth\t%d\n", h.QueueDepth)
				fmt.Fprintf(tw, "running\t%d\n", h.Running)
				tw.Flush()
			}
			if h.Status != protocol.HealthOK {
				return failedf("the server is %s", h.Status)
			}
			return nil
		}
	},
}
