package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// Rules both stores share, kept here so that they cannot drift apart.

// checkNewTask validates what CreateTask is given and fills what the store
// decides: the state and, when missing, the creation time.
func checkNewTask(t *TaskRecord, now func() time.Time) error {
	if t.TaskID == "" {
		return fmt.Errorf("store: CreateTask: task_id is empty; want the task's id")
	}
	if t.Agent == "" {
		return fmt.Errorf("store: CreateTask: task %s has no agent; want the agent's name", t.TaskID)
	}
	if t.Priority < protocol.Background || t.Priority > protocol.Critical {
		return fmt.Errorf("store: CreateTask: task %s: priority %d; want one of %v", t.TaskID, t.Priority, protocol.Priorities)
	}
	t.State = protocol.StateQueued
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	return nil
}

func checkUpdate(t *TaskRecord, expect protocol.State) error {
	if t.TaskID == "" {
		return fmt.Errorf("store: UpdateTask: task_id is empty; want the task's id")
	}
	if !t.State.Valid() {
		return fmt.Errorf("store: UpdateTask: task %s: state %q; want one of %v", t.TaskID, t.State, protocol.States)
	}
	if !expect.Valid() {
		return fmt.Errorf("store: UpdateTask: task %s: expected state %q; want one of %v", t.TaskID, expect, protocol.States)
	}
	if t.Priority < protocol.Background || t.Priority > protocol.Critical {
		return fmt.Errorf("store: UpdateTask: task %s: priority %d; want one of %v", t.TaskID, t.Priority, protocol.Priorities)
	}
	return nil
}

// updateEventAt is the time of the event UpdateTask appends: when a finished
// task finished, otherwise now.
func updateEventAt(t *TaskRecord, now func() time.Time) time.Time {
	if t.State.Terminal() && t.FinishedAt != nil {
		return *t.FinishedAt
	}
	return now()
}

// applyUpdate copies onto stored the fields UpdateTask may change; what
// CreateTask fixed (identity, input, submit params, QueueSeq) stays.
func applyUpdate(stored *TaskRecord, t *TaskRecord) {
	stored.Priority = t.Priority
	stored.State = t.State
	stored.Attempt = t.Attempt
	stored.MaxRetries = t.MaxRetries
	stored.Labels = maps.Clone(t.Labels)
	stored.StartedAt = cloneTime(t.StartedAt)
	stored.FinishedAt = cloneTime(t.FinishedAt)
	stored.NextAttemptAt = cloneTime(t.NextAttemptAt)
	stored.Result = cloneResult(t.Result)
	stored.Error = cloneTaskError(t.Error)
	stored.TimeoutMs = t.TimeoutMs
	stored.AttemptErrors = slices.Clone(t.AttemptErrors)
	stored.ReadyAt = t.ReadyAt
}

// claimed turns a waiting task into its running attempt.
func claimed(t *TaskRecord, now time.Time) {
	t.State = protocol.StateRunning
	t.Attempt++
	t.StartedAt = &now
	t.ReadyAt, t.NextAttemptAt = time.Time{}, nil
}

// waiting reports whether a task in state s is in the queue.
func waiting(s protocol.State) bool {
	return s == protocol.StateQueued || s == protocol.StateRetrying
}

// doneAt orders finished tasks for Prune: when they finished, or, for a
// finished task that does not say, when it was created.
func doneAt(t *TaskRecord) time.Time {
	if t.FinishedAt != nil {
		return *t.FinishedAt
	}
	return t.CreatedAt
}

// progressEvent builds AppendProgress's event, after checking that the task
// is running the attempt that reports.
func progressEvent(t *TaskRecord, attempt int, progress float64, at time.Time) (protocol.TaskEvent, error) {
	if t.State != protocol.StateRunning || t.Attempt != attempt {
		return protocol.TaskEvent{}, fmt.Errorf("%w: progress for attempt %d of task %s, which is %s at attempt %d",
			ErrStateChanged, attempt, t.TaskID, t.State, t.Attempt)
	}
	p := progress
	return protocol.TaskEvent{TaskID: t.TaskID, Agent: t.Agent, State: protocol.StateRunning, Attempt: attempt, At: at, Progress: &p}, nil
}

func checkProgress(taskID string, progress float64) error {
	if taskID == "" {
		return fmt.Errorf("store: AppendProgress: task_id is empty; want the task's id")
	}
	if math.IsNaN(progress) || math.IsInf(progress, 0) {
		return fmt.Errorf("store: AppendProgress: task %s: progress %v; want a finite number", taskID, progress)
	}
	return nil
}

// listQuery is a checked TaskFilter.
type listQuery struct {
	state      protocol.State
	agent      string
	labelKey   string
	labelValue string
	hasValue   bool
	limit      int
	before     int64 // only tasks with QueueSeq < before; 0 means no bound
}

