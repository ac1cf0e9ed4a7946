package server

import (
	"strconv"
	"time"

	"github.com/chimera-fabric/fabric/internal/jsonenc"
	"github.com/chimera-fabric/fabric/protocol"
)

// This file encodes the results that every task costs (a protocol.Task for
// task.wait and task.get, a protocol.TaskEvent for task.event, the answer
// of task.submit) by appending, without encoding/json's reflection: a task
// encoded by json.Marshal cost ~10 µs and a dozen allocations, a fifth of a
// trivial task's time on the connection's reader.
//
// The bytes are exactly json.Marshal's (TestEncodeSameAsJSON compares them
// on random values): strings escaped the same way (HTML characters, U+2028
// and U+2029, invalid UTF-8), floats formatted the same way, map keys
// sorted, nil maps and slices null, omitempty honoured. What json.Marshal
// refuses (a NaN, a time outside RFC 3339, an output that is not JSON)
// makes the append report false, and the caller falls back to json.Marshal,
// which then says what was wrong.

// appendResult appends the JSON of v when it is one of the types encoded
// here; ok is false otherwise, or when v holds what json.Marshal would
// refuse.
func appendResult(b []byte, v any) (_ []byte, ok bool) {
	switch r := v.(type) {
	case protocol.Task:
		return appendTask(b, &r)
	case *protocol.Task:
		if r == nil {
			return append(b, "null"...), true
		}
		return appendTask(b, r)
	case protocol.SubmitResult:
		return appendSubmitResult(b, &r), true
	case protocol.TaskEvent:
		return appendTaskEvent(b, &r)
	case *protocol.TaskEvent:
		if r == nil {
			return append(b, "null"...), true
		}
		return appendTaskEvent(b, r)
	}
	return b, false
}

func appendSubmitResult(b []byte, r *protocol.SubmitResult) []byte {
	b = append(b, `{"task_id":`...)
	b = jsonenc.AppendString(b, r.TaskID)
	b = append(b, `,"state":`...)
	b = jsonenc.AppendString(b, string(r.State))
	b = append(b, `,"created":`...)
	b = strconv.AppendBool(b, r.Created)
	if r.SubscriptionID != "" {
		b = append(b, `,"subscription_id":`...)
		b = jsonenc.AppendString(b, r.SubscriptionID)
	}
	return append(b, '}')
}

func appendTask(b []byte, t *protocol.Task) (_ []byte, ok bool) {
	b = append(b, `{"task_id":`...)
	b = jsonenc.AppendString(b, t.TaskID)
	b = append(b, `,"agent":`...)
	b = jsonenc.AppendString(b, t.Agent)
	b = append(b, `,"priority":`...)
	b = jsonenc.AppendString(b, t.Priority.String())
	b = append(b, `,"state":`...)
	b = jsonenc.AppendString(b, string(t.State))
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"max_retries":`...)
	b = strconv.AppendInt(b, int64(t.MaxRetries), 10)
	b = append(b, `,"labels":`...)
	b = jsonenc.AppendStringMap(b, t.Labels)
	b = append(b, `,"created_at":`...)
	if b, ok = jsonenc.AppendTime(b, t.CreatedAt); !ok {
		return b, false
	}
	for _, f := range [...]struct {
		name string
		t    *time.Time
	}{{`,"started_at":`, t.StartedAt}, {`,"finished_at":`, t.FinishedAt}, {`,"next_attempt_at":`, t.NextAttemptAt}} {
		if f.t != nil {
			b = append(b, f.name...)
			if b, ok = jsonenc.AppendTime(b, *f.t); !ok {
				return b, false
			}
		}
	}
	if t.Result != nil {
		b = append(b, `,"result":`...)
		if b, ok = jsonenc.AppendExecutionResult(b, t.Result); !ok {
			return b, false
		}
	}
	if t.Error != nil {
		b = append(b, `,"error":`...)
		b = jsonenc.AppendTaskError(b, t.Error)
	}
	b = append(b, `,"timeout_ms":`...)
	b = strconv.AppendInt(b, t.TimeoutMs, 10)
	if t.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = jsonenc.AppendString(b, t.IdempotencyKey)
	}
	if len(t.AttemptErrors) > 0 {
		b = append(b, `,"attempt_errors":[`...)
		for i := range t.AttemptErrors {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendTaskError(b, &t.AttemptErrors[i])
		}
		b = append(b, ']')
	}
	return append(b, '}'), true
}

func appendTaskEvent(b []byte, e *protocol.TaskEvent) (_ []byte, ok bool) {
	b = append(b, '{')
	if e.SubscriptionID != "" {
		b = append(b, `"subscription_id":`...)
		b = jsonenc.AppendString(b, e.SubscriptionID)
		b = append(b, ',')
	}
	b = append(b, `"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"task_id":`...)
	b = jsonenc.AppendString(b, e.TaskID)
	if e.Agent != "" {
		b = append(b, `,"agent":`...)
		b = jsonenc.AppendString(b, e.Agent)
	}
	b = append(b, `,"state":`...)
	b = jsonenc.AppendString(b, string(e.State))
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(e.Attempt), 10)
	b = append(b, `,"at":`...)
	if b, ok = jsonenc.AppendTime(b, e.At); !ok {
		return b, false
	}
	if e.Progress != nil {
		b = append(b, `,"progress":`...)
		if b, ok = jsonenc.AppendFloat(b, *e.Progress); !ok {
			return b, false
		}
	}
	if e.Result != nil {
		b = append(b, `,"result":`...)
		if b, ok = jsonenc.AppendExecutionResult(b, e.Result); !ok {
			return b, false
		}
	}
	if e.Error != nil {
		b = append(b, `,"error":`...)
		b = jsonenc.AppendTaskError(b, e.Error)
	}
	return append(b, '}'), true
}
