package client

import (
	"context"
	"encoding/json"
	"testing"
)

// BenchmarkCall is one call at a time on one connection: the round trip.
func BenchmarkCall(b *testing.B) {
	p := newPeer(b, "")
	c, err := Dial(context.Background(), p.url(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	params := map[string]any{"agent": "echo", "input": map[string]int{"n": 1}}
	var out json.RawMessage
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Call(context.Background(), "echo", params, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallParallel is many callers multiplexed on one connection, as a
// load generator drives it.
func BenchmarkCallParallel(b *testing.B) {
	p := newPeer(b, "")
	c, err := Dial(context.Background(), p.url(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var out json.RawMessage
		for pb.Next() {
			if err := c.Call(context.Background(), "echo", map[string]int{"n": 1}, &out); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// FuzzDecodeMessage: whatever a server sends, decoding returns messages or
// an error, and never panics; an id this client could have sent parses.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`[{"jsonrpc":"2.0","id":2,"error":{"code":-32001,"message":"x","data":{"reason":"x"}}}]`,
		`{"jsonrpc":"2.0","method":"task.event","params":{"seq":1}}`,
		`{"id":null,"error":{"code":-32700}}`, `[]`, `[1]`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := decodeMessage(data)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if id, ok := parseID(m.ID); ok && id == 0 {
				t.Errorf("parseID(%s) accepted 0", m.ID)
			}
		}
	})
}
