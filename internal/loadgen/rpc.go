package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/internal/jsonscan"
	"github.com/chimera-fabric/fabric/protocol"
)

// rpcConn is a JSON-RPC connection to fabricd. In submit-subscribe mode a
// dispatcher goroutine reads its notifications and hands each terminal
// task.event to the worker waiting for that task.
type rpcConn struct {
	c *client.Client

	mu      sync.Mutex
	waiting map[string]chan taskEnd // task id → its worker
	early   map[string]taskEnd      // ends that came before the submit's answer
	gone    error                   // set when the connection ended
	done    chan struct{}           // closed when the dispatcher has returned
}

// taskEnd is how a task ended, as its last event or task.wait said.
type taskEnd struct {
	state protocol.State
	code  string // the task error's code
	err   error  // the connection ended first
}

func (r *run) dialRPC(ctx context.Context) (*rpcConn, error) {
	sub := r.cfg.Mode == ModeSubmitSubscribe
	c, err := client.Dial(ctx, r.cfg.URL, client.Options{
		Token: r.cfg.Token,
		// Every terminal event matters: block rather than drop, and read
		// them as fast as they come.
		BlockNotifications: sub,
		NotificationBuffer: 4096,
	})
	if err != nil {
		return nil, err
	}
	rc := &rpcConn{c: c, waiting: map[string]chan taskEnd{}, early: map[string]taskEnd{}, done: make(chan struct{})}
	if sub {
		go rc.dispatch()
	} else {
		close(rc.done)
	}
	return rc, nil
}

func (rc *rpcConn) close() {
	rc.c.Close()
	<-rc.done
}

// event is the part of a task.event the run reads.
type event struct {
	TaskID string         `json:"task_id"`
	State  protocol.State `json:"state"`
	Error  *struct {
		Code string `json:"code"`
	} `json:"error"`
}

func (rc *rpcConn) dispatch() {
	defer close(rc.done)
	for n := range rc.c.Notifications() {
		if n.Method != protocol.NotifyTaskEvent {
			continue
		}
		var ev event
		if json.Unmarshal(n.Params, &ev) != nil || !ev.State.Terminal() {
			continue
		}
		end := taskEnd{state: ev.State}
		if ev.Error != nil {
			end.code = ev.Error.Code
		}
		rc.mu.Lock()
		if ch, ok := rc.waiting[ev.TaskID]; ok {
			delete(rc.waiting, ev.TaskID)
			ch <- end
		} else {
			rc.early[ev.TaskID] = end
		}
		rc.mu.Unlock()
	}
	err := rc.c.Err()
	if err == nil {
		err = client.ErrClosed
	}
	rc.mu.Lock()
	rc.gone = err
	for id, ch := range rc.waiting {
		ch <- taskEnd{err: err}
		delete(rc.waiting, id)
	}
	rc.mu.Unlock()
}

// await returns the channel that receives the task's end.
func (rc *rpcConn) await(id string) chan taskEnd {
	ch := make(chan taskEnd, 1)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch end, ok := rc.early[id]; {
	case ok:
		delete(rc.early, id)
		ch <- end
	case rc.gone != nil:
		ch <- taskEnd{err: rc.gone}
	default:
		rc.waiting[id] = ch
	}
	return ch
}

// forget drops a task nobody waits for any more.
func (rc *rpcConn) forget(id string) {
	rc.mu.Lock()
	delete(rc.waiting, id)
	rc.mu.Unlock()
}

// task is one task of a run on its way through.
type task struct {
	params []byte
	start  time.Time
	id     string
	subID  string
}

// The answers of task.submit and task.wait are taken as they came
// (json.RawMessage: the client has checked that the message is JSON) and
// the run reads the members it needs with jsonscan, rather than having
// json.Unmarshal scan a whole task into a struct of three fields.

// submitAnswer reads a task.submit answer: the task id and subscription.
func submitAnswer(raw json.RawMessage) (taskID, subID string, err error) {
	for key, val := range jsonscan.Members(raw) {
		switch string(key) {
		case `"task_id"`:
			taskID = jsonscan.String(val)
		case `"subscription_id"`:
			subID = jsonscan.String(val)
		}
	}
	if taskID == "" {
		return "", "", fmt.Errorf("task.submit: the answer has no task_id: %.80s", raw)
	}
	return taskID, subID, nil
}

