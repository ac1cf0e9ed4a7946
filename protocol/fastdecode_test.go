package protocol

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// The fast path of DecodeParams gives what json.Decoder gives: the same
// value, or the same error, on hand-written params and on random mutations
// of them (where it mostly declines). And it does not decline the params
// clients usually send.
func TestDecodeFastSameAsDecoder(t *testing.T) {
	seeds := []string{
		`{"agent":"echo","input":{}}`,
		`{"agent":"echo","input":{"prompt":"hi","n":[1,2.5,null,true]},"priority":"high","timeout_ms":30000,"max_retries":2,"labels":{"batch":"nightly","k":""},"subscribe":true,"idempotency_key":"k-1"}`,
		` { "agent" : "echo" , "input" : "x" } `,
		`{"agent":"echo","input":null}`, `{"agent":"echo","input":}`, `{"agent":"echo","Input":{}}`,
		`{"agent":"echo","priority":"urgent"}`, `{"agent":"echo","priority":""}`, `{"agent":"echo","priority":3}`,
		`{"agent":"echo","timeout_ms":1.5}`, `{"agent":"echo","timeout_ms":-1}`, `{"agent":"echo","timeout_ms":1e3}`,
		`{"agent":"echo","timeout_ms":99999999999999999999}`, `{"agent":"echo","timeout_ms":01}`, `{"agent":"echo","timeout_ms":-0}`,
		`{"agent":"echo","max_retries":3,"max_retries":4}`, `{"agent":"echo","max_retries":"3"}`,
		`{"agent":"echo","subscribe":tru}`, `{"agent":"echo","subscribe":false}`, `{"agent":"echo","subscribe":1}`,
		`{"agent":"ec\u0068o"}`, `{"agent":"écho"}`, `{"agent":"Echo"}`, `{"agent":""}`, `{}`, `{"agent":"echo"} x`,
		`{"agent":"echo",}`, `{"agent":"echo" "input":1}`, `{"agent":"echo","labels":{"a":1}}`, `{"agent":"echo","labels":{}}`,
		`{"agent":"echo","labels":null}`, `{"agent":"echo","backoff":{"initial_ms":5}}`, `{"agent":"echo","unknown":1}`,
		`{"agent":"echo","input_base64":"aGk="}`, `{"agent":"echo","input":{},"input_base64":"aGk="}`,
		`{"task_id":"0193f5a2-7c4e-7d3a-9c1b-2f4e5a6b7c8d"}`, `{"task_id":"t","timeout_ms":0}`, `{"task_id":"t","timeout_ms":-5}`,
		`{"task_id":"t","timeout_ms":null}`, `{"task_id":""}`, `{"task_id":"t","extra":true}`, `{"subscription_id":"s"}`,
		`{"subscription_id":"s","subscription_id":"u"}`, `{"task_id":"a\tb"}`, `{"task_id":"a` + "\t" + `b"}`,
	}
	targets := []func() any{
		func() any { return new(SubmitParams) }, func() any { return new(WaitParams) },
		func() any { return new(TaskIDParams) }, func() any { return new(UnsubscribeParams) },
	}
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(raw string) {
		if tr := strings.TrimSpace(raw); tr == "" || tr == "null" || tr[0] != '{' {
			return // refused before any decoding
		}
		for _, mk := range targets {
			fast, slow := mk(), mk()
			errFast := DecodeParams([]byte(raw), fast)
			errSlow := decodeStrict([]byte(strings.TrimSpace(raw)), slow)
			if errSlow == nil {
				if val, ok := slow.(Validator); ok {
					errSlow = validated(val.Validate())
				}
			}
			if !reflect.DeepEqual(fast, slow) || errText(errFast) != errText(errSlow) {
				t.Fatalf("%T from %s:\nfast %+v, %v\nslow %+v, %v", fast, raw, fast, errFast, slow, errSlow)
			}
		}
	}
	const alphabet = `{}[]":,-0123456789.e tnrufals\x"`
	for _, seed := range seeds {
		check(seed)
		for range 300 {
			b := []byte(seed)
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(b) + 1)
				switch rng.IntN(3) {
				case 0:
					if i < len(b) {
						b = append(b[:i], b[i+1:]...)
					}
				case 1:
					b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
				case 2:
					if i < len(b) {
						b[i] = alphabet[rng.IntN(len(alphabet))]
					}
				}
			}
			check(string(b))
		}
	}
	for _, raw := range []string{seeds[0], seeds[1], seeds[2]} {
		if !new(SubmitParams).decodeFast([]byte(raw)) {
			t.Errorf("the fast path declined %s", raw)
		}
	}
	if !new(WaitParams).decodeFast([]byte(`{"task_id":"t","timeout_ms":100}`)) || !new(TaskIDParams).decodeFast([]byte(`{"task_id":"t"}`)) {
		t.Error("the fast path declined task_id params")
	}
	// A target already filled in is left to json.Decoder (which keeps what
	// the params do not name).
	p := &SubmitParams{Subscribe: true}
	if p.decodeFast([]byte(`{"agent":"echo"}`)) {
		t.Error("the fast path decoded into a filled-in value")
	}
}

func validated(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	return Errorf(ErrInvalidParams, "%v", err)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A label that is not a string is refused naming its key.
func TestLabelErrorNamesTheKey(t *testing.T) {
	for _, tc := range []struct{ params, want string }{
		{`{"agent":"a","input":{},"labels":{"a":1}}`, `labels: "a": want a string; got number`},
		{`{"agent":"a","input":{},"labels":{"ok":"x","zz":[1]}}`, `labels: "zz": want a string; got array`},
		{`{"agent":"a","input":{},"labels":{"ok":"x","b":null}}`, ``},
		{`{"agent":"a","input":{},"labels":[1]}`, `labels: want an object; got array`},
	} {
		var p SubmitParams
		err := DecodeParams(json.RawMessage(tc.params), &p)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v; want no error (null reads as \"\")", tc.params, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.params, err, tc.want)
		}
	}
}
