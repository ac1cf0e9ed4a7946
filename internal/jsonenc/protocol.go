package jsonenc

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/chimera-fabric/fabric/internal/jsonscan"
	"github.com/chimera-fabric/fabric/protocol"
)

// The protocol's values that both the server's answers and the store's rows
// hold, encoded as json.Marshal encodes them.

// AppendExecutionResult appends r as json.Marshal encodes it; false where
// json.Marshal fails (a NaN or infinite figure, a time outside RFC 3339,
// an output that is not JSON).
func AppendExecutionResult(b []byte, r *protocol.ExecutionResult) (_ []byte, ok bool) {
	b = append(b, '{')
	comma := false
	if len(r.Output) > 0 {
		b = append(b, `"output":`...)
		if b, ok = AppendRaw(b, r.Output); !ok {
			return b, false
		}
		comma = true
	}
	if len(r.OutputBase64) > 0 {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `"output_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.OutputBase64)
		b = append(b, '"')
		comma = true
	}
	if comma {
		b = append(b, ',')
	}
	u := &r.Usage
	b = append(b, `"usage":{"cpu_seconds":`...)
	if b, ok = AppendFloat(b, u.CPUSeconds); !ok {
		return b, false
	}
	b = append(b, `,"memory_peak_mb":`...)
	if b, ok = AppendFloat(b, u.MemoryPeakMB); !ok {
		return b, false
	}
	b = append(b, `,"network_tx_bytes":`...)
	b = strconv.AppendInt(b, u.NetworkTxBytes, 10)
	b = append(b, `,"network_rx_bytes":`...)
	b = strconv.AppendInt(b, u.NetworkRxBytes, 10)
	b = append(b, `,"disk_io_ops":`...)
	b = strconv.AppendInt(b, u.DiskIOOps, 10)
	b = append(b, `,"gpu_utilization":`...)
	if u.GPUUtilization == nil {
		b = append(b, "null"...)
	} else if b, ok = AppendFloat(b, *u.GPUUtilization); !ok {
		return b, false
	}
	if u.FuelConsumed != nil {
		b = append(b, `,"fuel_consumed":`...)
		b = strconv.AppendUint(b, *u.FuelConsumed, 10)
	}
	b = append(b, `},"kpis":`...)
	if r.KPIs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, k := range sortedKeys(r.KPIs) {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, k)
			b = append(b, ':')
			if b, ok = AppendFloat(b, r.KPIs[k]); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"logs":`...)
	if r.Logs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Logs {
			l := &r.Logs[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"level":`...)
			b = AppendString(b, l.Level)
			b = append(b, `,"msg":`...)
			b = AppendString(b, l.Msg)
			b = append(b, `,"at":`...)
			if b, ok = AppendTime(b, l.At); !ok {
				return b, false
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"duration_ms":`...)
	if b, ok = AppendFloat(b, r.DurationMs); !ok {
		return b, false
	}
	if r.LogsTruncated {
		b = append(b, `,"logs_truncated":true`...)
	}
	return append(b, '}'), true
}

// AppendTaskError appends e as json.Marshal encodes it.
func AppendTaskError(b []byte, e *protocol.TaskError) []byte {
	b = append(b, `{"code":`...)
	b = AppendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = AppendString(b, e.Message)
	b = append(b, `,"retryable":`...)
	b = strconv.AppendBool(b, e.Retryable)
	return append(b, '}')
}

// AppendStringMap appends m as json.Marshal encodes it: null when nil,
// keys sorted.
func AppendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, k)
		b = append(b, ':')
		b = AppendString(b, m[k])
	}
	return append(b, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AppendRaw appends a json.RawMessage as json.Marshal does (compacted, HTML
// characters escaped): as it is when it is valid JSON with nothing to
// compact or escape, the usual case; through json.Marshal otherwise.
func AppendRaw(b []byte, raw json.RawMessage) (_ []byte, ok bool) {
	plain := true
	for _, c := range raw {
		if c <= ' ' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain && jsonscan.Valid(raw) {
		return append(b, raw...), true
	}
	enc, err := json.Marshal(raw)
	if err != nil {
		return b, false
	}
	return append(b, enc...), true
}