// waitParams encodes task.wait's params for the task id: by hand for an id
// of plain characters (a UUID), by json.Marshal otherwise.
func waitParams(id string) json.RawMessage {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < ' ' || c > '~' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(protocol.WaitParams{TaskID: id})
			return b
		}
	}
	return json.RawMessage(`{"task_id":"` + id + `"}`)
}

// waitAnswer reads a task.wait answer: the task's state, and its error's
// code when it has one.
func waitAnswer(raw json.RawMessage) (taskEnd, error) {
	var e taskEnd
	for key, val := range jsonscan.Members(raw) {
		switch string(key) {
		case `"state"`:
			e.state = protocol.State(jsonscan.String(val))
		case `"error"`:
			e.code = ""
			for k, v := range jsonscan.Members(val) {
				if string(k) == `"code"` {
					e.code = jsonscan.String(v)
				}
			}
		}
	}
	if !e.state.Valid() {
		return e, fmt.Errorf("task.wait: the answer has no valid state: %.80s", raw)
	}
	return e, nil
}

// calls runs method for each of items, as one call or one batch, retrying
// the overloaded ones after their retry_after_ms. result(i) is where item
// i's answer is decoded; ok(i) is called for each answered item, fail(i,
// err) for each that failed otherwise (the error is recorded).
func (r *run) calls(ctx context.Context, rc *rpcConn, method string, n int,
	params func(i int) any, result func(i int) any, ok func(i int), fail func(i int, err error)) {
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		errs := make([]error, len(pending))
		if len(pending) == 1 {
			i := pending[0]
			errs[0] = rc.c.Call(ctx, method, params(i), result(i))
		} else {
			batch := make([]client.BatchCall, len(pending))
			for k, i := range pending {
				batch[k] = client.BatchCall{Method: method, Params: params(i), Result: result(i)}
			}
			if err := rc.c.Batch(ctx, batch); err != nil {
				for k := range errs {
					errs[k] = err
				}
			} else {
				for k := range batch {
					errs[k] = batch[k].Error
				}
			}
		}
		var retry []int
		var wait time.Duration
		for k, i := range pending {
			switch d, over := overloaded(errs[k]); {
			case errs[k] == nil:
				ok(i)
			case over:
				retry = append(retry, i)
				wait = max(wait, d)
				r.overloads.Add(1)
			default:
				r.fail(errs[k])
				fail(i, errs[k])
			}
		}
		if len(retry) > 0 && !r.backoff(ctx, wait) {
			err := fmt.Errorf("%s: %w while waiting to retry after an overload", method, ctx.Err())
			for _, i := range retry {
				r.fail(err)
				fail(i, err)
			}
			return
		}
		pending = retry
	}
}

// newTasks starts n tasks of the run.
func (r *run) newTasks(n int) []*task {
	ts := make([]*task, n)
	now := time.Now()
	for i := range ts {
		ts[i] = &task{params: r.payload(r.seq.Add(1) - 1), start: now}
	}
	r.inFlight.Add(int64(n))
	return ts
}

// end records how a task ended.
func (r *run) end(t *task, e taskEnd) {
	r.inFlight.Add(-1)
	switch {
	case e.err != nil:
		r.fail(e.err)
		r.incomplete.Add(1)
	case e.state == protocol.StateSucceeded:
		r.hist.record(time.Since(t.start))
		r.ops.Add(1)
	default:
		r.taskFailed(e.code)
	}
}

// submit submits ts and returns those the server accepted.
func (r *run) submit(ctx context.Context, rc *rpcConn, ts []*task) []*task {
	res := make([]json.RawMessage, len(ts))
	accepted := make([]bool, len(ts))
	r.calls(ctx, rc, protocol.MethodTaskSubmit, len(ts),
		func(i int) any { return json.RawMessage(ts[i].params) },
		func(i int) any { return &res[i] },
		func(i int) {
			var err error
			if ts[i].id, ts[i].subID, err = submitAnswer(res[i]); err != nil {
				r.fail(err)
				r.inFlight.Add(-1)
				return
			}
			accepted[i] = true
		},
		func(i int, err error) { r.inFlight.Add(-1) })
	var out []*task
	for i, t := range ts {
		if accepted[i] {
			out = append(out, t)
		}
	}
	r.submitted.Add(int64(len(out)))
	return out
}

