package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		in    string
		batch bool
		want  []string // per item: "req <id> <method> <params>" or "err <id> <code>"
		rej   int64
	}{
		{in: `{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":7}`, want: []string{`req 7 m {"a":1}`}},
		{in: `{"jsonrpc":"2.0","method":"m"}`, want: []string{`req <nil> m <nil>`}},
		{in: `{"jsonrpc":"2.0","method":"m","id":null}`, want: []string{`req null m <nil>`}},
		{in: `  {"jsonrpc" : "2.0", "method":"m", "id" : 1.0 , "params":[ 1, 2 ]}  `, want: []string{`req 1.0 m [ 1, 2 ]`}},
		{in: `{"jsonrpc":"2.0","method":"m","id":"x\"y"}`, want: []string{`req "x\"y" m <nil>`}},
		{in: `[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"},2]`, batch: true,
			want: []string{`req 1 a <nil>`, `req <nil> b <nil>`, `err null -32600`}},
		{in: `[]`, rej: -32600},
		{in: ` [ ] `, rej: -32600},
		{in: ``, rej: -32700},
		{in: `{`, rej: -32700},
		{in: `nul`, rej: -32700},
		{in: `null`, want: []string{`err null -32600`}},
		{in: `{"jsonrpc":"2.0","method":"m","id":[1]}`, want: []string{`err null -32600`}},
		{in: `{"jsonrpc":"2.0","id":3}`, want: []string{`err 3 -32600`}},
		{in: `{"jsonrpc":"2.0","method":null,"id":3}`, want: []string{`err 3 -32600`}},
		{in: `{"jsonrpc":"2.0","method":"m","params":1,"id":3}`, want: []string{`err 3 -32600`}},
		{in: `{"jsonrpc":"2.0","method":"m","result":1,"id":3}`, want: []string{`err 3 -32600`}},
		{in: `{"jsonrpc":"2.0","result":1,"id":3}`, want: []string{`err 3 -32600`}},
		// Member names with escapes, repeated members (the last counts),
		// strings holding brackets and quotes.
		{in: `{"\u006aso\u006erpc":"2.0","\u006dethod":"m","i\u0064":2}`, want: []string{`req 2 m <nil>`}},
		{in: `{"jsonrpc":"2.0","method":"a","method":"b","id":1,"id":"x"}`, want: []string{`req "x" b <nil>`}},
		{in: `{"jsonrpc":"2.0","method":"m\"}{","params":{"s":"}]\\\"[{","n":[{"a":[]},-1.5e3,true,null]},"id":-0.5}`,
			want: []string{`req -0.5 m"}{ {"s":"}]\\\"[{","n":[{"a":[]},-1.5e3,true,null]}`}},
		{in: "\t[ {\"jsonrpc\":\"2.0\",\"method\":\"a\" ,\"id\":1 } ,\n {\"jsonrpc\":\"2.0\",\"method\":\"b\",\"params\":[[],{}]} ]\r\n", batch: true,
			want: []string{`req 1 a <nil>`, `req <nil> b [[],{}]`}},
		{in: `{"jsonrpc":"2.0","method":"m","x":1,"\u0079":2,"x":3,"id":4}`, want: []string{`err 4 -32600`}},
	} {
		in := parseMessage([]byte(tc.in))
		if tc.rej != 0 {
			if in.reject == nil || in.reject.Code != tc.rej || len(in.items) != 0 {
				t.Errorf("%s: got %+v; want one %d", tc.in, in, tc.rej)
			}
			continue
		}
		if in.reject != nil || in.batch != tc.batch {
			t.Errorf("%s: reject %v, batch %v", tc.in, in.reject, in.batch)
			continue
		}
		var got []string
		for _, it := range in.items {
			id := "<nil>"
			if it.req.ID != nil {
				id = string(it.req.ID)
			}
			if it.err != nil {
				got = append(got, "err "+id+" "+itoa(it.err.Code))
				continue
			}
			p := "<nil>"
			if it.req.Params != nil {
				p = string(it.req.Params)
			}
			got = append(got, "req "+id+" "+it.req.Method+" "+p)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzParseMessage: any input gives replies that are valid JSON-RPC, and
// the ids of well-formed requests come back byte for byte.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":7}`,
		`[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"},2]`,
		`{"jsonrpc":"2.0","method":"m","id":123456789012345678901234567890.5e-3}`,
		`[]`, `{`, `"x"`, `{"jsonrpc":"2.0","method":"m","id":{"a":[]}}`, `{"id":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := parseMessage(data)
		if in.reject != nil {
			if len(in.items) != 0 {
				t.Fatal("a rejected message with items")
			}
			checkReply(t, encodeError(nullID, in.reject))
			return
		}
		if len(in.items) == 0 {
			t.Fatal("no items and no rejection")
		}
		for _, it := range in.items {
			if it.err != nil {
				checkReply(t, encodeError(it.req.ID, it.err))
				continue
			}
			if it.req.ID != nil {
				reply := encodeResult(it.req.ID, nil)
				checkReply(t, reply)
				var r struct {
					ID json.RawMessage `json:"id"`
				}
				json.Unmarshal(reply, &r)
				if !bytes.Equal(r.ID, it.req.ID) {
					t.Fatalf("id %s echoed as %s", it.req.ID, r.ID)
				}
			}
		}
	})
}

func checkReply(t *testing.T, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("reply is not JSON: %s", b)
	}
	var r map[string]json.RawMessage
	if err := json.Unmarshal(b, &r); err != nil || string(r["jsonrpc"]) != `"2.0"` {
		t.Fatalf("reply %s", b)
	}
	if _, ok := r["id"]; !ok {
		t.Fatalf("reply without id: %s", b)
	}
	_, hasResult := r["result"]
	_, hasError := r["error"]
	if hasResult == hasError {
		t.Fatalf("reply must have exactly one of result and error: %s", b)
	}
}

// FuzzFrameReader: the reader never panics, never returns a message over
// the limit, and always ends.
func FuzzFrameReader(f *testing.F) {
	for _, s := range []string{
		"{\"a\":1}\n[1]\n", "Content-Length: 2\r\n\r\n{}", "Content-Length: 99999999999\r\n\r\n",
		"garbage\n{}\n", "content-length:1\n\nx", "\r\n\r\n", "Content-Length: 5\r\n\r\n{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), 64)
		for i := 0; i <= len(data)+1; i++ {
			m, err := fr.next()
			var fe *frameError
			if errors.As(err, &fe) {
				continue
			}
			if err != nil {
				return
			}
			if len(m) > 64 {
				t.Fatalf("a message of %d bytes passed a limit of 64", len(m))
			}
		}
		t.Fatal("the reader did not end")
	})
}

// BenchmarkEncodeResult: a finished task as task.wait answers it, in the
// envelope written around the encoded result (encodeResult) and, beside it,
// encoded as a response struct holding the result as json.RawMessage, which
// encoding/json scans and copies once more.
func BenchmarkEncodeResult(b *testing.B) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	started, finished := at.Add(time.Millisecond), at.Add(3*time.Millisecond)
	task := protocol.Task{
		TaskID: "0b8e6a0e-6f5c-4d1e-9f57-6a3c1b2d9e11", Agent: "echo", Priority: protocol.High,
		State: protocol.StateSucceeded, Attempt: 1, MaxRetries: 2, Labels: map[string]string{"batch": "nightly"},
		CreatedAt: at, StartedAt: &started, FinishedAt: &finished, TimeoutMs: 30000,
		Result: &protocol.ExecutionResult{
			Output:     json.RawMessage(`{"prompt":"summarise the attached report","n":42}`),
			Usage:      protocol.ResourceUsage{CPUSeconds: 0.000021, MemoryPeakMB: 0.0625},
			KPIs:       map[string]float64{},
			Logs:       []protocol.LogLine{{Level: "info", Msg: "echoing", At: started}},
			DurationMs: 0.042,
		},
	}
	id := json.RawMessage(`"w-12345"`)
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeResult(id, task)
		}
	})
	b.Run("marshal-twice", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := json.Marshal(task)
			mustMarshal(response{JSONRPC: "2.0", ID: id, Result: r})
		}
	})
	if a, c := string(encodeResult(id, task)), string(mustMarshal(response{JSONRPC: "2.0", ID: id, Result: mustMarshal(task)})); a != c {
		b.Fatalf("the envelope differs:\n%s\n%s", a, c)
	}
}
