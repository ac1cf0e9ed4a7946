package sched

import (
	"sync"

	"github.com/chimera-fabric/fabric/protocol"
)

// recent keeps the records of the tasks that ended last, as committed, so
// that a task.wait or task.get coming just after a task's end (the usual
// case: a client waits for the task it just submitted, and a short task
// can end before the wait arrives) is answered without reading the store.
// It is bounded by count and by bytes; a task too large for it is not kept.
// It is off while Prune runs and empty after (pause, resume), so that it
// never answers for a pruned task.
type recent struct {
	mu      sync.Mutex
	byID    map[string]*protocol.Task
	ring    []string // ids by age: n of them from head, the oldest first
	head, n int
	bytes   int
	paused  int
}

const (
	recentTasks = 4096
	recentBytes = 8 << 20
)

func newRecent() *recent {
	return &recent{byID: make(map[string]*protocol.Task, recentTasks), ring: make([]string, recentTasks)}
}

// taskSize estimates the memory a kept task holds.
func taskSize(t *protocol.Task) int {
	n := 512 + len(t.TaskID) + len(t.Agent) + len(t.IdempotencyKey)
	for k, v := range t.Labels {
		n += 48 + len(k) + len(v)
	}
	if r := t.Result; r != nil {
		n += len(r.Output) + len(r.OutputBase64) + 64*len(r.KPIs)
		for _, l := range r.Logs {
			n += 64 + len(l.Msg)
		}
	}
	if t.Error != nil {
		n += len(t.Error.Message)
	}
	for _, e := range t.AttemptErrors {
		n += 64 + len(e.Message)
	}
	return n
}

// add keeps t, a terminal task, shared read-only with whoever asks.
func (r *recent) add(t *protocol.Task) {
	size := taskSize(t)
	if size > recentBytes/64 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[t.TaskID]; ok || r.paused > 0 {
		return
	}
	for r.n == len(r.ring) || r.n > 0 && r.bytes+size > recentBytes {
		id := r.ring[r.head]
		r.ring[r.head] = ""
		r.head = (r.head + 1) % len(r.ring)
		r.n--
		r.bytes -= taskSize(r.byID[id])
		delete(r.byID, id)
	}
	r.ring[(r.head+r.n)%len(r.ring)] = t.TaskID
	r.n++
	r.byID[t.TaskID] = t
	r.bytes += size
}

func (r *recent) get(id string) *protocol.Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused > 0 {
		return nil
	}
	return r.byID[id]
}

// pause empties r and keeps it off until resume.
func (r *recent) pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused++
	r.clearLocked()
}

func (r *recent) resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused--
	r.clearLocked()
}

func (r *recent) clearLocked() {
	clear(r.byID)
	clear(r.ring)
	r.head, r.n, r.bytes = 0, 0, 0
}
