package store

import (
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// waitQueue indexes the waiting (queued and retrying) tasks for Claim. Both
// stores use it: Memory as its queue, SQLite as an in-memory mirror of the
// waiting rows it alone writes, so that a claim needs no query to find its
// task. It is not safe for concurrent use; its owner locks it.
//
// Entries sit in one of two heaps. After sync(now), ready holds exactly the
// tasks runnable at now (ordered by priority, then QueueSeq) and later the
// others (ordered by ReadyAt). synced is the now of the last sync: with a
// clock that does not go backwards each sync only moves the tasks that became
// runnable, and a clock that does go backwards (tests inject clocks) is still
// answered exactly, by one pass over ready.
//
// An entry may carry its task's whole record (SQLite keeps the records of the
// tasks it was handed, so that a claim needs no read); recBytes counts them
// against recLimit, past which entries are put without one.
type waitQueue struct {
	byID     map[string]*qentry
	ready    qheap
	later    qheap
	synced   time.Time
	depth    [protocol.Critical + 1]int
	recBytes int
	recLimit int
}

type qentry struct {
	id    string
	agent string
	prio  protocol.Priority
	seq   int64
	at    time.Time // ReadyAt; zero means at once
	idx   int       // position in its heap
	later bool      // which heap holds it
	rec   *TaskRecord
}

func newWaitQueue() *waitQueue {
	q := &waitQueue{byID: map[string]*qentry{}}
	q.ready.less = func(a, b *qentry) bool {
		if a.prio != b.prio {
			return a.prio > b.prio
		}
		return a.seq < b.seq
	}
	q.later.less = func(a, b *qentry) bool {
		if !a.at.Equal(b.at) {
			return a.at.Before(b.at)
		}
		return q.ready.less(a, b)
	}
	return q
}

// put adds or replaces the entry of a waiting task. rec, if not nil, is the
// task's record, kept with the entry while recLimit allows; the queue owns it.
func (q *waitQueue) put(id, agent string, prio protocol.Priority, seq int64, at time.Time, rec *TaskRecord) {
	q.remove(id)
	e := &qentry{id: id, agent: agent, prio: prio, seq: seq, at: at}
	if rec != nil {
		if n := recSize(rec); q.recBytes+n <= q.recLimit {
			e.rec = rec
			q.recBytes += n
		}
	}
	q.insert(e)
}

// insert adds an entry that is in no heap.
func (q *waitQueue) insert(e *qentry) {
	q.byID[e.id] = e
	q.depth[clampPrio(e.prio)]++
	if q.runnable(e, q.synced) {
		q.ready.push(e)
	} else {
		e.later = true
		q.later.push(e)
	}
}

// remove drops a task's entry, if it has one.
func (q *waitQueue) remove(id string) {
	if e := q.take(id); e != nil {
		q.drop(e)
	}
}

// take removes a task's entry and returns it, record and all (nil if
// there is none); restore puts it back as it was. The entry's record stays
// counted in recBytes until it is restored or dropped (drop).
func (q *waitQueue) take(id string) *qentry {
	e := q.byID[id]
	if e == nil {
		return nil
	}
	delete(q.byID, id)
	q.depth[clampPrio(e.prio)]--
	if e.later {
		q.later.remove(e)
	} else {
		q.ready.remove(e)
	}
	return e
}

// restore puts back an entry that take or pop returned, unless the task
// has an entry again meanwhile.
func (q *waitQueue) restore(e *qentry) {
	if q.byID[e.id] != nil {
		q.drop(e)
		return
	}
	e.later = false
	q.insert(e)
}

// drop forgets the record of an entry that take or pop returned.
func (q *waitQueue) drop(e *qentry) {
	if e.rec != nil {
		q.recBytes -= recSize(e.rec)
	}
}

// recSize estimates the memory a kept record holds.
func recSize(r *TaskRecord) int {
	n := 512 + len(r.Input) + len(r.TaskID) + len(r.Agent) + len(r.IdempotencyKey) + len(r.ParamsHash)
	for k, v := range r.Labels {
		n += 48 + len(k) + len(v)
	}
	return n
}

func (q *waitQueue) runnable(e *qentry, now time.Time) bool {
	return e.at.IsZero() || !e.at.After(now)
}

// sync moves entries between the heaps so that ready holds exactly the tasks
// runnable at now.
func (q *waitQueue) sync(now time.Time) {
	if now.Before(q.synced) {
		// The clock went back: demote what is not runnable yet.
		var back []*qentry
		for _, e := range q.ready.es {
			if !q.runnable(e, now) {
				back = append(back, e)
			}
		}
		for _, e := range back {
			q.ready.remove(e)
			e.later = true
			q.later.push(e)
		}
	}
	for len(q.later.es) > 0 && q.runnable(q.later.es[0], now) {
		e := q.later.pop()
		e.later = false
		q.ready.push(e)
	}
	q.synced = now
}

// pop removes and returns the next runnable task at now: the highest
// priority, then the lowest QueueSeq. Its record, if any, stays counted
// until the caller drops or restores the entry.
func (q *waitQueue) pop(now time.Time) (*qentry, bool) {
	q.sync(now)
	if len(q.ready.es) == 0 {
		return nil, false
	}
	e := q.ready.pop()
	delete(q.byID, e.id)
	q.depth[clampPrio(e.prio)]--
	return e, true
}

// hasRunnable reports whether pop(now) would find a task.
func (q *waitQueue) hasRunnable(now time.Time) bool {
	q.sync(now)
	return len(q.ready.es) > 0
}

// nextReadyAt returns the earliest ReadyAt among tasks not runnable at now.
func (q *waitQueue) nextReadyAt(now time.Time) (time.Time, bool) {
	q.sync(now)
	if len(q.later.es) == 0 {
		return time.Time{}, false
	}
	return q.later.es[0].at, true
}

func (q *waitQueue) depthMap() map[protocol.Priority]int {
	m := make(map[protocol.Priority]int, len(protocol.Priorities))
	for _, p := range protocol.Priorities {
		m[p] = q.depth[p]
	}
	return m
}

func clampPrio(p protocol.Priority) protocol.Priority {
	return max(protocol.Background, min(p, protocol.Critical))
}

// qheap is a binary heap of entries that know their position, so that any
// entry can be removed in O(log n).
type qheap struct {
	es   []*qentry
	less func(a, b *qentry) bool
}

func (h *qheap) push(e *qentry) {
	e.idx = len(h.es)
	h.es = append(h.es, e)
	h.up(e.idx)
}

func (h *qheap) pop() *qentry {
	e := h.es[0]
	h.remove(e)
	return e
}

func (h *qheap) remove(e *qentry) {
	i, last := e.idx, len(h.es)-1
	if i != last {
		h.swap(i, last)
	}
	h.es[last] = nil
	h.es = h.es[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
	e.idx = -1
}

func (h *qheap) swap(i, j int) {
	h.es[i], h.es[j] = h.es[j], h.es[i]
	h.es[i].idx, h.es[j].idx = i, j
}

func (h *qheap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.es[i], h.es[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts i down and reports whether it moved.
func (h *qheap) down(i int) bool {
	start, n := i, len(h.es)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(h.es[r], h.es[l]) {
			c = r
		}
		if !h.less(h.es[c], h.es[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}
