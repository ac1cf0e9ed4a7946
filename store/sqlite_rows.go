package store

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chimera-fabric/fabric/protocol"
)

// How records map to rows. Times are Unix nanoseconds (exact, and ordered as
// integers); absent times are NULL, except ready_at where 0 means "at once".
// Nested values are JSON text (not blobs, which SQLite's JSON functions would
// read as JSONB). Encoding and decoding run on the calling goroutine,
// so that the single writer spends its time in SQLite only.

var taskColNames = []string{"queue_seq", "task_id", "agent", "priority", "state", "attempt", "max_retries", "timeout_ms",
	"created_at", "started_at", "finished_at", "next_attempt_at", "ready_at", "idempotency_key", "params_hash",
	"input_is_json", "backoff", "quota", "labels", "result", "error", "attempt_errors", "input"}

var (
	// taskCols are the tasks row's columns, as scanTask reads them.
	taskCols = strings.Join(taskColNames, ", ")
	// selectTasks reads whole records, inputs kept apart included.
	selectTasks = "SELECT tasks." + strings.Join(taskColNames[:len(taskColNames)-1], ", tasks.") +
		", COALESCE(tasks.input, task_inputs.input) FROM tasks LEFT JOIN task_inputs ON task_inputs.queue_seq = tasks.queue_seq"
	insertTaskSQL = "INSERT INTO tasks (" + taskCols + ") VALUES (?" + strings.Repeat(", ?", len(taskColNames)-1) + ")"
)

// taskRow is a tasks row as scanned, before JSON decoding.
type taskRow struct {
	queueSeq                     int64
	id, agent                    string
	prio                         int64
	state                        string
	attempt, maxRetries, timeout int64
	created                      int64
	started, finished, next      sql.NullInt64
	readyAt                      int64
	key                          sql.NullString
	paramsHash                   string
	input                        []byte
	inputIsJSON                  bool
	backoff, quota, labels       []byte
	result, terr, attemptErrs    []byte
}

type scanner interface{ Scan(dest ...any) error }

// scanTask reads taskCols or selectTasks. From taskCols, a nil input means
// that it is kept apart, in task_inputs.
func scanTask(sc scanner) (taskRow, error) {
	var r taskRow
	err := sc.Scan(&r.queueSeq, &r.id, &r.agent, &r.prio, &r.state, &r.attempt, &r.maxRetries, &r.timeout,
		&r.created, &r.started, &r.finished, &r.next, &r.readyAt, &r.key, &r.paramsHash,
		&r.inputIsJSON, &r.backoff, &r.quota, &r.labels, &r.result, &r.terr, &r.attemptErrs, &r.input)
	return r, err
}

// inlineInput is the largest input kept in the task's row. A larger one
// goes to task_inputs, so that the row's updates (SQLite rewrites a whole
// row) do not copy it each time; a small one saves that table's insert.
const inlineInput = 1024

func inputInline(in []byte) bool { return len(in) <= inlineInput }

func (r *taskRow) decode() (TaskRecord, error) {
	t := TaskRecord{
		Task: protocol.Task{
			TaskID:         r.id,
			Agent:          r.agent,
			Priority:       protocol.Priority(r.prio),
			State:          protocol.State(r.state),
			Attempt:        int(r.attempt),
			MaxRetries:     int(r.maxRetries),
			CreatedAt:      fromNanos(r.created),
			StartedAt:      fromNullNanos(r.started),
			FinishedAt:     fromNullNanos(r.finished),
			NextAttemptAt:  fromNullNanos(r.next),
			TimeoutMs:      r.timeout,
			IdempotencyKey: r.key.String,
		},
		Input:       r.input,
		InputIsJSON: r.inputIsJSON,
		ParamsHash:  r.paramsHash,
		QueueSeq:    r.queueSeq,
	}
	t.ReadyAt = fromNanos(r.readyAt)
	for _, f := range []struct {
		name string
		b    []byte
		v    any
	}{
		{"backoff", r.backoff, &t.Backoff},
		{"quota", r.quota, &t.Quota},
		{"labels", r.labels, &t.Labels},
		{"result", r.result, &t.Result},
		{"error", r.terr, &t.Error},
		{"attempt_errors", r.attemptErrs, &t.AttemptErrors},
	} {
		if len(f.b) == 0 {
			continue
		}
		if err := json.Unmarshal(f.b, f.v); err != nil {
			return TaskRecord{}, fmt.Errorf("store: task %s: decoding its %s: %w", r.id, f.name, err)
		}
	}
	return t, nil
}

