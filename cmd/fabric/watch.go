package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

var watchCmd = &command{
	name:    "watch",
	summary: "follow task events live: progress bars on a terminal, else a line per event",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		agent := fs.String("agent", "", "only tasks of this `agent`")
		tasks := &listFlag{comma: true}
		fs.Var(tasks, "task", "only this task `ID`; repeatable; watch ends when they all have ended")
		afterSeq := fs.Int64("after-seq", 0, "first replay the stored events after sequence number `N` (0 replays all)")
		return func([]string) error {
			p := protocol.SubscribeParams{TaskIDs: tasks.vals, Agent: *agent}
			if flagSet(fs, "after-seq") {
				if *afterSeq < 0 {
					return usagef("--after-seq: want >= 0; got %d", *afterSeq)
				}
				p.AfterSeq = afterSeq
			}
			return c.watch(p)
		}
	},
}

// watch runs until interrupted, --timeout, the end of the named tasks, or
// the end of the connection (an error).
func (c *cli) watch(p protocol.SubscribeParams) error {
	ctx, cancel := c.context(0)
	defer cancel()
	cl, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Call(ctx, protocol.MethodTaskSubscribe, p, nil); err != nil {
		return err
	}
	w := &watcher{c: c, live: map[string]*taskState{}}
	if len(p.TaskIDs) > 0 {
		w.pending = map[string]bool{}
		for _, id := range p.TaskIDs {
			w.pending[id] = true
		}
		if p.AfterSeq == nil {
			// Tasks that ended before the subscription send no more events.
			if err := w.checkEnded(ctx, cl, p.TaskIDs); err != nil {
				return err
			}
		}
	}
	if c.tty && !c.json {
		w.region = &liveRegion{w: c.stdout, width: c.width}
		defer w.region.clear()
	}
	var tick <-chan time.Time
	if w.region != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	notes := cl.Notifications()
	for !w.finished() {
		select {
		case <-ctx.Done():
			if c.ctx.Err() != nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil // interrupted, or --timeout: the ways a watch ends
			}
			return ctx.Err()
		case n, ok := <-notes:
			if !ok {
				return cl.Err()
			}
			if n.Method != protocol.NotifyTaskEvent {
				continue
			}
			if c.json {
				c.emit(n.Params)
			}
			if ev, ok := decodeEvent(n); ok {
				w.event(ev)
			}
		case <-tick:
			w.redraw(nil)
		}
	}
	return nil
}

// watcher holds what watch shows.
type watcher struct {
	c       *cli
	region  *liveRegion           // nil: a line per event
	live    map[string]*taskState // running tasks, on a terminal
	order   []string              // live's keys in the order they started
	pending map[string]bool       // --task IDs that have not ended; nil: watch all
}

func (w *watcher) finished() bool { return w.pending != nil && len(w.pending) == 0 }

func (w *watcher) checkEnded(ctx context.Context, cl *client.Client, ids []string) error {
	for _, id := range ids {
		var t protocol.Task
		if err := cl.Call(ctx, protocol.MethodTaskGet, protocol.TaskIDParams{TaskID: id}, &t); err != nil {
			return err
		}
		if t.State.Terminal() {
			delete(w.pending, id)
			if !w.c.json {
				at := t.CreatedAt
				if t.FinishedAt != nil {
					at = *t.FinishedAt
				}
				fmt.Fprintln(w.c.stdout, eventLine(protocol.TaskEvent{TaskID: t.TaskID, Agent: t.Agent,
					State: t.State, Attempt: t.Attempt, Error: t.Error, Result: t.Result}, at)+" (ended before the watch)")
			}
		}
	}
	return nil
}

