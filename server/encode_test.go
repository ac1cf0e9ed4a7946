package server

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// The appended encodings are byte for byte json.Marshal's, on random values
// built to reach every branch: escapes, invalid UTF-8, zones, float
// formats, nil and empty maps and slices, omitempty, and what json.Marshal
// refuses (then the append must refuse too).
func TestEncodeSameAsJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		var v any
		switch i % 5 {
		case 0, 1:
			v = randTask(rng)
		case 2:
			tk := randTask(rng)
			v = &tk
		case 3:
			v = randEvent(rng)
		case 4:
			v = protocol.SubmitResult{TaskID: randString(rng), State: protocol.State(randString(rng)),
				Created: rng.IntN(2) == 0, SubscriptionID: pick(rng, "", randString(rng))}
		}
		want, err := json.Marshal(v)
		got, ok := appendResult([]byte("prefix"), v)
		if ok != (err == nil) {
			t.Fatalf("value %d (%T): append ok=%v, json.Marshal error %v\n%+v", i, v, ok, err, v)
		}
		if !ok {
			continue
		}
		if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("value %d (%T):\nappend: %s\njson:   %s", i, v, got, want)
		}
	}
}

// A nil *Task and a type not encoded here.
func TestEncodeOthers(t *testing.T) {
	if b, ok := appendResult(nil, (*protocol.Task)(nil)); !ok || string(b) != "null" {
		t.Fatalf("nil task: %q %v", b, ok)
	}
	if _, ok := appendResult(nil, protocol.Health{}); ok {
		t.Fatal("protocol.Health is not appended here; want ok false")
	}
	msg := encodeResult(json.RawMessage(`7`), protocol.Task{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	if !bytes.Contains(msg, []byte(`"code":-32603`)) || !bytes.Contains(msg, []byte("year outside of range")) {
		t.Fatalf("a task json.Marshal refuses: want an internal error naming the year; got %s", msg)
	}
}

func pick[T any](rng *rand.Rand, vs ...T) T { return vs[rng.IntN(len(vs))] }

var stringBits = []string{"a", "task-1", "é", "<", ">", "&", `"`, `\`, "\n", "\t", "\x00", "\x1f", "\x7f",
	"\u2028", "\u2029", "\xff", "\xe2\x80", "😀", " ", "Z", "0"}

func randString(rng *rand.Rand) string {
	n := rng.IntN(6)
	s := ""
	for range n {
		s += pick(rng, stringBits...)
	}
	return s
}

var zones = []*time.Location{time.UTC, time.FixedZone("plus", 5*3600+30*60), time.FixedZone("minus", -8*3600),
	time.FixedZone("odd", 3600+7), time.FixedZone("far", 25*3600), time.Local}

func randTime(rng *rand.Rand) time.Time {
	year := pick(rng, 2026, 1970, 1, 9999, 0, 10000, -1)
	if rng.IntN(10) != 0 {
		year = 2026
	}
	t := time.Date(year, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60),
		pick(rng, 0, 1, 120000000, 999999999, rng.IntN(1e9)), time.UTC)
	if rng.IntN(4) == 0 {
		z := zones[rng.IntN(len(zones))]
		if z.String() == "far" && rng.IntN(5) != 0 {
			z = time.UTC
		}
		t = t.In(z)
	}
	return t
}

func randTimePtr(rng *rand.Rand) *time.Time {
	if rng.IntN(2) == 0 {
		return nil
	}
	t := randTime(rng)
	return &t
}

func randFloat(rng *rand.Rand) float64 {
	f := pick(rng, 0, rng.Float64(), rng.Float64()*1e-9, rng.NormFloat64()*1e22, -rng.Float64()*1000, 12.5, 1e-6, 1e21, 5e-324)
	if rng.IntN(300) == 0 {
		f = pick(rng, math.NaN(), math.Inf(1), math.Inf(-1))
	}
	return f
}

func randStringMap(rng *rand.Rand) map[string]string {
	switch rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	m := map[string]string{}
	for range 1 + rng.IntN(4) {
		m[randString(rng)] = randString(rng)
	}
	return m
}

var outputs = []string{`{}`, `{"a":1}`, `[1, 2]`, ` {"x" : "y"} `, `"<b>&"`, `"é\u2028"`, "\"\u2028\"", `{"a":`, `not json`,
	`null`, `12.50`, `{"nested":{"deep":[true,false,null]}}`}

func randResult(rng *rand.Rand) *protocol.ExecutionResult {
	if rng.IntN(3) == 0 {
		return nil
	}
	r := &protocol.ExecutionResult{DurationMs: randFloat(rng), LogsTruncated: rng.IntN(2) == 0}
	switch rng.IntN(4) {
	case 0:
		r.Output = json.RawMessage(pick(rng, outputs...))
	case 1:
		r.OutputBase64 = []byte(randString(rng) + "x")
	case 2:
		r.Output = json.RawMessage(`{"k":"v"}`)
		r.OutputBase64 = []byte{0, 1, 2, 250}
	}
	r.Usage = protocol.ResourceUsage{CPUSeconds: randFloat(rng), MemoryPeakMB: randFloat(rng),
		NetworkTxBytes: rng.Int64N(1 << 40), NetworkRxBytes: -rng.Int64N(5), DiskIOOps: rng.Int64N(100)}
	if rng.IntN(2) == 0 {
		g := randFloat(rng)
		r.Usage.GPUUtilization = &g
	}
	if rng.IntN(2) == 0 {
		u := rng.Uint64()
		r.Usage.FuelConsumed = &u
	}
	switch rng.IntN(3) {
	case 1:
		r.KPIs = map[string]float64{}
	case 2:
		r.KPIs = map[string]float64{randString(rng): randFloat(rng), randString(rng): randFloat(rng)}
	}
	switch rng.IntN(3) {
	case 1:
		r.Logs = []protocol.LogLine{}
	case 2:
		for range 1 + rng.IntN(3) {
			r.Logs = append(r.Logs, protocol.LogLine{Level: randString(rng), Msg: randString(rng), At: randTime(rng)})
		}
	}
	return r
}

func randTaskError(rng *rand.Rand) *protocol.TaskError {
	if rng.IntN(2) == 0 {
		return nil
	}
	return &protocol.TaskError{Code: randString(rng), Message: randString(rng), Retryable: rng.IntN(2) == 0}
}

func randTask(rng *rand.Rand) protocol.Task {
	t := protocol.Task{
		TaskID: randString(rng), Agent: randString(rng), Priority: protocol.Priority(rng.IntN(7) - 1),
		State: protocol.State(pick(rng, "queued", "succeeded", randString(rng))), Attempt: rng.IntN(5) - 1,
		MaxRetries: rng.IntN(10), Labels: randStringMap(rng), CreatedAt: randTime(rng),
		StartedAt: randTimePtr(rng), FinishedAt: randTimePtr(rng), NextAttemptAt: randTimePtr(rng),
		Result: randResult(rng), Error: randTaskError(rng), TimeoutMs: rng.Int64N(1e6) - 5,
		IdempotencyKey: pick(rng, "", randString(rng)),
	}
	switch rng.IntN(3) {
	case 1:
		t.AttemptErrors = []protocol.TaskError{}
	case 2:
		for range 1 + rng.IntN(3) {
			t.AttemptErrors = append(t.AttemptErrors, protocol.TaskError{Code: randString(rng), Message: randString(rng)})
		}
	}
	return t
}

func randEvent(rng *rand.Rand) protocol.TaskEvent {
	e := protocol.TaskEvent{SubscriptionID: pick(rng, "", randString(rng)), Seq: rng.Int64N(1e9) - 3,
		TaskID: randString(rng), Agent: pick(rng, "", randString(rng)), State: protocol.State(randString(rng)),
		Attempt: rng.IntN(4), At: randTime(rng), Result: randResult(rng), Error: randTaskError(rng)}
	if rng.IntN(2) == 0 {
		p := randFloat(rng)
		e.Progress = &p
	}
	return e
}

func BenchmarkEncodeTask(b *testing.B) {
	now := time.Now().UTC()
	task := protocol.Task{TaskID: "0193f5a2-7c4e-7d3a-9c1b-2f4e5a6b7c8d", Agent: "echo", Priority: protocol.Normal,
		State: protocol.StateSucceeded, Attempt: 1, MaxRetries: 3, Labels: map[string]string{}, CreatedAt: now,
		StartedAt: &now, FinishedAt: &now, TimeoutMs: 30000,
		Result: &protocol.ExecutionResult{Output: json.RawMessage(`{}`), KPIs: map[string]float64{}, Logs: []protocol.LogLine{}, DurationMs: 0.012}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(task); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := appendResult(make([]byte, 0, 512), task); !ok {
				b.Fatal("not appended")
			}
		}
	})
}