// insertArgs appends to dst the values of taskCols for a new task,
// queue_seq first (the writer fills it). A large input goes to task_inputs
// (inlineInput).
func insertArgs(dst []any, t *TaskRecord) ([]any, error) {
	backoff, err := encodeWith(func(e *jsonEnc) { e.backoff(&t.Backoff) })
	if err != nil {
		return nil, err
	}
	quota, err := encodeWith(func(e *jsonEnc) { e.quota(&t.Quota) })
	if err != nil {
		return nil, err
	}
	mut, err := mutableArgs(t)
	if err != nil {
		return nil, err
	}
	var key any
	if t.IdempotencyKey != "" {
		key = t.IdempotencyKey
	}
	var input any
	if inputInline(t.Input) {
		input = nonNilBytes(t.Input)
	}
	return append(dst, nil, t.TaskID, t.Agent, int64(t.Priority), string(t.State), t.Attempt, t.MaxRetries, t.TimeoutMs,
		toNanos(t.CreatedAt), mut.started, mut.finished, mut.next, mut.readyAt, key, t.ParamsHash,
		t.InputIsJSON, backoff, quota, mut.labels, mut.result, mut.terr, mut.attemptErrs, input), nil
}

// keepInput is the largest input whose record the queue keeps for a
// claim; a task with a larger one is read back when claimed.
const keepInput = 64 << 10

// recordOf returns the record a read of the row inserted with args (from
// insertArgs, for t) returns, input included; nil if the input is too large
// to keep. Most fields are copied as a read would turn them (times to UTC
// nanoseconds, no labels to an empty map); a record whose encoding could
// change it (a result, errors, labels that are not UTF-8) is decoded from
// args, as a read would.
func recordOf(t *TaskRecord, args []any) (*TaskRecord, error) {
	if len(t.Input) > keepInput {
		return nil, nil
	}
	if t.Result != nil || t.Error != nil || len(t.AttemptErrors) > 0 || !utf8Labels(t.Labels) {
		return recordFromArgs(args, t.Input)
	}
	r := &TaskRecord{
		Task: protocol.Task{
			TaskID:         t.TaskID,
			Agent:          t.Agent,
			Priority:       t.Priority,
			State:          t.State,
			Attempt:        t.Attempt,
			MaxRetries:     t.MaxRetries,
			Labels:         make(map[string]string, len(t.Labels)),
			CreatedAt:      fromNanos(toNanos(t.CreatedAt)),
			StartedAt:      storedTime(t.StartedAt),
			FinishedAt:     storedTime(t.FinishedAt),
			NextAttemptAt:  storedTime(t.NextAttemptAt),
			TimeoutMs:      t.TimeoutMs,
			IdempotencyKey: t.IdempotencyKey,
		},
		InputIsJSON: t.InputIsJSON,
		Backoff:     t.Backoff,
		Quota:       t.Quota,
		ParamsHash:  t.ParamsHash,
		ReadyAt:     fromNanos(toNanos(t.ReadyAt)),
	}
	maps.Copy(r.Labels, t.Labels)
	if t.Quota.Fuel != nil {
		f := *t.Quota.Fuel
		r.Quota.Fuel = &f
	}
	if len(t.Input) > 0 { // SQLite reads an empty blob back as nil
		r.Input = bytes.Clone(t.Input)
	}
	return r, nil
}

// storedTime is a time as a read returns it.
func storedTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return fromNullNanos(sql.NullInt64{Int64: toNanos(*t), Valid: true})
}

