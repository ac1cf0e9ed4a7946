package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chimera-fabric/fabric/internal/jsonenc"
	"github.com/chimera-fabric/fabric/protocol"
)

// JSON encoders for what a task's row and events hold, written out instead
// of encoding/json's reflection: each task's life encodes its labels, result
// and three events, and reflection's deep stack made the goroutine that
// records an outcome (a new one per task) grow its stack each time. The
// output is encoding/json's, byte for byte (encode_test.go compares them),
// so that rows written by either decode the same.

// jsonEnc appends JSON to b; err is the first value that has no encoding.
type jsonEnc struct {
	b   []byte
	err error
}

func (e *jsonEnc) raw(s string) { e.b = append(e.b, s...) }

func (e *jsonEnc) str(s string) { e.b = jsonenc.AppendString(e.b, s) }

func (e *jsonEnc) int(n int64) { e.b = strconv.AppendInt(e.b, n, 10) }

func (e *jsonEnc) bool(v bool) { e.b = strconv.AppendBool(e.b, v) }

// float is encoding/json's float64 encoding: ES6 number formatting.
func (e *jsonEnc) float(f float64) {
	b, ok := jsonenc.AppendFloat(e.b, f)
	if !ok {
		if e.err == nil {
			e.err = fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
		}
		b = append(b, '0')
	}
	e.b = b
}

// time is time.Time's MarshalJSON.
func (e *jsonEnc) time(t time.Time) {
	n := len(e.b)
	b, ok := jsonenc.AppendTime(e.b, t)
	if !ok {
		_, err := t.MarshalJSON()
		if e.err == nil {
			e.err = fmt.Errorf("json: error calling MarshalJSON for type time.Time: %w", err)
		}
		b = b[:n]
	}
	e.b = b
}

func (e *jsonEnc) labels(m map[string]string) { e.b = jsonenc.AppendStringMap(e.b, m) }

func (e *jsonEnc) backoff(b *protocol.Backoff) {
	e.raw(`{"initial_ms":`)
	e.int(b.InitialMs)
	e.raw(`,"max_ms":`)
	e.int(b.MaxMs)
	e.raw(`,"multiplier":`)
	e.float(b.Multiplier)
	e.raw(`,"jitter":`)
	e.float(b.Jitter)
	e.raw(`}`)
}

func (e *jsonEnc) quota(q *protocol.Quota) {
	sep := byte('{')
	field := func(name string) {
		e.b = append(e.b, sep, '"')
		e.b = append(e.b, name...)
		e.b = append(e.b, '"', ':')
		sep = ','
	}
	if q.MemoryMB != 0 {
		field("memory_mb")
		e.int(q.MemoryMB)
	}
	if q.OutputBytes != 0 {
		field("output_bytes")
		e.int(q.OutputBytes)
	}
	if q.Fuel != nil {
		field("fuel")
		e.b = strconv.AppendUint(e.b, *q.Fuel, 10)
	}
	if sep == '{' {
		e.b = append(e.b, '{')
	}
	e.b = append(e.b, '}')
}

func (e *jsonEnc) taskError(t *protocol.TaskError) {
	if t == nil {
		e.raw("null")
		return
	}
	e.b = jsonenc.AppendTaskError(e.b, t)
}

func (e *jsonEnc) taskErrors(ts []protocol.TaskError) {
	if ts == nil {
		e.raw("null")
		return
	}
	e.b = append(e.b, '[')
	for i := range ts {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.taskError(&ts[i])
	}
	e.b = append(e.b, ']')
}

func (e *jsonEnc) result(r *protocol.ExecutionResult) {
	if r == nil {
		e.raw("null")
		return
	}
	n := len(e.b)
	b, ok := jsonenc.AppendExecutionResult(e.b, r)
	if !ok {
		if e.err == nil {
			_, e.err = json.Marshal(r) // what encoding/json says is wrong
			if e.err == nil {
				e.err = errors.New("json: a result that cannot be encoded")
			}
		}
		b = append(b[:n], "null"...)
	}
	e.b = b
}

// event is eventPayload's encoding.
func (e *jsonEnc) event(ev *protocol.TaskEvent) {
	e.raw(`{"state":`)
	e.str(string(ev.State))
	e.raw(`,"attempt":`)
	e.int(int64(ev.Attempt))
	e.raw(`,"at":`)
	e.time(ev.At)
	if ev.Progress != nil {
		e.raw(`,"progress":`)
		e.float(*ev.Progress)
	}
	if ev.Result != nil {
		e.raw(`,"result":`)
		e.result(ev.Result)
	}
	if ev.Error != nil {
		e.raw(`,"error":`)
		e.taskError(ev.Error)
	}
	e.b = append(e.b, '}')
}

// text returns what was encoded as a column's value.
func (e *jsonEnc) text() (string, error) {
	if e.err != nil {
		return "", e.err
	}
	return string(e.b), nil
}

// encodeWith encodes one value with fn.
func encodeWith(fn func(e *jsonEnc)) (string, error) {
	var e jsonEnc
	e.b = make([]byte, 0, 128)
	fn(&e)
	return e.text()
}
