package store

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// The encoders of encode.go must write what encoding/json writes, byte for
// byte, and fail where it fails.

var trickyStrings = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnew\nline\rret\bbs\fff",
	"\x00\x01\x1f\x7f", "héllo wörld ✓ 日本", "\u2028 and \u2029", "bad utf8 \xff\xfe end", "\xe2\x80", "😀 emoji",
}

var trickyFloats = []float64{0, -0.0, 1, -1, 0.5, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 1.5e21, 123456789.123, math.MaxFloat64,
	math.SmallestNonzeroFloat64, 3.14159, -2.5e-9, 1e-300}

func sameAsJSON(t *testing.T, what string, v any, fn func(e *jsonEnc)) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, gotErr := encodeWith(fn)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("%s: encoding/json error %v, ours %v", what, wantErr, gotErr)
	}
	if wantErr == nil && got != string(want) {
		t.Fatalf("%s:\n ours %s\n json %s", what, got, want)
	}
}

func randString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return trickyStrings[r.IntN(len(trickyStrings))]
	}
	b := make([]byte, r.IntN(12))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return string(b)
}

func randFloat(r *rand.Rand) float64 {
	if r.IntN(2) == 0 {
		return trickyFloats[r.IntN(len(trickyFloats))]
	}
	return (r.Float64() - 0.5) * math.Pow(10, float64(r.IntN(50)-25))
}

func randTime(r *rand.Rand) time.Time {
	t := time.Unix(r.Int64N(4e9), r.Int64N(1e9))
	switch r.IntN(3) {
	case 0:
		return t.UTC()
	case 1:
		return t.In(time.FixedZone("x", 3600*5+1800))
	}
	return t
}

func randResult(r *rand.Rand) *protocol.ExecutionResult {
	res := &protocol.ExecutionResult{DurationMs: randFloat(r), LogsTruncated: r.IntN(2) == 0}
	switch r.IntN(4) {
	case 0:
		res.Output = json.RawMessage(`{"a": [1, 2, "<x>"],  "b": "\u2028"}`)
	case 1:
		res.Output = json.RawMessage(`"` + "plain" + `"`)
	case 2:
		res.OutputBase64 = []byte(randString(r))
	}
	res.Usage = protocol.ResourceUsage{CPUSeconds: randFloat(r), MemoryPeakMB: randFloat(r), NetworkTxBytes: r.Int64(),
		NetworkRxBytes: -r.Int64N(5), DiskIOOps: r.Int64N(9)}
	if r.IntN(2) == 0 {
		g := randFloat(r)
		res.Usage.GPUUtilization = &g
	}
	if r.IntN(2) == 0 {
		f := r.Uint64()
		res.Usage.FuelConsumed = &f
	}
	if r.IntN(4) > 0 {
		res.KPIs = map[string]float64{}
		for range r.IntN(4) {
			res.KPIs[randString(r)] = randFloat(r)
		}
	}
	if r.IntN(4) > 0 {
		res.Logs = []protocol.LogLine{}
		for range r.IntN(3) {
			res.Logs = append(res.Logs, protocol.LogLine{Level: randString(r), Msg: randString(r), At: randTime(r)})
		}
	}
	return res
}

func TestEncodersMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var labels map[string]string
		if i%7 != 0 {
			labels = map[string]string{}
			for range r.IntN(5) {
				labels[randString(r)] = randString(r)
			}
		}
		sameAsJSON(t, "labels", labels, func(e *jsonEnc) { e.labels(labels) })

		b := protocol.Backoff{InitialMs: r.Int64N(1e6) - 5, MaxMs: r.Int64(), Multiplier: randFloat(r), Jitter: randFloat(r)}
		sameAsJSON(t, "backoff", b, func(e *jsonEnc) { e.backoff(&b) })

		q := protocol.Quota{}
		if r.IntN(2) == 0 {
			q.MemoryMB = r.Int64N(2048)
		}
		if r.IntN(2) == 0 {
			q.OutputBytes = r.Int64()
		}
		if r.IntN(2) == 0 {
			f := r.Uint64()
			q.Fuel = &f
		}
		sameAsJSON(t, "quota", q, func(e *jsonEnc) { e.quota(&q) })

		te := &protocol.TaskError{Code: randString(r), Message: randString(r), Retryable: r.IntN(2) == 0}
		sameAsJSON(t, "error", te, func(e *jsonEnc) { e.taskError(te) })
		tes := []protocol.TaskError{*te, {Code: "x"}}[:r.IntN(3)]
		sameAsJSON(t, "attempt errors", tes, func(e *jsonEnc) { e.taskErrors(tes) })

		res := randResult(r)
		sameAsJSON(t, "result", res, func(e *jsonEnc) { e.result(res) })

		ev := protocol.TaskEvent{State: protocol.States[r.IntN(len(protocol.States))], Attempt: r.IntN(5), At: randTime(r)}
		if r.IntN(3) == 0 {
			p := randFloat(r)
			ev.Progress = &p
		}
		if r.IntN(2) == 0 {
			ev.Result = res
		}
		if r.IntN(3) == 0 {
			ev.Error = te
		}
		p := eventPayload{State: ev.State, Attempt: ev.Attempt, At: ev.At, Progress: ev.Progress, Result: ev.Result, Error: ev.Error}
		sameAsJSON(t, "event", p, func(e *jsonEnc) { e.event(&ev) })
	}
}

func TestEncodersFailWhereEncodingJSONFails(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		b := protocol.Backoff{Multiplier: f}
		sameAsJSON(t, "backoff", b, func(e *jsonEnc) { e.backoff(&b) })
		res := &protocol.ExecutionResult{KPIs: map[string]float64{"k": f}}
		sameAsJSON(t, "kpis", res, func(e *jsonEnc) { e.result(res) })
	}
	bad := &protocol.ExecutionResult{Output: json.RawMessage(`{"a":`)}
	sameAsJSON(t, "invalid output", bad, func(e *jsonEnc) { e.result(bad) })
	ev := protocol.TaskEvent{State: protocol.StateQueued, At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := eventPayload{State: ev.State, At: ev.At}
	sameAsJSON(t, "year 10000", p, func(e *jsonEnc) { e.event(&ev) })
}

func BenchmarkEncodeResult(b *testing.B) {
	res := &protocol.ExecutionResult{Output: json.RawMessage(`{}`), KPIs: map[string]float64{}, Logs: []protocol.LogLine{}, DurationMs: 0.123}
	b.Run("ours", func(b *testing.B) {
		for b.Loop() {
			encodeWith(func(e *jsonEnc) { e.result(res) })
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(res)
		}
	})
}
