package server

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/store"
)

// subscription is one of a connection's subscriptions: a feed of task events
// (task.subscribe, task.submit {subscribe: true}) or a kpi.report ticker.
// Subscriptions belong to their connection: only it can unsubscribe them,
// and they end when it closes.
type subscription struct {
	id   string
	task *sched.Subscription // task events
	stop chan struct{}       // kpi: closed to stop the ticker
}

func (s *subscription) close() {
	if s.task != nil {
		s.task.Close()
	}
	if s.stop != nil {
		close(s.stop)
	}
}

// addSubscription registers sub; false when the connection is closing.
func (ss *session) addSubscription(sub *subscription) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ending {
		return false
	}
	ss.subs[sub.id] = sub
	return true
}

// closeSubscriptions ends every subscription (the connection is closing).
func (ss *session) closeSubscriptions() {
	ss.mu.Lock()
	subs := ss.subs
	ss.subs = map[string]*subscription{}
	ss.mu.Unlock()
	for _, sub := range subs {
		sub.close()
	}
}

// eventFeed turns a subscription's events into task.event notifications.
//
// The scheduler calls sink on its own goroutines and it must not block, so a
// live event is queued without waiting and a full queue closes the
// connection. While the subscription is being set up, though, the scheduler
// replays stored events (after_seq) through replay, which waits for room, and
// then hands over the live events it held back meanwhile, like a submitted
// task's first event, on the request's own goroutine. Those are kept in a
// backlog that the request then writes with back-pressure (flush), and events
// that arrive meanwhile queue up behind it, so order holds. Only then does the
// feed go live.
type eventFeed struct {
	ss *session
	id string

	mu       sync.Mutex
	live     bool
	flushing bool
	backlog  [][]byte
}

func (ss *session) newFeed() *eventFeed {
	return &eventFeed{ss: ss, id: uuid.NewString()}
}

func (f *eventFeed) sink(ev protocol.TaskEvent) {
	ev.SubscriptionID = f.id
	msg, err := encodeNotification(protocol.NotifyTaskEvent, ev)
	if err != nil {
		f.ss.log.Error().Err(err).Str("event", ev.String()).Msg("encoding task.event")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live {
		f.ss.send(msg)
		return
	}
	if !f.flushing && len(f.backlog) == 0 && f.ss.out.push(msg) {
		return
	}
	f.backlog = append(f.backlog, msg)
}

// replay returns the function that writes replayed stored events: on the
// request's goroutine, waiting for room in the queue, so that a replay of any
// length needs no buffer. The scheduler holds live events back meanwhile.
func (f *eventFeed) replay(ctx context.Context) func(protocol.TaskEvent) error {
	return func(ev protocol.TaskEvent) error {
		ev.SubscriptionID = f.id
		msg, err := encodeNotification(protocol.NotifyTaskEvent, ev)
		if err != nil {
			return err
		}
		return f.ss.sendWait(ctx, msg)
	}
}

// flush writes the backlog, waiting for room in the queue, and makes the feed
// live.
func (f *eventFeed) flush(ctx context.Context) error {
	f.mu.Lock()
	f.flushing = true
	f.mu.Unlock()
	for {
		f.mu.Lock()
		batch := f.backlog
		f.backlog = nil
		if len(batch) == 0 {
			f.live = true
			f.mu.Unlock()
			return nil
		}
		f.mu.Unlock()
		for _, msg := range batch {
			if err := f.ss.sendWait(ctx, msg); err != nil {
				return err
			}
		}
	}
}

func taskSubscribe(ctx context.Context, ss *session, p *protocol.SubscribeParams) (protocol.SubscriptionResult, error) {
	feed := ss.newFeed()
	sub, err := ss.sched().Subscribe(ctx, store.EventFilter{TaskIDs: p.TaskIDs, Agent: p.Agent}, p.AfterSeq, feed.sink, feed.replay(ctx))
	if err != nil {
		return protocol.SubscriptionResult{}, err
	}
	if !ss.addSubscription(&subscription{id: feed.id, task: sub}) {
		sub.Close()
		return protocol.SubscriptionResult{}, protocol.Errorf(protocol.ErrShuttingDown, "this connection is closing")
	}
	return protocol.SubscriptionResult{SubscriptionID: feed.id}, feed.flush(ctx)
}

func unsubscribe(_ context.Context, ss *session, p *protocol.UnsubscribeParams) (protocol.Empty, error) {
	ss.mu.Lock()
	sub, ok := ss.subs[p.SubscriptionID]
	delete(ss.subs, p.SubscriptionID)
	ss.mu.Unlock()
	if !ok {
		return protocol.Empty{}, protocol.Errorf(protocol.ErrNotFound,
			"subscription_id: no subscription %q on this connection", p.SubscriptionID)
	}
	sub.close()
	return protocol.Empty{}, nil
}

func kpiSubscribe(_ context.Context, ss *session, p *protocol.KPISubscribeParams) (protocol.SubscriptionResult, error) {
	sub := &subscription{id: uuid.NewString(), stop: make(chan struct{})}
	ss.mu.Lock()
	if ss.ending {
		ss.mu.Unlock()
		return protocol.SubscriptionResult{}, protocol.Errorf(protocol.ErrShuttingDown, "this connection is closing")
	}
	ss.subs[sub.id] = sub
	ss.work.Add(1)
	ss.mu.Unlock()
	go ss.kpiLoop(sub, time.Duration(p.IntervalMs)*time.Millisecond)
	return protocol.SubscriptionResult{SubscriptionID: sub.id}, nil
}

// kpiLoop sends a kpi.report every interval until the subscription or the
// connection ends.
func (ss *session) kpiLoop(sub *subscription, interval time.Duration) {
	defer ss.work.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-sub.stop:
			return
		case <-ss.ctx.Done():
			return
		}
		report := ss.sched().KPI(ss.ctx)
		msg, err := encodeNotification(protocol.NotifyKPIReport, protocol.KPIReportNotification{SubscriptionID: sub.id, Report: report})
		if err != nil {
			ss.log.Error().Err(err).Msg("encoding kpi.report")
			continue
		}
		// Checked under the lock that unsubscribe takes: no report follows
		// the answer to unsubscribe.
		ss.mu.Lock()
		_, live := ss.subs[sub.id]
		if live {
			ss.send(msg)
		}
		ss.mu.Unlock()
	}
}
