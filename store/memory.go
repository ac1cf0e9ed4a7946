package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Memory is a Store that keeps everything in memory and nothing across
// restarts (--data :memory:). It is the baseline the durable store is
// measured against, so every operation is a map or heap step under one lock.
type Memory struct {
	mu       sync.RWMutex
	closed   bool
	now      func() time.Time
	agents   map[string]AgentRecord
	tasks    map[string]*TaskRecord
	order    []*TaskRecord // by QueueSeq, oldest first
	byKey    map[string]*TaskRecord
	queue    *waitQueue
	events   []protocol.TaskEvent // by Seq
	perTask  map[string][]int64   // a task's event seqs, in order
	seq      int64                // last event seq assigned
	queueSeq int64                // last QueueSeq assigned
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		now:     time.Now,
		agents:  map[string]AgentRecord{},
		tasks:   map[string]*TaskRecord{},
		byKey:   map[string]*TaskRecord{},
		queue:   newWaitQueue(),
		perTask: map[string][]int64{},
	}
}

func (m *Memory) PutAgent(ctx context.Context, a AgentRecord) error {
	if a.Name == "" {
		return fmt.Errorf("store: PutAgent: the agent has no name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.agents[a.Name] = cloneAgent(&a)
	return nil
}

func (m *Memory) GetAgent(ctx context.Context, name string) (AgentRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return AgentRecord{}, ErrClosed
	}
	a, ok := m.agents[name]
	if !ok {
		return AgentRecord{}, agentNotFound(name)
	}
	return cloneAgent(&a), nil
}

func (m *Memory) ListAgents(ctx context.Context) ([]AgentRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]AgentRecord, 0, len(m.agents))
	for _, a := range m.agents {
		out = append(out, cloneAgent(&a))
	}
	slices.SortFunc(out, func(a, b AgentRecord) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *Memory) DeleteAgent(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.agents[name]; !ok {
		return agentNotFound(name)
	}
	delete(m.agents, name)
	return nil
}

func (m *Memory) CreateTask(ctx context.Context, t TaskRecord) (TaskRecord, protocol.TaskEvent, bool, error) {
	if err := checkNewTask(&t, m.now); err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return TaskRecord{}, protocol.TaskEvent{}, false, ErrClosed
	}
	if t.IdempotencyKey != "" {
		if old := m.byKey[t.IdempotencyKey]; old != nil {
			return cloneTask(old), protocol.TaskEvent{}, false, nil
		}
	}
	if _, dup := m.tasks[t.TaskID]; dup {
		return TaskRecord{}, protocol.TaskEvent{}, false, taskExists(t.TaskID)
	}
	m.queueSeq++
	t.QueueSeq = m.queueSeq
	rec := cloneTask(&t)
	m.tasks[rec.TaskID] = &rec
	m.order = append(m.order, &rec)
	if rec.IdempotencyKey != "" {
		m.byKey[rec.IdempotencyKey] = &rec
	}
	m.queue.put(rec.TaskID, rec.Agent, rec.Priority, rec.QueueSeq, rec.ReadyAt, nil)
	ev := m.appendEvent(&rec, rec.CreatedAt)
	return t, ev, true, nil
}

// appendEvent stores the event of rec's current state. m.mu is held.
func (m *Memory) appendEvent(rec *TaskRecord, at time.Time) protocol.TaskEvent {
	ev := EventFor(rec, at)
	ev.Result = cloneResult(ev.Result)
	return m.storeEvent(ev)
}

func (m *Memory) storeEvent(ev protocol.TaskEvent) protocol.TaskEvent {
	m.seq++
	ev.Seq = m.seq
	m.events = append(m.events, ev)
	m.perTask[ev.TaskID] = append(m.perTask[ev.TaskID], ev.Seq)
	return ev
}

