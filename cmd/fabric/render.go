package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// This file holds the human output's building blocks: tables, relative times,
// sizes, progress bars, and the in-place redrawing of a terminal region.

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// relTime says when t was relative to now: "just now", "42s ago", "3m ago",
// "5h ago", "2d ago", or "in 4s" for the future.
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	suffix, prefix := " ago", ""
	if d < 0 {
		d, suffix, prefix = -d, "", "in "
	}
	var s string
	switch {
	case d < time.Second:
		if prefix != "" {
			return "now"
		}
		return "just now"
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return prefix + s + suffix
}

// relTimePtr is relTime for optional times.
func relTimePtr(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return relTime(*t, now)
}

// fmtDuration renders a duration with about three significant figures:
// 850µs, 12ms, 1.50s, 2m03s, 1h02m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDuration(-d)
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	}
	return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
}

// fmtMs renders milliseconds as fmtDuration does.
func fmtMs(ms float64) string {
	if math.IsNaN(ms) || math.IsInf(ms, 0) {
		return "-"
	}
	return fmtDuration(time.Duration(ms * float64(time.Millisecond)))
}

// fmtBytes renders a size in binary units: 512 B, 12.3 KiB, 4.0 MiB.
func fmtBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// fmtNum renders a float without needless decimals: 3, 2.5, 0.125.
func fmtNum(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.4g", v)
}

// bar draws frac (0..1) as a bar of width cells with eighth-cell precision.
func bar(frac float64, width int) string {
	if width <= 0 {
		return ""
	}
	if math.IsNaN(frac) || frac < 0 {
		frac = 0
	}
	if frac > 1 {
		frac = 1
	}
	eighths := int(math.Round(frac * float64(width*8)))
	full, part := eighths/8, eighths%8
	var b strings.Builder
	b.WriteString(strings.Repeat("█", full))
	if part > 0 {
		b.WriteString(string([]rune("▏▎▍▌▋▊▉")[part-1]))
		full++
	}
	b.WriteString(strings.Repeat(" ", width-full))
	return b.String()
}

// progressText is a bar with the percentage: "[████▌     ]  45%".
func progressText(frac float64, width int) string {
	return fmt.Sprintf("[%s] %3.0f%%", bar(frac, width), math.Max(0, math.Min(1, frac))*100)
}

// truncate cuts s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// sortedKV renders a map as "k=v k=v" in key order.
func sortedKV[V any](m map[string]V, format func(V) string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + format(m[k])
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// liveRegion redraws the last lines of a terminal in place: each draw erases
// what the previous one drew, prints lines that scroll away for good
// (permanent), then the region's new lines. Lines are cut to the width so
// that none wraps, which would break the count of lines to erase.
type liveRegion struct {
	w     io.Writer
	width int
	drawn int // lines of the region currently on screen
}

// draw replaces the region with live, after printing permanent above it.
func (r *liveRegion) draw(permanent, live []string) {
	var b strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", r.drawn) // cursor up to the region's first line
	}
	b.WriteString("\r\x1b[J") // erase from there to the end of the screen
	for _, l := range permanent {
		b.WriteString(truncate(l, r.width-1))
		b.WriteString("\n")
	}
	for _, l := range live {
		b.WriteString(truncate(l, r.width-1))
		b.WriteString("\n")
	}
	r.drawn = len(live)
	io.WriteString(r.w, b.String())
}

// clear erases the region, leaving the cursor where it began.
func (r *liveRegion) clear() { r.draw(nil, nil) }

func secondsDuration(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// oneLine folds a message that spans lines (a trap's stack trace) into one
// line, for tables and event lines; --json keeps the text as it is.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