func parseFilter(f TaskFilter) (listQuery, error) {
	q := listQuery{state: f.State, agent: f.Agent, limit: f.Limit}
	if f.State != "" && !f.State.Valid() {
		return q, protocol.Errorf(protocol.ErrInvalidParams, "state: want one of %v; got %q", protocol.States, f.State)
	}
	if f.Label != "" {
		q.labelKey, q.labelValue, q.hasValue = strings.Cut(f.Label, "=")
		if q.labelKey == "" {
			return q, protocol.Errorf(protocol.ErrInvalidParams, `label: want "key" or "key=value"; got %q`, f.Label)
		}
	}
	if q.limit <= 0 {
		q.limit = protocol.DefaultListLimit
	}
	q.limit = min(q.limit, protocol.MaxListLimit)
	if f.Cursor != "" {
		seq, err := parseCursor(f.Cursor)
		if err != nil {
			return q, err
		}
		q.before = seq
	}
	return q, nil
}

func (q *listQuery) match(t *TaskRecord) bool {
	if q.state != "" && t.State != q.state {
		return false
	}
	if q.agent != "" && t.Agent != q.agent {
		return false
	}
	if q.labelKey != "" {
		v, ok := t.Labels[q.labelKey]
		if !ok || q.hasValue && v != q.labelValue {
			return false
		}
	}
	return true
}

// A cursor names the QueueSeq of the last task of a page: the next page holds
// older tasks only, so tasks added meanwhile neither shift nor repeat it.
const cursorPrefix = "q1."

func makeCursor(seq int64) string { return cursorPrefix + strconv.FormatInt(seq, 36) }

func parseCursor(c string) (int64, error) {
	s, ok := strings.CutPrefix(c, cursorPrefix)
	seq, err := strconv.ParseInt(s, 36, 64)
	if !ok || err != nil || seq <= 0 {
		return 0, protocol.Errorf(protocol.ErrInvalidParams, "cursor: want a next_cursor from an earlier task.list; got %q", c)
	}
	return seq, nil
}

// Deep copies: a store never shares memory with its callers, so that neither
// can change what the other holds.

func cloneTask(t *TaskRecord) TaskRecord {
	c := *t
	c.Labels = maps.Clone(t.Labels)
	c.StartedAt = cloneTime(t.StartedAt)
	c.FinishedAt = cloneTime(t.FinishedAt)
	c.NextAttemptAt = cloneTime(t.NextAttemptAt)
	c.Result = cloneResult(t.Result)
	c.Error = cloneTaskError(t.Error)
	c.AttemptErrors = slices.Clone(t.AttemptErrors)
	c.Input = slices.Clone(t.Input)
	if t.Quota.Fuel != nil {
		f := *t.Quota.Fuel
		c.Quota.Fuel = &f
	}
	return c
}

func cloneAgent(a *AgentRecord) AgentRecord {
	c := *a
	c.Capabilities = slices.Clone(a.Capabilities)
	c.Module = slices.Clone(a.Module)
	return c
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

func cloneTaskError(e *protocol.TaskError) *protocol.TaskError {
	if e == nil {
		return nil
	}
	c := *e
	return &c
}

func cloneResult(r *protocol.ExecutionResult) *protocol.ExecutionResult {
	if r == nil {
		return nil
	}
	c := *r
	c.Output = json.RawMessage(slices.Clone([]byte(r.Output)))
	c.OutputBase64 = slices.Clone(r.OutputBase64)
	c.KPIs = maps.Clone(r.KPIs)
	c.Logs = slices.Clone(r.Logs)
	if r.Usage.GPUUtilization != nil {
		g := *r.Usage.GPUUtilization
		c.Usage.GPUUtilization = &g
	}
	if r.Usage.FuelConsumed != nil {
		f := *r.Usage.FuelConsumed
		c.Usage.FuelConsumed = &f
	}
	return &c
}

// requeued puts a task left running back in the queue; its attempt stays
// counted.
func requeued(t *TaskRecord) {
	t.State = protocol.StateQueued
	t.ReadyAt, t.NextAttemptAt = time.Time{}, nil
}

func agentNotFound(name string) error {
	return protocol.Errorf(protocol.ErrNotFound, "agent %q does not exist", name)
}

func taskNotFound(id string) error {
	return protocol.Errorf(protocol.ErrNotFound, "task %q does not exist", id)
}

func taskExists(id string) error {
	return protocol.Errorf(protocol.ErrConflict, "task %q already exists", id)
}

func stateChanged(id string, got, expect protocol.State) error {
	if got == expect {
		return fmt.Errorf("%w: task %s is %s, but for another claim", ErrStateChanged, id, got)
	}
	return fmt.Errorf("%w: task %s is %s, not %s", ErrStateChanged, id, got, expect)
}

// sameClaim reports whether a stored task in state expect is the one t
// describes: for a running task, the same claim (UpdateTask).
func sameClaim(stored, t *TaskRecord, expect protocol.State) bool {
	if expect != protocol.StateRunning {
		return true
	}
	a, b := stored.StartedAt, t.StartedAt
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}
