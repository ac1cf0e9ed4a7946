package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

var taskGetCmd = &command{
	name:    "task get",
	args:    "ID",
	summary: "show a task: its state, result or error, usage and logs",
	minArgs: 1, maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func(args []string) error {
			raw, err := c.call(protocol.MethodTaskGet, protocol.TaskIDParams{TaskID: args[0]})
			if err != nil {
				return err
			}
			_, err = c.showTask(raw)
			return err
		}
	},
}

var taskCancelCmd = &command{
	name:    "task cancel",
	args:    "ID",
	summary: "cancel a task; a running guest is stopped",
	minArgs: 1, maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		return func(args []string) error {
			raw, err := c.call(protocol.MethodTaskCancel, protocol.TaskIDParams{TaskID: args[0]})
			if err != nil {
				return err
			}
			_, err = c.showTask(raw)
			return err
		}
	},
}

var taskWaitCmd = &command{
	name:    "task wait",
	args:    "ID",
	summary: "wait until a task ends and show it; exit status 1 unless it succeeded",
	minArgs: 1, maxArgs: 1,
	setup: func(c *cli, fs *flag.FlagSet) action {
		timeoutMs := fs.Int64("timeout-ms", 0, "give up after `ms` and show the task as it stands (default: wait until it ends)")
		return func(args []string) error {
			if *timeoutMs < 0 {
				return usagef("--timeout-ms: want >= 0; got %d", *timeoutMs)
			}
			ctx, cancel := c.context(0)
			defer cancel()
			cl, err := c.connect(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			var limit time.Duration
			if flagSet(fs, "timeout-ms") {
				limit = time.Duration(*timeoutMs) * time.Millisecond
			}
			raw, err := waitTask(ctx, cl, args[0], limit)
			if err != nil {
				return err
			}
			t, err := c.showTask(raw)
			if err != nil {
				return err
			}
			return taskOutcome(t)
		}
	},
}

// waitChunk is how long one task.wait call waits: long waits are a series of
// calls, so that neither side holds a call for hours.
const waitChunk = time.Minute

// waitTask waits for the task to end, or for limit when limit > 0, and
// returns the task as task.wait answered it.
func waitTask(ctx context.Context, cl *client.Client, id string, limit time.Duration) (json.RawMessage, error) {
	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(limit)
	}
	for {
		chunk := waitChunk
		if !deadline.IsZero() {
			chunk = min(chunk, max(0, time.Until(deadline)))
		}
		ms := chunk.Milliseconds()
		var raw json.RawMessage
		if err := cl.Call(ctx, protocol.MethodTaskWait, protocol.WaitParams{TaskID: id, TimeoutMs: &ms}, &raw); err != nil {
			return nil, err
		}
		var t struct {
			State protocol.State `json:"state"`
		}
		if err := decode(raw, &t); err != nil {
			return nil, err
		}
		if t.State.Terminal() || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return raw, nil
		}
	}
}

// taskOutcome is exit status 1, with the reason, unless t succeeded.
func taskOutcome(t protocol.Task) error {
	switch t.State {
	case protocol.StateSucceeded:
		return nil
	case protocol.StateFailed, protocol.StateCancelled:
		if t.Error != nil {
			return failedf("task %s %s: %s: %s", t.TaskID, t.State, t.Error.Code, oneLine(t.Error.Message))
		}
		return failedf("task %s %s", t.TaskID, t.State)
	}
	return failedf("task %s has not ended: it is %s", t.TaskID, t.State)
}

// showTask prints a task result: raw with --json, else the detail view.
func (c *cli) showTask(raw json.RawMessage) (protocol.Task, error) {
	var t protocol.Task
	if err := decode(raw, &t); err != nil {
		return t, err
	}
	if c.json {
		c.emit(raw)
		return t, nil
	}
	c.printTask(c.stdout, t)
	return t, nil
}

func (c *cli) printTask(w io.Writer, t protocol.Task) {
	now := c.now()
	tw := newTable(w)
	fmt.Fprintf(tw, "task\t%s\n", t.TaskID)
	fmt.Fprintf(tw, "agent\t%s\n", t.Agent)
	fmt.Fprintf(tw, "state\t%s (attempt %d of %d)\n", t.State, t.Attempt, t.MaxRetries+1)
	fmt.Fprintf(tw, "priority\t%s\n", t.Priority)
	if len(t.Labels) > 0 {
		fmt.Fprintf(tw, "labels\t%s\n", sortedKV(t.Labels, func(v string) string { return v }))
	}
	if t.IdempotencyKey != "" {
		fmt.Fprintf(tw, "idempotency key\t%s\n", t.IdempotencyKey)
	}
	fmt.Fprintf(tw, "created\t%s (%s)\n", relTime(t.CreatedAt, now), t.CreatedAt.Local().Format(timeLayout))
	if t.StartedAt != nil {
		fmt.Fprintf(tw, "started\t%s\n", relTime(*t.StartedAt, now))
	}
	if t.FinishedAt != nil {
		took := ""
		if t.StartedAt != nil {
			took = fmt.Sprintf(" (ran %s)", fmtDuration(t.FinishedAt.Sub(*t.StartedAt)))
		}
		fmt.Fprintf(tw, "finished\t%s%s\n", relTime(*t.FinishedAt, now), took)
	}
	if t.NextAttemptAt != nil {
		fmt.Fprintf(tw, "next attempt\t%s\n", relTime(*t.NextAttemptAt, now))
	}
	if t.Error != nil {
		fmt.Fprintf(tw, "error\t%s: %s\n", t.Error.Code, oneLine(t.Error.Message))
	}
	for i, e := range t.AttemptErrors {
		fmt.Fprintf(tw, "attempt %d\t%s: %s\n", i+1, e.Code, oneLine(e.Message))
	}
	if r := t.Result; r != nil {
		fmt.Fprintf(tw, "duration\t%s\n", fmtMs(r.DurationMs))
		fmt.Fprintf(tw, "usage\t%s\n", fmtUsage(r.Usage))
		if len(r.KPIs) > 0 {
			fmt.Fprintf(tw, "kpis\t%s\n", sortedKV(r.KPIs, fmtNum))
		}
	}
	tw.Flush()
	if r := t.Result; r != nil {
		printOutput(w, r)
		if len(r.Logs) > 0 {
			fmt.Fprintln(w, "logs:")
			lw := newTable(w)
			for _, l := range r.Logs {
				fmt.Fprintf(lw, "  %s\t%s\t%s\n", l.At.Local().Format("15:04:05.000"), l.Level, oneLine(l.Msg))
			}
			lw.Flush()
			if r.LogsTruncated {
				fmt.Fprintln(w, "  (more lines were dropped: the agent logged more than its cap)")
			}
		}
	}
}