func (m *Memory) UpdateTask(ctx context.Context, t TaskRecord, expect protocol.State) (protocol.TaskEvent, error) {
	if err := checkUpdate(&t, expect); err != nil {
		return protocol.TaskEvent{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return protocol.TaskEvent{}, ErrClosed
	}
	rec := m.tasks[t.TaskID]
	if rec == nil {
		return protocol.TaskEvent{}, taskNotFound(t.TaskID)
	}
	if rec.State != expect || !sameClaim(rec, &t, expect) {
		return protocol.TaskEvent{}, stateChanged(t.TaskID, rec.State, expect)
	}
	applyUpdate(rec, &t)
	if waiting(rec.State) {
		m.queue.put(rec.TaskID, rec.Agent, rec.Priority, rec.QueueSeq, rec.ReadyAt, nil)
	} else {
		m.queue.remove(rec.TaskID)
	}
	return m.appendEvent(rec, updateEventAt(rec, m.now)), nil
}

func (m *Memory) AppendProgress(ctx context.Context, taskID string, attempt int, progress float64, at time.Time) (protocol.TaskEvent, error) {
	if err := checkProgress(taskID, progress); err != nil {
		return protocol.TaskEvent{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return protocol.TaskEvent{}, ErrClosed
	}
	rec := m.tasks[taskID]
	if rec == nil {
		return protocol.TaskEvent{}, taskNotFound(taskID)
	}
	ev, err := progressEvent(rec, attempt, progress, at)
	if err != nil {
		return protocol.TaskEvent{}, err
	}
	return m.storeEvent(ev), nil
}

func (m *Memory) GetTask(ctx context.Context, id string) (TaskRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return TaskRecord{}, ErrClosed
	}
	rec := m.tasks[id]
	if rec == nil {
		return TaskRecord{}, taskNotFound(id)
	}
	return cloneTask(rec), nil
}

func (m *Memory) ListTasks(ctx context.Context, f TaskFilter) ([]TaskRecord, string, error) {
	q, err := parseFilter(f)
	if err != nil {
		return nil, "", err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, "", ErrClosed
	}
	end := len(m.order)
	if q.before > 0 {
		end = sort.Search(len(m.order), func(i int) bool { return m.order[i].QueueSeq >= q.before })
	}
	var out []TaskRecord
	for i := end - 1; i >= 0; i-- {
		rec := m.order[i]
		if !q.match(rec) {
			continue
		}
		if len(out) == q.limit {
			return out, makeCursor(out[len(out)-1].QueueSeq), nil
		}
		out = append(out, cloneTask(rec))
	}
	return out, "", nil
}

func (m *Memory) Claim(ctx context.Context, now time.Time) (TaskRecord, *Pending, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return TaskRecord{}, nil, false, ErrClosed
	}
	e, ok := m.queue.pop(now)
	if !ok {
		return TaskRecord{}, nil, false, nil
	}
	rec := m.tasks[e.id]
	claimed(rec, now)
	ev := m.appendEvent(rec, now)
	return cloneTask(rec), donePending(ev, nil), true, nil
}

func (m *Memory) NextReadyAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	// sync moves entries between heaps: a write lock.
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return time.Time{}, false, ErrClosed
	}
	at, ok := m.queue.nextReadyAt(now)
	return at, ok, nil
}

func (m *Memory) QueueDepth(ctx context.Context) (map[protocol.Priority]int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.queue.depthMap(), nil
}

func (m *Memory) Waiting(ctx context.Context, agent string) ([]TaskRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []TaskRecord
	for _, e := range m.queue.byID {
		if e.agent == agent {
			out = append(out, cloneTask(m.tasks[e.id]))
		}
	}
	slices.SortFunc(out, func(a, b TaskRecord) int { return cmp.Compare(a.QueueSeq, b.QueueSeq) })
	return out, nil
}

func (m *Memory) Events(ctx context.Context, after int64, f EventFilter, limit int) ([]protocol.TaskEvent, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	full := func(out []protocol.TaskEvent) bool { return limit > 0 && len(out) >= limit }
	var out []protocol.TaskEvent
	if len(f.TaskIDs) > 0 {
		// Gather the tasks' own seqs rather than scan every event.
		var seqs []int64
		for _, id := range f.TaskIDs {
			s := m.perTask[id]
			i := sort.Search(len(s), func(i int) bool { return s[i] > after })
			seqs = append(seqs, s[i:]...)
		}
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
		for _, seq := range seqs {
			if full(out) {
				break
			}
			ev := m.eventAt(seq)
			if f.Agent == "" || ev.Agent == f.Agent {
				out = append(out, ev)
			}
		}
		return out, nil
	}
	i := sort.Search(len(m.events), func(i int) bool { return m.events[i].Seq > after })
	for ; i < len(m.events) && !full(out); i++ {
		if f.Agent == "" || m.events[i].Agent == f.Agent {
			out = append(out, m.events[i])
		}
	}
	return out, nil
}

func (m *Memory) eventAt(seq int64) protocol.TaskEvent {
	i := sort.Search(len(m.events), func(i int) bool { return m.events[i].Seq >= seq })
	return m.events[i]
}

func (m *Memory) LastSeq(ctx context.Context) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	return m.seq, nil
}

func (m *Memory) Recover(ctx context.Context, now time.Time) ([]TaskRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []TaskRecord
	for _, rec := range m.order {
		if rec.State != protocol.StateRunning {
			continue
		}
		requeued(rec)
		m.queue.put(rec.TaskID, rec.Agent, rec.Priority, rec.QueueSeq, rec.ReadyAt, nil)
		m.appendEvent(rec, now)
		out = append(out, cloneTask(rec))
	}
	return out, nil
}

// memPruneBatch is how many tasks one step of Memory.Prune removes under the
// lock. A step's cost is mostly compacting m.order and m.events from the
// first task removed (about 5ms at 110k finished tasks, whatever the step's
// size), so steps are large: a prune to a cap of 100k removes its 12.5k in
// one step of about 6ms (BenchmarkMemoryPruneCap).
const memPruneBatch = 16384

