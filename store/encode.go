package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
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

// rawJSON is encoding/json's json.RawMessage: compacted, HTML characters
// escaped; invalid JSON is an error.
func (e *jsonEnc) rawJSON(m json.RawMessage) {
	if len(m) == 0 {
		e.raw("null")
		return
	}
	n := len(e.b)
	buf := bytes.NewBuffer(e.b)
	if err := json.Compact(buf, m); err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("json: error calling MarshalJSON for type json.RawMessage: %w", err)
		}
		e.b = append(e.b[:n], "null"...)
		return
	}
	e.b = buf.Bytes()
	if bytes.ContainsAny(e.b[n:], "<>&\u2028\u2029") {
		var h bytes.Buffer
		json.HTMLEscape(&h, e.b[n:])
		e.b = append(e.b[:n], h.Bytes()...)
	}
}

func (e *jsonEnc) labels(m map[string]string) { encodeMap(e, m, (*jsonEnc).str) }

func (e *jsonEnc) kpis(m map[string]float64) { encodeMap(e, m, (*jsonEnc).float) }

// encodeMap is encoding/json's map with string keys: null when nil, keys
// sorted, each value written by value.
func encodeMap[V any](e *jsonEnc, m map[string]V, value func(*jsonEnc, V)) {
	if m == nil {
		e.raw("null")
		return
	}
	e.b = append(e.b, '{')
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.str(k)
		e.b = append(e.b, ':')
		value(e, m[k])
	}
	e.b = append(e.b, '}')
}

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
	e.raw(`{"code":`)
	e.str(t.Code)
	e.raw(`,"message":`)
	e.str(t.Message)
	e.raw(`,"retryable":`)
	e.bool(t.Retryable)
	e.raw(`}`)
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
	e.b = append(e.b, '{')
	if len(r.Output) > 0 {
		e.raw(`"output":`)
		e.rawJSON(r.Output)
		e.b = append(e.b, ',')
	}
	if len(r.OutputBase64) > 0 {
		e.raw(`"output_base64":"`)
		e.b = base64.StdEncoding.AppendEncode(e.b, r.OutputBase64)
		e.raw(`",`)
	}
	u := &r.Usage
	e.raw(`"usage":{"cpu_seconds":`)
	e.float(u.CPUSeconds)
	e.raw(`,"memory_peak_mb":`)
	e.float(u.MemoryPeakMB)
	e.raw(`,"network_tx_bytes":`)
	e.int(u.NetworkTxBytes)
	e.raw(`,"network_rx_bytes":`)
	e.int(u.NetworkRxBytes)
	e.raw(`,"disk_io_ops":`)
	e.int(u.DiskIOOps)
	e.raw(`,"gpu_utilization":`)
	if u.GPUUtilization != nil {
		e.float(*u.GPUUtilization)
	} else {
		e.raw("null")
	}
	if u.FuelConsumed != nil {
		e.raw(`,"fuel_consumed":`)
		e.b = strconv.AppendUint(e.b, *u.FuelConsumed, 10)
	}
	e.raw(`},"kpis":`)
	e.kpis(r.KPIs)
	e.raw(`,"logs":`)
	if r.Logs == nil {
		e.raw("null")
	} else {
		e.b = append(e.b, '[')
		for i := range r.Logs {
			l := &r.Logs[i]
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.raw(`{"level":`)
			e.str(l.Level)
			e.raw(`,"msg":`)
			e.str(l.Msg)
			e.raw(`,"at":`)
			e.time(l.At)
			e.b = append(e.b, '}')
		}
		e.b = append(e.b, ']')
	}
	e.raw(`,"duration_ms":`)
	e.float(r.DurationMs)
	if r.LogsTruncated {
		e.raw(`,"logs_truncated":true`)
	}
	e.b = append(e.b, '}')
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
