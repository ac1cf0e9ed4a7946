package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

var taskSubmitCmd = &command{
	name:    "task submit",
	args:    "AGENT [INPUT-JSON]",
	summary: "submit a task; prints its id, or with --wait follows it to the end",
	minArgs: 1, maxArgs: 2,
	setup: func(c *cli, fs *flag.FlagSet) action {
		file := fs.String("input-file", "", "send this `file`'s bytes as they are as the input (- reads stdin)")
		b64 := fs.String("input-base64", "", "send these `base64` bytes as the input")
		priority := fs.String("priority", "", "`level`: critical, high, normal, low or background (default normal)")
		timeoutMs := fs.Int64("timeout-ms", 0, "the task's run time limit in `ms` (default: the agent's or server's)")
		retries := fs.Int("retries", 0, "`N` retries after a failed attempt (default: the server's, 3)")
		key := fs.String("idempotency-key", "", "a repeated submit with this `key` returns the first task")
		labels := labelsFlag{}
		fs.Var(labels, "label", "a `key=value` label; repeatable")
		wait := fs.Bool("wait", false, "follow the task, showing its progress, and print it when it ends; exit status 1 unless it succeeded")
		return func(args []string) error {
			p := protocol.SubmitParams{Agent: args[0], TimeoutMs: *timeoutMs, IdempotencyKey: *key}
			var err error
			if p.Input, p.InputBase64, err = c.submitInput(args[1:], fs, *file, *b64); err != nil {
				return err
			}
			if flagSet(fs, "priority") {
				pr, err := protocol.ParsePriority(*priority)
				if err != nil {
					return usagef("--priority: %v", err)
				}
				p.Priority = &pr
			}
			if flagSet(fs, "retries") {
				p.MaxRetries = retries
			}
			if len(labels) > 0 {
				p.Labels = labels
			}
			if !*wait {
				r, shown, err := callResult[protocol.SubmitResult](c, protocol.MethodTaskSubmit, p)
				if err != nil || shown {
					return err
				}
				fmt.Fprintln(c.stdout, r.TaskID)
				if !r.Created {
					fmt.Fprintf(c.stderr, "(task %s was submitted before with this idempotency key; it is %s)\n", r.TaskID, r.State)
				}
				return nil
			}
			return c.submitAndWait(p)
		}
	},
}

// submitInput reads the input from at most one of INPUT-JSON, --input-file
// and --input-base64.
func (c *cli) submitInput(pos []string, fs *flag.FlagSet, file, b64 string) (json.RawMessage, []byte, error) {
	given := len(pos)
	for _, f := range []string{"input-file", "input-base64"} {
		if flagSet(fs, f) {
			given++
		}
	}
	if given > 1 {
		return nil, nil, usagef("give the input one way only: INPUT-JSON, --input-file or --input-base64")
	}
	switch {
	case len(pos) == 1:
		var v json.RawMessage
		if err := json.Unmarshal([]byte(pos[0]), &v); err != nil {
			return nil, nil, usagef("INPUT-JSON: not valid JSON: %s; quote text as '\"text\"', or send raw bytes with --input-file or --input-base64", jsonError(err))
		}
		return v, nil, nil
	case flagSet(fs, "input-file"):
		var b []byte
		var err error
		if file == "-" {
			if c.stdin == nil {
				return nil, nil, usagef("--input-file -: no standard input")
			}
			b, err = io.ReadAll(c.stdin)
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, nil, usagef("--input-file: %v", err)
		}
		return nil, b, nil
	case flagSet(fs, "input-base64"):
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, nil, usagef("--input-base64: want standard base64 (RFC 4648, with padding): %v", err)
		}
		return nil, b, nil
	}
	return nil, nil, nil
}

// jsonError says where JSON went wrong.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", trimJSONPrefix(se.Error()), se.Offset)
	}
	return trimJSONPrefix(err.Error())
}

func trimJSONPrefix(s string) string {
	if len(s) > 6 && s[:6] == "json: " {
		return s[6:]
	}
	return s
}

// submitAndWait submits with subscribe, shows the task's progress on stderr
// and its final state on stdout.
func (c *cli) submitAndWait(p protocol.SubmitParams) error {
	ctx, cancel := c.context(0)
	defer cancel()
	cl, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	p.Subscribe = true
	var r protocol.SubmitResult
	if err := cl.Call(ctx, protocol.MethodTaskSubmit, p, &r); err != nil {
		return err
	}
	if !r.Created {
		fmt.Fprintf(c.stderr, "(task %s was submitted before with this idempotency key)\n", r.TaskID)
	}
	raw, err := c.follow(ctx, cl, r.TaskID, p.Agent)
	if err != nil {
		return err
	}
	t, err := c.showTask(raw)
	if err != nil {
		return err
	}
	return taskOutcome(t)
}

// follow waits for the task to end while drawing its events on stderr: a
// progress line redrawn in place on a terminal, a line per state change
// otherwise. The end is told by task.wait, not by the events, so a dropped
// notification cannot leave it waiting.
func (c *cli) follow(ctx context.Context, cl *client.Client, id, agent string) (json.RawMessage, error) {
	type outcome struct {
		raw json.RawMessage
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		raw, err := waitTask(ctx, cl, id, 0)
		done <- outcome{raw, err}
	}()

	st := &taskState{id: id, agent: agent, state: protocol.StateQueued}
	var region *liveRegion
	var tick <-chan time.Time
	if c.errTTY {
		region = &liveRegion{w: c.stderr, width: c.width}
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		tick = t.C
		region.draw(nil, []string{st.line(c.now(), c.barWidth())})
	} else {
		fmt.Fprintf(c.stderr, "task %s submitted\n", id)
	}
	notes := cl.Notifications()
	show := func(ev protocol.TaskEvent) {
		changed := st.apply(ev)
		if region != nil {
			region.draw(nil, []string{st.line(c.now(), c.barWidth())})
		} else if changed {
			fmt.Fprintln(c.stderr, eventLine(ev, ev.At))
		}
	}
	for {
		select {
		case o := <-done:
			// task.wait's answer and the last events travel apart: show
			// the events already here, then the end itself if its event
			// has not come (it may still be on its way, or was dropped).
			for drained := false; !drained && notes != nil; {
				select {
				case n, ok := <-notes:
					if ev, isEv := decodeEvent(n); ok && isEv && ev.TaskID == id {
						show(ev)
					}
					drained = !ok
				default:
					drained = true
				}
			}
			var t protocol.Task
			if o.err == nil && json.Unmarshal(o.raw, &t) == nil && t.State.Terminal() && !st.state.Terminal() {
				at := c.now()
				if t.FinishedAt != nil {
					at = *t.FinishedAt
				}
				show(protocol.TaskEvent{TaskID: t.TaskID, Agent: t.Agent, State: t.State, Attempt: t.Attempt,
					At: at, Result: t.Result, Error: t.Error})
			}
			if region != nil {
				region.clear()
			}
			return o.raw, o.err
		case n, ok := <-notes:
			if !ok {
				notes = nil // the connection ended; task.wait reports it
				continue
			}
			if ev, ok := decodeEvent(n); ok && ev.TaskID == id {
				show(ev)
			}
		case <-tick:
			region.draw(nil, []string{st.line(c.now(), c.barWidth())})
		}
	}
}

// decodeEvent decodes a task.event notification.
func decodeEvent(n client.Notification) (protocol.TaskEvent, bool) {
	var ev protocol.TaskEvent
	if n.Method != protocol.NotifyTaskEvent || json.Unmarshal(n.Params, &ev) != nil {
		return ev, false
	}
	return ev, true
}
