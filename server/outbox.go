package server

import "sync"

// outbox is a connection's outbound path: a bounded FIFO queue of whole
// messages, and the right to write to the transport (wmu), which one
// goroutine holds at a time.
//
// The queue is a slice that grows on demand up to its bound, and is let go
// once a burst has drained: an idle connection holds no queue at all.
// (It was a channel of the bound's size, 24 KiB per connection up front.)
//
// Order: a message is written after every message queued before it. The
// writer goroutine pops and writes while it holds wmu, so a sender that
// takes wmu and finds the queue empty knows that everything queued before
// has been written (or is held back by the transport, to go out before
// anything written after it: see corker); only then may it write its own
// message directly (session.reply). Otherwise it queues it.
type outbox struct {
	max int // the bound: more queued messages than this is a slow consumer

	wmu sync.Mutex // held while writing to the transport

	mu   sync.Mutex
	q    [][]byte // q[head:] are queued, oldest first
	head int
	// room, when not nil, is closed when a message leaves the queue: a
	// sender waiting for room (session.sendWait) waits on it.
	room chan struct{}

	wake chan struct{} // one token: something was queued
}

// shrinkAbove is the capacity past which a drained queue lets its slice go
// (a burst's slice is not kept for the rest of the connection).
const shrinkAbove = 32

func newOutbox(max int) *outbox {
	return &outbox{max: max, wake: make(chan struct{}, 1)}
}

// push queues msg and wakes the writer; false, queueing nothing, when the
// queue holds max messages already.
func (o *outbox) push(msg []byte) bool {
	ok, _ := o.tryPush(msg, false)
	return ok
}

// tryPush queues msg and wakes the writer. When the queue is full it queues
// nothing and returns false, and, if wantRoom, a channel that is closed once
// a message has left the queue.
func (o *outbox) tryPush(msg []byte, wantRoom bool) (bool, chan struct{}) {
	o.mu.Lock()
	if len(o.q)-o.head >= o.max {
		var room chan struct{}
		if wantRoom {
			if o.room == nil {
				o.room = make(chan struct{})
			}
			room = o.room
		}
		o.mu.Unlock()
		return false, room
	}
	if o.head > 0 && len(o.q) == cap(o.q) {
		// Slide the queued messages down instead of growing.
		n := copy(o.q, o.q[o.head:])
		clear(o.q[n:])
		o.q, o.head = o.q[:n], 0
	}
	o.q = append(o.q, msg)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default: // a token is there already
	}
	return true, nil
}

// pop removes and returns the oldest message; nil when the queue is empty.
// The caller holds wmu and writes what it gets before it lets wmu go.
func (o *outbox) pop() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.head == len(o.q) {
		return nil
	}
	msg := o.q[o.head]
	o.q[o.head] = nil
	o.head++
	if o.head == len(o.q) {
		if cap(o.q) > shrinkAbove {
			o.q = nil
		} else {
			o.q = o.q[:0]
		}
		o.head = 0
	}
	if o.room != nil {
		close(o.room)
		o.room = nil
	}
	return msg
}

// wakeWriter wakes the writer goroutine without queueing anything: it
// takes the write lock and writes what the transport holds back.
func (o *outbox) wakeWriter() {
	select {
	case o.wake <- struct{}{}:
	default: // a token is there already
	}
}

// empty reports whether nothing is queued.
func (o *outbox) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.head == len(o.q)
}
