package protocol_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// The wire types' decode and encode, on the path every task takes: the
// server decodes task.submit's params strictly (DecodeParams: unknown
// fields refused, then Validate) and encodes the Task that task.wait
// answers and the TaskEvents that subscriptions stream; a client does the
// reverse. json.Unmarshal of the same params is the baseline DecodeParams
// is compared with.
//
//	go test ./protocol -run '^$' -bench . -benchmem

// submitParams are task.submit's params as a client sends them: a small
// JSON input, or one of 4 KiB, with the usual optional fields.
func submitParams(inputBytes int) []byte {
	input := `{"prompt":"summarise the attached report","n":42}`
	if inputBytes > 0 {
		input = `"` + strings.Repeat("x", inputBytes-2) + `"`
	}
	return []byte(`{"agent":"echo","input":` + input + `,"priority":"high","timeout_ms":30000,` +
		`"max_retries":2,"labels":{"batch":"nightly"},"subscribe":true}`)
}

var inputSizes = []struct {
	name  string
	bytes int
}{{"small", 0}, {"4KiB", 4096}}

func BenchmarkDecodeSubmitParams(b *testing.B) {
	for _, in := range inputSizes {
		raw := submitParams(in.bytes)
		b.Run(in.name+"/DecodeParams", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var p protocol.SubmitParams
				if err := protocol.DecodeParams(raw, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/Unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var p protocol.SubmitParams
				if err := json.Unmarshal(raw, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeSubmitParams(b *testing.B) {
	var p protocol.SubmitParams
	if err := protocol.DecodeParams(submitParams(0), &p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&p); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTask is a finished task as task.wait answers it: an output that is
// JSON (kept raw, so it is validated again when encoded), usage, a log line.
func benchTask(outputBytes int) protocol.Task {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	started, finished := at.Add(time.Millisecond), at.Add(3*time.Millisecond)
	out := `{"prompt":"summarise the attached report","n":42}`
	if outputBytes > 0 {
		out = `"` + strings.Repeat("x", outputBytes-2) + `"`
	}
	return protocol.Task{
		TaskID: "0b8e6a0e-6f5c-4d1e-9f57-6a3c1b2d9e11", Agent: "echo", Priority: protocol.High,
		State: protocol.StateSucceeded, Attempt: 1, MaxRetries: 2, Labels: map[string]string{"batch": "nightly"},
		CreatedAt: at, StartedAt: &started, FinishedAt: &finished, TimeoutMs: 30000,
		Result: &protocol.ExecutionResult{
			Output:     json.RawMessage(out),
			Usage:      protocol.ResourceUsage{CPUSeconds: 0.000021, MemoryPeakMB: 0.0625},
			KPIs:       map[string]float64{},
			Logs:       []protocol.LogLine{{Level: "info", Msg: "echoing", At: started}},
			DurationMs: 0.042,
		},
	}
}

func BenchmarkTask(b *testing.B) {
	for _, in := range inputSizes {
		task := benchTask(in.bytes)
		raw, err := json.Marshal(task)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(in.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := json.Marshal(&task); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var t protocol.Task
				if err := json.Unmarshal(raw, &t); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTaskEvent(b *testing.B) {
	task := benchTask(0)
	progress := 0.5
	for _, ev := range []struct {
		name string
		ev   protocol.TaskEvent
	}{
		{"running", protocol.TaskEvent{SubscriptionID: "5c9e2f0a-7b1d-4c3e-8a6f-2d4b9e1c7a30", Seq: 123456, TaskID: task.TaskID,
			Agent: "echo", State: protocol.StateRunning, Attempt: 1, At: task.CreatedAt, Progress: &progress}},
		{"succeeded", protocol.TaskEvent{SubscriptionID: "5c9e2f0a-7b1d-4c3e-8a6f-2d4b9e1c7a30", Seq: 123457, TaskID: task.TaskID,
			Agent: "echo", State: protocol.StateSucceeded, Attempt: 1, At: *task.FinishedAt, Result: task.Result}},
	} {
		raw, err := json.Marshal(ev.ev)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(ev.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := json.Marshal(&ev.ev); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(ev.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var e protocol.TaskEvent
				if err := json.Unmarshal(raw, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
