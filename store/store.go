// Package store keeps Fabric's state: agents, tasks, their events and
// idempotency keys.
//
// Store has two implementations, both run through one conformance suite
// (storetest): Memory, which keeps nothing across restarts (--data :memory:),
// and SQLite, the durable default. The interface is shaped so that a third on
// PostgreSQL can share a queue between several fabricd processes: the
// scheduler claims work through the store, never from a private queue.
package store

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Errors a Store returns. They wrap the protocol sentinels so that they reach
// the wire with the right code.
var (
	// ErrNotFound: no agent or task by that name or id.
	ErrNotFound = protocol.ErrNotFound
	// ErrStateChanged: UpdateTask's expected state no longer holds.
	ErrStateChanged = errors.New("store: task state changed concurrently")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// AgentRecord is a registered agent with its module's bytes.
type AgentRecord struct {
	protocol.Agent
	Module []byte
}

// TaskRecord is a task with everything needed to run it again after a
// restart.
type TaskRecord struct {
	protocol.Task
	Input       []byte // the bytes handed to the guest
	InputIsJSON bool   // Input came as "input" (JSON), not "input_base64"
	Backoff     protocol.Backoff
	Quota       protocol.Quota
	// ParamsHash identifies the submit's params, to tell a retried submit
	// from a conflicting one with the same idempotency key.
	ParamsHash string
	// ReadyAt is when a queued or retrying task may run next; zero means at
	// once. For a retrying task it equals *NextAttemptAt.
	ReadyAt time.Time
	// QueueSeq orders tasks of equal priority: FIFO by acceptance. The
	// store assigns it in CreateTask.
	QueueSeq int64
}

// TaskFilter selects tasks for ListTasks.
type TaskFilter struct {
	State  protocol.State // "" for any
	Agent  string         // "" for any
	Label  string         // "key" (has the label) or "key=value"; "" for any
	Limit  int            // at most this many; the store may cap it
	Cursor string         // from a previous ListTasks; "" for the first page
}

// EventFilter selects events for Events. Empty fields match everything.
type EventFilter struct {
	TaskIDs []string
	Agent   string
}

// Store is Fabric's state. All methods are safe for concurrent use. Every
// method that changes a task appends the task's event atomically with the
// change and returns it with its Seq: a server-wide number that grows by one
// per stored event, assigned in commit order.
type Store interface {
	// PutAgent inserts or replaces an agent.
	PutAgent(ctx context.Context, a AgentRecord) error
	// GetAgent returns one agent, or ErrNotFound.
	GetAgent(ctx context.Context, name string) (AgentRecord, error)
	// ListAgents returns every agent, by name.
	ListAgents(ctx context.Context) ([]AgentRecord, error)
	// DeleteAgent removes an agent, or returns ErrNotFound.
	DeleteAgent(ctx context.Context, name string) error

	// CreateTask stores a new task (state queued) and its first event. When
	// t.IdempotencyKey is set and a task with that key exists, nothing is
	// written and that task is returned with created == false (the caller
	// compares ParamsHash). CreateTask returns only once the task is
	// durable.
	CreateTask(ctx context.Context, t TaskRecord) (stored TaskRecord, ev protocol.TaskEvent, created bool, err error)
	// UpdateTask writes t if the stored task is still in state expect, and
	// appends the event describing t's new state; otherwise it writes nothing
	// and returns ErrStateChanged (ErrNotFound if there is no such task).
	// When expect is running, the stored task must also be running the
	// claim t came from (the same StartedAt): an outcome is never recorded
	// against a later claim of the task.
	// What CreateTask fixed is not rewritten: TaskID, Agent, CreatedAt,
	// IdempotencyKey, Input, InputIsJSON, Backoff, Quota, ParamsHash,
	// QueueSeq. The event's At is *t.FinishedAt when t is finished, else the
	// current time.
	UpdateTask(ctx context.Context, t TaskRecord, expect protocol.State) (protocol.TaskEvent, error)
	// AppendProgress stores a progress event for a running task. It returns
	// ErrStateChanged unless the task is running that attempt.
	AppendProgress(ctx context.Context, taskID string, attempt int, progress float64, at time.Time) (protocol.TaskEvent, error)
	// GetTask returns one task, or ErrNotFound.
	GetTask(ctx context.Context, id string) (TaskRecord, error)
	// ListTasks returns tasks matching f, newest first, and the cursor of the
	// next page ("" after the last).
	ListTasks(ctx context.Context, f TaskFilter) ([]TaskRecord, string, error)

	// Claim takes the next runnable task: among queued tasks and retrying
	// tasks whose ReadyAt <= now, the highest priority, then the lowest
	// QueueSeq. The task becomes running with Attempt+1, StartedAt now, and
	// its event is appended. ok is false when nothing is runnable.
	//
	// Claim may return before the claim is committed: the task is taken
	// (no other Claim returns it, and a write for it made after Claim
	// returns is ordered after the claim), and started reports the claim's
	// commit: the "running" event with its Seq, or the error that kept the
	// claim from the store. After such an error the task is not claimed
	// (the store holds it as before, or as a write ordered before the claim
	// left it): the caller must neither run it on nor record an outcome.
	Claim(ctx context.Context, now time.Time) (t TaskRecord, started *Pending, ok bool, err error)
	// NextReadyAt returns the earliest ReadyAt among waiting tasks (queued or
	// retrying) that are not runnable at now; ok is false if there is none.
	NextReadyAt(ctx context.Context, now time.Time) (at time.Time, ok bool, err error)
	// QueueDepth counts queued and retrying tasks by priority; every
	// priority has an entry.
	QueueDepth(ctx context.Context) (map[protocol.Priority]int, error)
	// Waiting returns the queued and retrying tasks of one agent, by QueueSeq.
	Waiting(ctx context.Context, agent string) ([]TaskRecord, error)

	// Events returns up to limit stored events with Seq > after that match
	// f, in Seq order; limit <= 0 means no limit. Events share their Result
	// with other readers: treat them as read-only.
	Events(ctx context.Context, after int64, f EventFilter, limit int) ([]protocol.TaskEvent, error)
	// LastSeq returns the highest Seq stored (0 if none). Pruning does not
	// lower it: a Seq is never handed out twice.
	LastSeq(ctx context.Context) (int64, error)

	// Recover is called once at start, before any Claim: every task left
	// running by a previous process goes back to queued (its attempt stays
	// counted) with an event. It returns the tasks it requeued.
	Recover(ctx context.Context, now time.Time) ([]TaskRecord, error)
	// Prune removes finished tasks (and their events) that finished before
	// olderThan, keeping at least keep of the newest; it returns how many
	// tasks it removed. A finished task without FinishedAt counts as
	// finished when it was created.
	// Prune(ctx, AnyAge, n) is a hard cap: it removes every finished task
	// beyond the newest n, whatever its age. Unfinished tasks (queued,
	// running, retrying) are never removed. A store removes in batches, so
	// that other calls are not held up for long.
	Prune(ctx context.Context, olderThan time.Time, keep int) (int, error)

	// Close releases the store. Further calls return ErrClosed.
	Close() error
}

// AnyAge, as Prune's olderThan, makes every finished task old enough to
// prune: only keep bounds what stays (--retain-max).
var AnyAge = time.Unix(0, math.MaxInt64)

// Pending is a write the store has taken, in order, and may not have
// committed yet.
type Pending struct {
	done chan struct{}
	ev   protocol.TaskEvent
	err  error
}

func newPending() *Pending { return &Pending{done: make(chan struct{})} }

// donePending is a Pending already over.
func donePending(ev protocol.TaskEvent, err error) *Pending {
	p := newPending()
	p.finish(err)
	if err == nil {
		p.ev = ev
	}
	return p
}

// finish ends the write; p.ev is set before, if err is nil.
func (p *Pending) finish(err error) {
	if err != nil {
		p.ev = protocol.TaskEvent{}
	}
	p.err = err
	close(p.done)
}

// Done is closed once the write is committed, or known not to be.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait waits for the write and returns its event, or the error that kept
// it from the store.
func (p *Pending) Wait() (protocol.TaskEvent, error) {
	<-p.done
	return p.ev, p.err
}

// EventFor returns the event describing t's current state. Result and error
// are carried only by terminal and retrying events.
func EventFor(t *TaskRecord, at time.Time) protocol.TaskEvent {
	ev := protocol.TaskEvent{TaskID: t.TaskID, Agent: t.Agent, State: t.State, Attempt: t.Attempt, At: at}
	if t.State.Terminal() || t.State == protocol.StateRetrying {
		ev.Result, ev.Error = t.Result, t.Error
	}
	return ev
}