// Prune finds what to remove from a snapshot of the finished tasks, taken
// under the read lock and sorted outside any lock, then removes it in steps
// of memPruneBatch under the write lock. A task that finishes meanwhile is
// not in the snapshot: it stays, and the tasks the snapshot names are older
// than the keep newest of the snapshot, so at least keep finished tasks stay.
func (m *Memory) Prune(ctx context.Context, olderThan time.Time, keep int) (int, error) {
	type done struct {
		rec *TaskRecord
		at  int64 // doneAt in Unix nanoseconds: a cheaper key than time.Time
		seq int64
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return 0, ErrClosed
	}
	var snap []done
	for _, rec := range m.order {
		if rec.State.Terminal() {
			snap = append(snap, done{rec, unixNanoClamped(doneAt(rec)), rec.QueueSeq})
		}
	}
	m.mu.RUnlock()
	if len(snap) <= keep {
		return 0, nil
	}
	// Oldest first; the keep newest (the end) stay whatever their age.
	// Tasks mostly finish in the order they were queued, so the snapshot
	// is often sorted already.
	byAge := func(a, b done) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	}
	if !slices.IsSortedFunc(snap, byAge) {
		slices.SortFunc(snap, byAge)
	}
	snap = snap[:len(snap)-keep]
	cutoff := unixNanoClamped(olderThan)
	n, _ := slices.BinarySearchFunc(snap, cutoff, func(d done, t int64) int {
		if d.at < t {
			return -1
		}
		return 1
	})
	snap = snap[:n]
	// Remove by QueueSeq, so that each step's records are near one another
	// in m.order and their events in m.events.
	slices.SortFunc(snap, func(a, b done) int { return cmp.Compare(a.seq, b.seq) })
	total := 0
	for len(snap) > 0 {
		step := snap[:min(memPruneBatch, len(snap))]
		snap = snap[len(step):]
		recs := make([]*TaskRecord, len(step))
		for i, d := range step {
			recs[i] = d.rec
		}
		k, err := m.remove(recs)
		total += k
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// unixNanoClamped is t in Unix nanoseconds, clamped to int64's range
// (UnixNano is undefined outside about 1678-2262).
func unixNanoClamped(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// remove removes finished tasks, given in QueueSeq order, and their events.
// m.order and m.events are compacted in one merge walk each from the first
// entry removed (the tasks are the oldest, so near the front).
func (m *Memory) remove(recs []*TaskRecord) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	var seqs []int64 // the events to remove
	recs = slices.DeleteFunc(recs, func(rec *TaskRecord) bool {
		if m.tasks[rec.TaskID] != rec || !rec.State.Terminal() {
			return true
		}
		seqs = append(seqs, m.perTask[rec.TaskID]...)
		return false
	})
	if len(recs) == 0 {
		return 0, nil
	}
	first := sort.Search(len(m.order), func(i int) bool { return m.order[i].QueueSeq >= recs[0].QueueSeq })
	out, j := first, 0
	for _, rec := range m.order[first:] {
		if j < len(recs) && rec == recs[j] {
			j++
			continue
		}
		m.order[out] = rec
		out++
	}
	clear(m.order[out:])
	m.order = m.order[:out]
	if len(seqs) > 0 {
		slices.Sort(seqs)
		m.events = removeEvents(m.events, seqs)
	}
	for _, rec := range recs {
		if k := rec.IdempotencyKey; k != "" && m.byKey[k] == rec {
			delete(m.byKey, k)
		}
		delete(m.tasks, rec.TaskID)
		delete(m.perTask, rec.TaskID)
	}
	return len(recs), nil
}

// removeEvents removes the events whose seqs (sorted) are given from
// events (sorted by seq) and returns what is left. The events kept before
// the last one removed move towards the end and the slice starts later, so
// the work is in proportion to where the last removed event stands, not to
// the whole log: a prune removes the oldest tasks, whose events are near
// the front. The slots left behind are cleared, so they hold no results.
func removeEvents(events []protocol.TaskEvent, seqs []int64) []protocol.TaskEvent {
	last := sort.Search(len(events), func(i int) bool { return events[i].Seq >= seqs[len(seqs)-1] })
	if last == len(events) || events[last].Seq != seqs[len(seqs)-1] {
		last-- // the last seq is not stored: the last removed event is before it
	}
	out, j := last+1, len(seqs)-1
	for i := last; i >= 0; i-- {
		for j >= 0 && seqs[j] > events[i].Seq {
			j--
		}
		if j >= 0 && seqs[j] == events[i].Seq {
			continue
		}
		out--
		events[out] = events[i]
	}
	clear(events[:out])
	return events[out:]
}

func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.agents, m.tasks, m.byKey, m.perTask, m.order, m.events = nil, nil, nil, nil, nil, nil
	return nil
}