func (w *watcher) event(ev protocol.TaskEvent) {
	if ev.State.Terminal() {
		delete(w.pending, ev.TaskID)
	}
	if w.c.json {
		return
	}
	if w.region == nil {
		fmt.Fprintln(w.c.stdout, eventLine(ev, ev.At))
		return
	}
	st := w.live[ev.TaskID]
	if st == nil {
		st = &taskState{id: ev.TaskID, agent: ev.Agent}
	}
	changed := st.apply(ev)
	var permanent []string
	if ev.State == protocol.StateRunning {
		if w.live[ev.TaskID] == nil {
			w.live[ev.TaskID] = st
			w.order = append(w.order, ev.TaskID)
		}
	} else {
		if w.live[ev.TaskID] != nil {
			delete(w.live, ev.TaskID)
			w.order = remove(w.order, ev.TaskID)
		}
		if changed {
			permanent = append(permanent, eventLine(ev, ev.At))
		}
	}
	w.redraw(permanent)
}

// maxLive bounds the live region; more running tasks are counted.
const maxLive = 20

func (w *watcher) redraw(permanent []string) {
	if w.region == nil {
		return
	}
	now := w.c.now()
	var lines []string
	for i, id := range w.order {
		if i == maxLive {
			lines = append(lines, fmt.Sprintf("… and %d more running", len(w.order)-maxLive))
			break
		}
		lines = append(lines, w.live[id].line(now, w.c.barWidth()))
	}
	w.region.draw(permanent, lines)
}

func remove(s []string, v string) []string {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// taskState is what the events of one task have told so far.
type taskState struct {
	id, agent string
	state     protocol.State
	attempt   int
	progress  *float64
	since     time.Time // when the current state began
	err       *protocol.TaskError
}

// apply updates the state; it reports whether the state or attempt changed
// (rather than only the progress).
func (s *taskState) apply(ev protocol.TaskEvent) bool {
	if ev.Agent != "" {
		s.agent = ev.Agent
	}
	changed := ev.State != s.state || ev.Attempt != s.attempt
	if changed {
		s.state, s.attempt, s.since, s.progress = ev.State, ev.Attempt, ev.At, nil
	}
	if ev.Progress != nil {
		s.progress = ev.Progress
	}
	if ev.Error != nil {
		s.err = ev.Error
	}
	return changed
}

// line is the task's live line: id, agent, progress bar, state, attempt and
// time in the state.
func (s *taskState) line(now time.Time, barWidth int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s  %-12s  ", shortID(s.id), truncate(orDash(s.agent), 12))
	switch {
	case s.state == protocol.StateRunning && s.progress != nil:
		b.WriteString(progressText(*s.progress, barWidth))
	case s.state == protocol.StateRunning:
		b.WriteString("[" + strings.Repeat("·", barWidth) + "]    ")
	}
	fmt.Fprintf(&b, "  %s", s.state)
	if s.attempt > 0 {
		fmt.Fprintf(&b, "  attempt %d", s.attempt)
	}
	if !s.since.IsZero() {
		fmt.Fprintf(&b, "  %s", fmtDuration(now.Sub(s.since).Truncate(100*time.Millisecond)))
	}
	if s.state == protocol.StateRetrying && s.err != nil {
		fmt.Fprintf(&b, "  after %s", s.err.Code)
	}
	return b.String()
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// eventLine is one event as a line of text.
func eventLine(ev protocol.TaskEvent, at time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  %s  %s", at.Local().Format("15:04:05.000"), ev.TaskID, orDash(ev.Agent), ev.State)
	if ev.Attempt > 0 {
		fmt.Fprintf(&b, "  attempt %d", ev.Attempt)
	}
	if ev.Progress != nil {
		fmt.Fprintf(&b, "  %.0f%%", *ev.Progress*100)
	}
	if ev.Result != nil {
		fmt.Fprintf(&b, "  in %s", fmtMs(ev.Result.DurationMs))
	}
	if ev.Error != nil {
		fmt.Fprintf(&b, "  %s: %s", ev.Error.Code, oneLine(ev.Error.Message))
	}
	if ev.Seq > 0 {
		fmt.Fprintf(&b, "  (seq %d)", ev.Seq)
	}
	return b.String()
}

// barWidth is the width of progress bars for the terminal's width.
func (c *cli) barWidth() int { return max(10, min(30, c.width/4)) }
