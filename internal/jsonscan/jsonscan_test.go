package jsonscan

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Members and Elements read valid JSON as encoding/json does:
// the same members (the last of a repeated one), the same values.
func FuzzScanners(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"m","params":{"a":[1,{"b":"}"}]},"id":7}`,
		`{}`, `[]`, `{"a":1,"a":2}`, `{"\u0061":"\"","b":[[[]]],"c":{"d":{}}}`,
		` [ 1 , "x" , {"y":[null,true,false]} , -2.5e-3 ] `, `{"k" : "v\\" , "n": 0 }`,
		"{\"\xff\":0}",                                // invalid UTF-8 in a name reads as U+FFFD
		`{"`, `{"a"`, `{"a":`, `[1,`, `["`, `{"a":1,`, // not JSON: within bounds
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = bytes.TrimSpace(data)
		if !json.Valid(data) || len(data) == 0 {
			// Meaningless, but within bounds and finite.
			for range Members(data) {
			}
			for range Elements(data) {
			}
			return
		}
		compactOf := func(b []byte) string {
			var c bytes.Buffer
			if err := json.Compact(&c, b); err != nil {
				t.Fatalf("a scanned value is not JSON: %q", b)
			}
			return c.String()
		}
		switch data[0] {
		case '{':
			var want map[string]json.RawMessage
			if err := json.Unmarshal(data, &want); err != nil {
				return // valid JSON that encoding/json will not put in a map (invalid UTF-8 is fine, say)
			}
			got := map[string]string{}
			for k, v := range Members(data) {
				got[String(k)] = compactOf(v)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: members %v; encoding/json reads %d", data, got, len(want))
			}
			for k, v := range want {
				if got[k] != compactOf(v) {
					t.Fatalf("%s: member %q: got %s, want %s", data, k, got[k], v)
				}
			}
		case '[':
			var want []json.RawMessage
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			i := 0
			for e := range Elements(data) {
				if i >= len(want) || compactOf(e) != compactOf(want[i]) {
					t.Fatalf("%s: element %d is %s", data, i, e)
				}
				i++
			}
			if i != len(want) {
				t.Fatalf("%s: %d elements; want %d", data, i, len(want))
			}
		}
	})
}