func fmtUsage(u protocol.ResourceUsage) string {
	s := fmt.Sprintf("cpu %s, memory peak %s", fmtDuration(secondsDuration(u.CPUSeconds)), fmtMiB(u.MemoryPeakMB))
	if u.FuelConsumed != nil {
		s += fmt.Sprintf(", fuel %d", *u.FuelConsumed)
	}
	return s
}

// printOutput prints the agent's output: JSON indented, bytes as text when
// they are printable UTF-8, else as base64.
func printOutput(w io.Writer, r *protocol.ExecutionResult) {
	switch {
	case len(r.Output) > 0:
		var b bytes.Buffer
		if json.Indent(&b, r.Output, "  ", "  ") != nil {
			b.Reset()
			b.Write(r.Output)
		}
		fmt.Fprintf(w, "output:\n  %s\n", b.String())
	case len(r.OutputBase64) > 0:
		if printable(r.OutputBase64) {
			fmt.Fprintf(w, "output (not JSON, %s):\n  %s\n", fmtBytes(int64(len(r.OutputBase64))),
				strings.ReplaceAll(strings.TrimRight(string(r.OutputBase64), "\n"), "\n", "\n  "))
		} else {
			fmt.Fprintf(w, "output (binary, %s, base64):\n  %s\n", fmtBytes(int64(len(r.OutputBase64))),
				base64.StdEncoding.EncodeToString(r.OutputBase64))
		}
	default:
		fmt.Fprintln(w, "output: (none)")
	}
}

func printable(b []byte) bool {
	s := string(b)
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < ' ' && r != '\n' && r != '\t' && r != '\r' || r == 0x7f {
			return false
		}
	}
	return true
}

var taskListCmd = &command{
	name:    "task list",
	summary: "list tasks, newest first",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		state := fs.String("state", "", "only tasks in this `state`: queued, running, retrying, succeeded, failed, cancelled")
		agent := fs.String("agent", "", "only tasks of this `agent`")
		label := fs.String("label", "", "only tasks with this `label`: key, or key=value")
		limit := fs.Int("limit", 0, "at most `N` tasks per page (server default 100, at most 1000)")
		all := fs.Bool("all", false, "follow the cursors: list every matching task")
		return func([]string) error {
			if *state != "" && !protocol.State(*state).Valid() {
				return usagef("--state: want one of queued, running, retrying, succeeded, failed, cancelled; got %q", *state)
			}
			if *limit < 0 || *limit > protocol.MaxListLimit {
				return usagef("--limit: want 1..%d; got %d", protocol.MaxListLimit, *limit)
			}
			ctx, cancel := c.context(oneShot)
			defer cancel()
			cl, err := c.connect(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			p := protocol.ListParams{State: protocol.State(*state), Agent: *agent, Label: *label, Limit: *limit}
			var tasks []protocol.Task
			var page protocol.TaskList
			for {
				var raw json.RawMessage
				if err := cl.Call(ctx, protocol.MethodTaskList, p, &raw); err != nil {
					return err
				}
				if c.json && !*all {
					c.emit(raw)
					return nil
				}
				page = protocol.TaskList{}
				if err := decode(raw, &page); err != nil {
					return err
				}
				tasks = append(tasks, page.Tasks...)
				if !*all || page.NextCursor == "" {
					break
				}
				p.Cursor = page.NextCursor
			}
			if c.json {
				// Every page as one result, as if the server had sent it whole.
				b, err := json.Marshal(protocol.TaskList{Tasks: tasks, NextCursor: ""})
				if err != nil {
					return err
				}
				c.emit(b)
				return nil
			}
			c.taskTable(c.stdout, tasks)
			if page.NextCursor != "" {
				fmt.Fprintf(c.stderr, "(more tasks: use --all, or --limit above %d)\n", len(tasks))
			}
			return nil
		}
	},
}

func (c *cli) taskTable(w io.Writer, tasks []protocol.Task) {
	if len(tasks) == 0 {
		fmt.Fprintln(w, "no tasks")
		return
	}
	now := c.now()
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tAGENT\tSTATE\tPRIORITY\tATTEMPT\tCREATED\tDURATION\tLABELS")
	for _, t := range tasks {
		dur := "-"
		if t.Result != nil {
			dur = fmtMs(t.Result.DurationMs)
		} else if t.StartedAt != nil && t.FinishedAt == nil {
			dur = fmtDuration(now.Sub(*t.StartedAt)) + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.TaskID, t.Agent, t.State, t.Priority,
			t.Attempt, t.MaxRetries+1, relTime(t.CreatedAt, now), dur, orDash(sortedKV(t.Labels, func(v string) string { return v })))
	}
	tw.Flush()
}
