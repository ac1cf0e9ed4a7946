package protocol

import (
	"encoding/json"
	"strconv"

	"github.com/chimera-fabric/fabric/internal/jsonscan"
)

// The params every task sends (task.submit, task.wait, task.get,
// unsubscribe) are decoded by DecodeParams without json.Decoder when they
// are written the way clients write them: json.Decoder copies its input
// into a buffer of its own and decodes through reflection, 1.3x
// json.Unmarshal, ~10 µs for a small task.submit.
//
// The fast path accepts only a strict subset of JSON it checks entirely
// itself: an object of members named exactly like the fields, strings
// without escapes and only printable ASCII, integers without fraction or
// exponent, true and false, and (for input) any value json.Valid accepts.
// For such text its result is the one json.Decoder gives (into a zero
// value). Anything else (an escape, a null, a key in other case, a field it
// does not decode, a value out of range, trailing text, a value already
// filled in) makes it decline, leaving the target untouched, and the
// decoding, with its errors, to json.Decoder as before.
type fastDecoder interface {
	decodeFast(raw []byte) bool
}

// fastScan reads the subset of JSON above; any method's false means "not
// in the subset", not "invalid".
type fastScan struct {
	b []byte
	i int
}

func (s *fastScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// members calls member for each key (its text, without the quotes) with
// the scanner at the value; member consumes the value.
func (s *fastScan) members(member func(key []byte) bool) bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		key, ok := s.plain()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if !member(key) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
			continue
		case '}':
			s.i++
			return true
		}
		return false
	}
}

// end: only whitespace after the top-level object.
func (s *fastScan) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// plain reads a string of printable ASCII without escapes.
func (s *fastScan) plain() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], true
		case c < ' ' || c == '\\' || c > '~':
			return nil, false
		}
	}
	return nil, false
}

func (s *fastScan) str() (string, bool) {
	q, ok := s.plain()
	return string(q), ok
}

// integer reads an integer of bits bits: -?(0|[1-9][0-9]*), in range.
func (s *fastScan) integer(bits int) (int64, bool) {
	start, j := s.i, s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	digits := j
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		j++
	}
	if j == digits || (s.b[digits] == '0' && j-digits > 1) {
		return 0, false
	}
	if j < len(s.b) {
		switch s.b[j] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(s.b[start:j]), 10, bits)
	if err != nil {
		return 0, false
	}
	s.i = j
	return n, true
}

func (s *fastScan) boolean() (bool, bool) {
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// raw reads any valid JSON value but null, and returns a copy of its text.
func (s *fastScan) raw() (json.RawMessage, bool) {
	if s.i >= len(s.b) || s.b[s.i] == 'n' {
		return nil, false
	}
	j := jsonscan.Skip(s.b, s.i)
	v := s.b[s.i:j]
	if !jsonscan.Valid(v) {
		return nil, false
	}
	s.i = j
	return append(json.RawMessage(nil), v...), true
}

// labels reads an object of plain strings.
func (s *fastScan) labels() (map[string]string, bool) {
	m := map[string]string{}
	ok := s.members(func(key []byte) bool {
		v, ok := s.str()
		m[string(key)] = v
		return ok
	})
	return m, ok
}

func (p *SubmitParams) decodeFast(raw []byte) bool {
	if p.Agent != "" || p.Input != nil || p.InputBase64 != nil || p.Priority != nil || p.TimeoutMs != 0 ||
		p.MaxRetries != nil || p.Backoff != nil || p.Quota != nil || p.IdempotencyKey != "" || p.Labels != nil || p.Subscribe {
		return false
	}
	var q SubmitParams
	s := fastScan{b: raw}
	ok := s.members(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "agent":
			q.Agent, ok = s.str()
		case "input":
			q.Input, ok = s.raw()
		case "priority":
			var name string
			if name, ok = s.str(); ok {
				pr, err := ParsePriority(name)
				if ok = err == nil; ok {
					q.Priority = &pr
				}
			}
		case "timeout_ms":
			q.TimeoutMs, ok = s.integer(64)
		case "max_retries":
			var n int64
			if n, ok = s.integer(strconv.IntSize); ok {
				m := int(n)
				q.MaxRetries = &m
			}
		case "idempotency_key":
			q.IdempotencyKey, ok = s.str()
		case "labels":
			q.Labels, ok = s.labels()
		case "subscribe":
			q.Subscribe, ok = s.boolean()
		}
		return ok
	}) && s.end()
	if ok {
		*p = q
	}
	return ok
}

func (p *WaitParams) decodeFast(raw []byte) bool {
	if *p != (WaitParams{}) {
		return false
	}
	var q WaitParams
	s := fastScan{b: raw}
	ok := s.members(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "task_id":
			q.TaskID, ok = s.str()
		case "timeout_ms":
			var n int64
			if n, ok = s.integer(64); ok {
				q.TimeoutMs = &n
			}
		}
		return ok
	}) && s.end()
	if ok {
		*p = q
	}
	return ok
}

func (p *TaskIDParams) decodeFast(raw []byte) bool {
	return decodeOneString(raw, "task_id", &p.TaskID)
}

func (p *UnsubscribeParams) decodeFast(raw []byte) bool {
	return decodeOneString(raw, "subscription_id", &p.SubscriptionID)
}

// decodeOneString decodes params whose one field is the string named name.
func decodeOneString(raw []byte, name string, field *string) bool {
	if *field != "" {
		return false
	}
	var v string
	s := fastScan{b: raw}
	ok := s.members(func(key []byte) bool {
		if string(key) != name {
			return false
		}
		var ok bool
		v, ok = s.str()
		return ok
	}) && s.end()
	if ok {
		*field = v
	}
	return ok
}
