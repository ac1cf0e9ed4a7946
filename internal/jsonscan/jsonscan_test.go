package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
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

var validSeeds = []string{``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{"a" 1}`, `{"a":}`, `{1:2}`,
	`"x"`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\u12"`, `"\x"`, "\"tab\there\"", "\"\x1f\"", "\"\xff\xfe\"", `"unterminated`,
	`0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e10`, `1E+2`, `1e`, `1e-`, `-1.25E-07`, `2.`, `1.2.3`, `+1`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `nulll`, `[true,false,null]`, `{"a":[{"b":{}}]}`,
	`{"a":1}{"b":2}`, `{"a":1} x`, "\t\n\r {\"a\" : [ 1 , 2 ] } \n", `[1 2]`, `{"a":1 "b":2}`, `[}`, `{]`, `[[[]]`,
	`{"jsonrpc":"2.0","id":1,"method":"task.submit","params":{"agent":"echo","input":{}}}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)}

// Valid says what json.Valid says.
func TestValidSameAsJSON(t *testing.T) {
	for _, s := range validSeeds {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.60q) = %v; json.Valid says %v", s, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v; json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	task := []byte(`{"jsonrpc":"2.0","id":12,"result":{"task_id":"0193f5a2-7c4e-7d3a-9c1b-2f4e5a6b7c8d","agent":"echo","priority":"normal","state":"succeeded","attempt":1,"max_retries":3,"labels":{},"created_at":"2026-11-26T03:41:23.160165827Z","started_at":"2026-11-26T03:41:23.160265827Z","finished_at":"2026-11-26T03:41:23.160365827Z","result":{"output":{},"usage":{"cpu_seconds":0.000012,"memory_peak_mb":1.0625,"network_tx_bytes":0,"network_rx_bytes":0,"disk_io_ops":0,"gpu_utilization":null},"kpis":{},"logs":[],"duration_ms":0.021},"timeout_ms":30000}}`)
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(task)))
		for b.Loop() {
			json.Valid(task)
		}
	})
	b.Run("Valid", func(b *testing.B) {
		b.SetBytes(int64(len(task)))
		for b.Loop() {
			Valid(task)
		}
	})
}

func BenchmarkMembers(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":12,"result":{"task_id":"0193f5a2-7c4e-7d3a-9c1b-2f4e5a6b7c8d","agent":"echo","priority":"normal","state":"succeeded","attempt":1,"max_retries":3,"labels":{},"created_at":"2026-11-26T03:41:23.160165827Z","started_at":"2026-11-26T03:41:23.160265827Z","finished_at":"2026-11-26T03:41:23.160365827Z","result":{"output":{},"usage":{"cpu_seconds":0.000012,"memory_peak_mb":1.0625,"network_tx_bytes":0,"network_rx_bytes":0,"disk_io_ops":0,"gpu_utilization":null},"kpis":{},"logs":[],"duration_ms":0.021},"timeout_ms":30000}}`)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		for range Members(msg) {
		}
	}
}
