package loadgen

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report for a reader.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%s: %d connections x %d in flight, batch %d", r.Mode, r.Connections, r.InFlight, r.Batch)
	if r.Mix != "" {
		fmt.Fprintf(w, ", mix %s", r.Mix)
	}
	if r.InputBytes > 0 {
		fmt.Fprintf(w, ", input %d B", r.InputBytes)
	}
	fmt.Fprintf(w, "\n  %d ops in %.2fs: %.0f/s\n", r.Ops, r.ElapsedS, r.ThroughputPerS)
	l := r.LatencyMs
	fmt.Fprintf(w, "  latency ms: p50 %s  p90 %s  p99 %s  max %s  mean %s\n",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.Max), fmtMs(l.Mean))
	fmt.Fprintf(w, "  cpu per op: client %.1f µs", r.ClientCPUUsPerOp)
	if r.ServerCPUUsPerOp != nil {
		fmt.Fprintf(w, ", server %.1f µs", *r.ServerCPUUsPerOp)
	}
	fmt.Fprintln(w)
	switch {
	case r.Mode == ModeSubmit:
		fmt.Fprintf(w, "  tasks: %d submitted (their ends not awaited)\n", r.Submitted)
	case r.Mode.submits():
		fmt.Fprintf(w, "  tasks: %d submitted, %d succeeded, %d failed, %d incomplete\n", r.Submitted, r.Ops, r.Failed, r.Incomplete)
	}
	if len(r.TaskErrors) > 0 {
		fmt.Fprintf(w, "  task errors: %s\n", countsText(r.TaskErrors))
	}
	if r.Overloads > 0 {
		fmt.Fprintf(w, "  overloaded (-32002): %d, retried after %d ms of waiting in all\n", r.Overloads, r.OverloadWaitMs)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors: %s\n  first error: %s\n", countsText(r.Errors), r.FirstError)
	}
	if b, a := r.ServerBefore, r.ServerAfter; b != nil && a != nil {
		fmt.Fprintf(w, "  server: rss %.1f -> %.1f MiB, heap %.1f -> %.1f MiB, goroutines %.0f -> %.0f, queued %.0f -> %.0f\n",
			b.RSSBytes/(1<<20), a.RSSBytes/(1<<20), b.HeapBytes/(1<<20), a.HeapBytes/(1<<20),
			b.Goroutines, a.Goroutines, b.QueueDepth, a.QueueDepth)
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(w, "  %d idle connections open, each costing the server %.1f KiB of rss, %.1f KiB of heap, %.1f goroutines\n",
			i.Connections, i.RSSBytesPerConn/1024, i.HeapBytesPerConn/1024, i.GoroutinesPerConn)
	}
	if r.Interrupted {
		fmt.Fprintln(w, "  interrupted before the end")
	}
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// WriteComparison writes runs of several modes side by side, each as a
// ratio to the first (the floor): the same connections and in-flight
// workers, one after the other in one invocation.
func WriteComparison(w io.Writer, reps []*Report) {
	if len(reps) < 2 {
		return
	}
	base := reps[0]
	fmt.Fprintf(w, "\nside by side (ratio to %s):\n", base.Mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tops/s\tp50 ms\tp50 x\tp99 ms\tserver µs/op\tserver x\tclient µs/op\t")
	for _, r := range reps {
		srv, srvX := "-", "-"
		if r.ServerCPUUsPerOp != nil {
			srv = fmt.Sprintf("%.1f", *r.ServerCPUUsPerOp)
			if base.ServerCPUUsPerOp != nil && *base.ServerCPUUsPerOp > 0 {
				srvX = fmt.Sprintf("%.2f", *r.ServerCPUUsPerOp / *base.ServerCPUUsPerOp)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", r.Mode, r.ThroughputPerS,
			fmtMs(r.LatencyMs.P50), ratio(r.LatencyMs.P50, base.LatencyMs.P50),
			fmtMs(r.LatencyMs.P99), srv, srvX, r.ClientCPUUsPerOp)
	}
	tw.Flush()
}

func ratio(v, base float64) string {
	if base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v/base)
}

// WriteText writes the soak's verdict for a reader.
func (s *SoakReport) WriteText(w io.Writer) {
	s.Load.WriteText(w)
	fmt.Fprintf(w, "\nsoak: %d samples; throughput %.0f/s over the first third after the warm-up, %.0f/s over the last\n",
		len(s.Samples), s.FirstThirdPerS, s.LastThirdPerS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  measure\tbefore\tfirst third\tlast third\tlimit\tverdict")
	for _, c := range s.Checks {
		before := s.Baseline.get(strings.TrimSuffix(c.Metric, "_after"))
		first, last := fmtMeasure(c.Metric, c.First), fmtMeasure(c.Metric, c.Last)
		if strings.HasSuffix(c.Metric, "_after") {
			first = "-" // the baseline is in its own column
		}
		verdict := "ok"
		if !c.OK {
			verdict = "FAIL"
			if c.Note != "" {
				verdict += ": " + c.Note
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Metric, fmtMeasure(c.Metric, before), first, last,
			fmtMeasure(c.Metric, c.Limit), verdict)
	}
	tw.Flush()
}

func fmtMeasure(metric string, v float64) string {
	if strings.HasSuffix(metric, "_bytes") {
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}
