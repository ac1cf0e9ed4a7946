package sched

import (
	"context"
	"sync"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// bus fans events out to subscribers. Publishing never blocks on a
// subscriber: sinks must not block (the server's sinks enqueue to a bounded
// per-connection queue and drop the connection when it is full).
//
// Subscribers to named tasks are indexed by task id, so that publishing costs
// the number of interested subscribers, not the number of subscriptions.
type bus struct {
	mu     sync.RWMutex
	subs   map[*subscriber]struct{}            // subscribers to any task (maybe of one agent)
	byTask map[string]map[*subscriber]struct{} // subscribers to named tasks
}

type subscriber struct {
	ids   map[string]struct{} // nil: any task
	agent string              // "": any agent
	sink  Sink

	mu        sync.Mutex
	closed    bool
	replaying bool                 // live events are buffered while the store is replayed
	buf       []protocol.TaskEvent // guarded by mu
	replayed  int64                // live events at or below this seq were replayed already
}

func (sub *subscriber) match(ev *protocol.TaskEvent) bool {
	if sub.ids != nil {
		if _, ok := sub.ids[ev.TaskID]; !ok {
			return false
		}
	}
	return sub.agent == "" || sub.agent == ev.Agent
}

func (sub *subscriber) deliver(ev protocol.TaskEvent) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch {
	case sub.closed, ev.Seq <= sub.replayed:
	case sub.replaying:
		sub.buf = append(sub.buf, ev)
	default:
		sub.sink(ev)
	}
}

// publish sends a stored event to its subscribers and wakes the waiters of a
// task that reached a terminal state.
func (s *Scheduler) publish(ev protocol.TaskEvent) {
	s.bus.mu.RLock()
	for sub := range s.bus.subs {
		if sub.match(&ev) {
			sub.deliver(ev)
		}
	}
	for sub := range s.bus.byTask[ev.TaskID] {
		if sub.match(&ev) {
			sub.deliver(ev)
		}
	}
	s.bus.mu.RUnlock()
	if ev.State.Terminal() {
		s.wakeWaiters(ev.TaskID, nil)
		s.countFinished()
	}
}

func newSubscriber(f store.EventFilter, sink Sink) *subscriber {
	sub := &subscriber{agent: f.Agent, sink: sink}
	if len(f.TaskIDs) > 0 {
		sub.ids = make(map[string]struct{}, len(f.TaskIDs))
		for _, id := range f.TaskIDs {
			sub.ids[id] = struct{}{}
		}
	}
	return sub
}

func (s *Scheduler) add(sub *subscriber) *Subscription {
	s.bus.mu.Lock()
	if sub.ids == nil {
		s.bus.subs[sub] = struct{}{}
	} else {
		for id := range sub.ids {
			m := s.bus.byTask[id]
			if m == nil {
				m = map[*subscriber]struct{}{}
				s.bus.byTask[id] = m
			}
			m[sub] = struct{}{}
		}
	}
	s.bus.mu.Unlock()
	return &Subscription{close: func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, sub)
		for id := range sub.ids {
			if m := s.bus.byTask[id]; m != nil {
				delete(m, sub)
				if len(m) == 0 {
					delete(s.bus.byTask, id)
				}
			}
		}
		s.bus.mu.Unlock()
		sub.mu.Lock()
		sub.closed, sub.buf = true, nil
		sub.mu.Unlock()
	}}
}

// subscribe delivers live events only.
func (s *Scheduler) subscribe(f store.EventFilter, sink Sink) *Subscription {
	return s.add(newSubscriber(f, sink))
}

// replayPage is how many stored events one replay read fetches.
const replayPage = 1000

// Subscribe delivers matching events to sink: first the stored ones after
// afterSeq (if not nil), then live ones, with no gap and no duplicate.
//
// Stored events are replayed through replay, on the caller's goroutine, so
// that it may block to apply back-pressure (a replay can be far longer than
// any buffer); an error from it ends the subscription. A nil replay replays
// through sink.
//
// Live events are buffered from before the replay's first read. Since the
// store assigns seqs in commit order, the replay returns every matching event
// in (afterSeq, last] for the last seq it read, so a live event is new
// exactly when its seq is above that. This holds for events published after
// the replay, too: an event is published once its commit is durable, which
// can be after a replay read already returned it.
func (s *Scheduler) Subscribe(ctx context.Context, f store.EventFilter, afterSeq *int64, sink Sink, replay func(protocol.TaskEvent) error) (*Subscription, error) {
	if replay == nil {
		replay = func(ev protocol.TaskEvent) error { sink(ev); return nil }
	}
	sub := newSubscriber(f, sink)
	if afterSeq == nil {
		return s.add(sub), nil
	}
	sub.replaying = true
	h := s.add(sub)
	last := *afterSeq
	for {
		evs, err := s.st.Events(ctx, last, f, replayPage)
		if err != nil {
			h.Close()
			return nil, err
		}
		for _, ev := range evs {
			sub.mu.Lock()
			closed := sub.closed
			sub.mu.Unlock()
			if closed {
				return h, nil
			}
			if err := replay(ev); err != nil {
				h.Close()
				return nil, err
			}
			last = ev.Seq
		}
		if len(evs) < replayPage {
			break
		}
	}
	sub.mu.Lock()
	for _, ev := range sub.buf {
		if ev.Seq > last && !sub.closed {
			sub.sink(ev)
		}
	}
	sub.buf, sub.replaying, sub.replayed = nil, false, last
	sub.mu.Unlock()
	return h, nil
}