func (r *run) submitWaitWorker(ctx context.Context, rc *rpcConn) {
	for {
		n := r.claim(r.cfg.Batch)
		if n == 0 {
			return
		}
		ts := r.submit(ctx, rc, r.newTasks(n))
		for len(ts) > 0 {
			res := make([]json.RawMessage, len(ts))
			var again []*task
			r.calls(ctx, rc, protocol.MethodTaskWait, len(ts),
				func(i int) any { return waitParams(ts[i].id) },
				func(i int) any { return &res[i] },
				func(i int) {
					e, err := waitAnswer(res[i])
					switch {
					case err != nil:
						r.fail(err)
						r.inFlight.Add(-1)
						r.incomplete.Add(1)
					case !e.state.Terminal():
						again = append(again, ts[i]) // its wait timed out
					default:
						r.end(ts[i], e)
					}
				},
				func(i int, err error) {
					r.inFlight.Add(-1)
					r.incomplete.Add(1)
				})
			ts = again
		}
	}
}

func (r *run) submitSubscribeWorker(ctx context.Context, rc *rpcConn) {
	for {
		n := r.claim(r.cfg.Batch)
		if n == 0 {
			return
		}
		ts := r.submit(ctx, rc, r.newTasks(n))
		chans := make([]chan taskEnd, len(ts))
		for i, t := range ts {
			chans[i] = rc.await(t.id)
		}
		for i, t := range ts {
			select {
			case e := <-chans[i]:
				r.end(t, e)
			case <-ctx.Done():
				rc.forget(t.id)
				r.end(t, taskEnd{err: fmt.Errorf("waiting for task %s's last event: %w", t.id, ctx.Err())})
			}
		}
		if r.cfg.KeepSubscriptions || len(ts) == 0 {
			continue
		}
		// Drop the subscriptions with notifications: the server serves an
		// unsubscribe even over the connection's in-flight cap, and
		// nothing waits for an answer.
		r.unsubscribe(ctx, rc, ts)
	}
}

// unsubscribe ends the subscriptions of ts with unsubscribe notifications,
// in one batch when there are several.
func (r *run) unsubscribe(ctx context.Context, rc *rpcConn, ts []*task) {
	var err error
	if len(ts) == 1 {
		err = rc.c.Notify(ctx, protocol.MethodUnsubscribe, protocol.UnsubscribeParams{SubscriptionID: ts[0].subID})
	} else {
		batch := make([]client.BatchCall, len(ts))
		for i, t := range ts {
			batch[i] = client.BatchCall{Method: protocol.MethodUnsubscribe, Notify: true,
				Params: protocol.UnsubscribeParams{SubscriptionID: t.subID}}
		}
		err = rc.c.Batch(ctx, batch)
	}
	if err != nil && ctx.Err() == nil {
		r.fail(err)
	}
}

func (r *run) submitWorker(ctx context.Context, rc *rpcConn) {
	for {
		n := r.claim(r.cfg.Batch)
		if n == 0 {
			return
		}
		for _, t := range r.submit(ctx, rc, r.newTasks(n)) {
			r.hist.record(time.Since(t.start))
			r.ops.Add(1)
			r.inFlight.Add(-1)
		}
	}
}

func (r *run) healthWorker(ctx context.Context, rc *rpcConn) {
	for {
		n := r.claim(r.cfg.Batch)
		if n == 0 {
			return
		}
		start := time.Now()
		r.inFlight.Add(int64(n))
		r.calls(ctx, rc, protocol.MethodSystemHealth, n,
			func(int) any { return nil },
			func(int) any { return nil },
			func(int) {
				r.hist.record(time.Since(start))
				r.ops.Add(1)
				r.inFlight.Add(-1)
			},
			func(int, error) { r.inFlight.Add(-1) })
	}
}