// utf8Labels reports whether JSON keeps labels as they are: it replaces
// bytes that are not UTF-8.
func utf8Labels(l map[string]string) bool {
	for k, v := range l {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// recordFromArgs is recordOf by decoding args the way a read decodes a row.
func recordFromArgs(args []any, input []byte) (*TaskRecord, error) {
	r := taskRow{
		id: args[1].(string), agent: args[2].(string), prio: args[3].(int64), state: args[4].(string),
		attempt: int64(args[5].(int)), maxRetries: int64(args[6].(int)), timeout: args[7].(int64),
		created: args[8].(int64), started: nullInt(args[9]), finished: nullInt(args[10]), next: nullInt(args[11]),
		readyAt: args[12].(int64), paramsHash: args[14].(string), inputIsJSON: args[15].(bool),
		backoff: textOf(args[16]), quota: textOf(args[17]), labels: textOf(args[18]),
		result: textOf(args[19]), terr: textOf(args[20]), attemptErrs: textOf(args[21]),
	}
	if k, ok := args[13].(string); ok {
		r.key = sql.NullString{String: k, Valid: true}
	}
	t, err := r.decode()
	if err != nil {
		return nil, err
	}
	if len(input) > 0 { // SQLite reads an empty blob back as nil
		t.Input = bytes.Clone(input)
	}
	return &t, nil
}

func nullInt(v any) sql.NullInt64 {
	n, ok := v.(int64)
	return sql.NullInt64{Int64: n, Valid: ok}
}

func textOf(v any) []byte {
	s, _ := v.(string)
	if s == "" {
		return nil
	}
	return []byte(s)
}

// nonNilBytes makes an empty blob of nil: NULL would say "kept apart".
func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// mutableSet assigns the columns UpdateTask writes, in mutable's order
// (priority, state, attempt, max_retries and timeout_ms first).
const mutableSet = `priority = ?, state = ?, attempt = ?, max_retries = ?, timeout_ms = ?,
	started_at = ?, finished_at = ?, next_attempt_at = ?, ready_at = ?, labels = ?, result = ?, error = ?,
	attempt_errors = ?, done_at = ?`

// mutable holds the encoded fields UpdateTask writes.
type mutable struct {
	started, finished, next, readyAt, doneAt any
	labels, result, terr, attemptErrs        any
}

func mutableArgs(t *TaskRecord) (mutable, error) {
	m := mutable{
		started:  nullNanos(t.StartedAt),
		finished: nullNanos(t.FinishedAt),
		next:     nullNanos(t.NextAttemptAt),
	}
	m.readyAt = toNanos(t.ReadyAt)
	if t.State.Terminal() {
		m.doneAt = toNanos(doneAt(t))
	}
	if len(t.Labels) == 0 {
		m.labels = "{}"
	} else {
		l, err := encodeWith(func(e *jsonEnc) { e.labels(t.Labels) })
		if err != nil {
			return m, err
		}
		m.labels = l
	}
	if t.Result != nil {
		r, err := encodeWith(func(e *jsonEnc) { e.result(t.Result) })
		if err != nil {
			return m, fmt.Errorf("store: task %s: encoding its result: %w", t.TaskID, err)
		}
		m.result = r
	}
	if t.Error != nil {
		te, err := encodeWith(func(e *jsonEnc) { e.taskError(t.Error) })
		if err != nil {
			return m, err
		}
		m.terr = te
	}
	if len(t.AttemptErrors) > 0 {
		ae, err := encodeWith(func(e *jsonEnc) { e.taskErrors(t.AttemptErrors) })
		if err != nil {
			return m, err
		}
		m.attemptErrs = ae
	}
	return m, nil
}

func jsonText(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// eventPayload is what an events row keeps beside its seq, task and agent.
type eventPayload struct {
	State    protocol.State            `json:"state"`
	Attempt  int                       `json:"attempt"`
	At       time.Time                 `json:"at"`
	Progress *float64                  `json:"progress,omitempty"`
	Result   *protocol.ExecutionResult `json:"result,omitempty"`
	Error    *protocol.TaskError       `json:"error,omitempty"`
}

// encodeEvent encodes an eventPayload of ev (encode.go).
func encodeEvent(ev *protocol.TaskEvent) (string, error) {
	s, err := encodeWith(func(e *jsonEnc) { e.event(ev) })
	if err != nil {
		return "", fmt.Errorf("store: encoding an event of task %s: %w", ev.TaskID, err)
	}
	return s, nil
}

// encodeUpdateEvent is encodeEvent for UpdateTask's event, reusing the
// result and error m encoded for the row instead of encoding them again
// (the result can be most of the bytes). The output is encodeEvent's, byte
// for byte: the same fields in the same order, each encoded by
// encoding/json (a state is one of a few plain words).
func encodeUpdateEvent(ev *protocol.TaskEvent, m *mutable) (string, error) {
	res, rok := m.result.(string)
	terr, eok := m.terr.(string)
	if ev.Progress != nil || ev.Result != nil && !rok || ev.Error != nil && !eok || !ev.State.Valid() {
		return encodeEvent(ev)
	}
	at, err := ev.At.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("store: encoding an event of task %s: %w", ev.TaskID, err)
	}
	b := make([]byte, 0, 64+len(at)+len(res)+len(terr))
	b = append(b, `{"state":"`...)
	b = append(b, ev.State...)
	b = append(b, `","attempt":`...)
	b = strconv.AppendInt(b, int64(ev.Attempt), 10)
	b = append(b, `,"at":`...)
	b = append(b, at...)
	if ev.Result != nil {
		b = append(b, `,"result":`...)
		b = append(b, res...)
	}
	if ev.Error != nil {
		b = append(b, `,"error":`...)
		b = append(b, terr...)
	}
	return string(append(b, '}')), nil
}

// decodeEvents appends to out the events of an events row whose seq is
// above after: one, or several consecutive ones of a task (flushEvents),
// the last of which has seq.
func decodeEvents(out []protocol.TaskEvent, after, seq int64, taskID, agent string, payload []byte) ([]protocol.TaskEvent, error) {
	if len(payload) == 0 || payload[0] != '[' {
		var p eventPayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return out, fmt.Errorf("store: decoding event %d: %w", seq, err)
		}
		return append(out, eventOf(seq, taskID, agent, &p)), nil
	}
	var ps []eventPayload
	if err := json.Unmarshal(payload, &ps); err != nil {
		return out, fmt.Errorf("store: decoding events %d to %d: %w", seq-int64(len(ps))+1, seq, err)
	}
	first := seq - int64(len(ps)) + 1
	for i := range ps {
		if s := first + int64(i); s > after {
			out = append(out, eventOf(s, taskID, agent, &ps[i]))
		}
	}
	return out, nil
}

func eventOf(seq int64, taskID, agent string, p *eventPayload) protocol.TaskEvent {
	return protocol.TaskEvent{Seq: seq, TaskID: taskID, Agent: agent, State: p.State, Attempt: p.Attempt,
		At: p.At, Progress: p.Progress, Result: p.Result, Error: p.Error}
}

// toNanos encodes a time; 0 stands for the zero time.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

func nullNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return toNanos(*t)
}
