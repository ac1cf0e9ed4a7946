package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Validator is implemented by params types that check themselves.
type Validator interface {
	Validate() error
}

// DecodeParams decodes a request's params into v strictly: params must be an
// object (absent or null counts as {}), unknown fields are refused, and types
// must match. Then, if v is a Validator, it is validated. Every error is an
// ErrInvalidParams naming the field and what was expected.
func DecodeParams(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return Errorf(ErrInvalidParams, "params: want an object of named parameters; got %s", jsonKind(raw))
	}
	if f, ok := v.(fastDecoder); !ok || !f.decodeFast(raw) {
		if err := decodeStrict(raw, v); err != nil {
			return err
		}
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				return err
			}
			return Errorf(ErrInvalidParams, "%v", err)
		}
	}
	return nil
}

// decodeStrict is DecodeParams' decoding by json.Decoder, which refuses
// unknown fields and names what was wrong.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "labels" {
			// encoding/json names the map, not the key: find it.
			if key, ok := badLabel(raw); ok {
				return Errorf(ErrInvalidParams, "labels: %q: want a string; got %s", key, te.Value)
			}
		}
		return paramsError(err)
	}
	return nil
}

// badLabel returns a key of the labels object in raw whose value is not a
// string (the first in key order), if there is one.
func badLabel(raw []byte) (string, bool) {
	var p struct {
		Labels map[string]json.RawMessage `json:"labels"`
	}
	if json.Unmarshal(raw, &p) != nil {
		return "", false
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		if v := bytes.TrimSpace(p.Labels[k]); len(v) == 0 || v[0] != '"' {
			return k, true
		}
	}
	return "", false
}

func paramsError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var be base64.CorruptInputError
	msg := err.Error()
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "params"
		}
		return Errorf(ErrInvalidParams, "%s: want %s; got %s", field, kindName(te.Type.String()), te.Value)
	case errors.As(err, &se):
		return Errorf(ErrInvalidParams, "params: malformed JSON at offset %d", se.Offset)
	case errors.As(err, &be):
		return Errorf(ErrInvalidParams, "want standard base64; illegal data at byte %d", int64(be))
	case strings.HasPrefix(msg, "json: unknown field "):
		return Errorf(ErrInvalidParams, "%s: unknown parameter", strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`))
	}
	// Errors returned by our own UnmarshalJSON methods (priority) arrive here
	// wrapped by encoding/json without the field; say which ones can.
	if strings.Contains(msg, "critical, high, normal") {
		return Errorf(ErrInvalidParams, "priority: %s", msg)
	}
	return Errorf(ErrInvalidParams, "%s", msg)
}

func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string", goType == "protocol.State":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "[]uint8"):
		return "a base64 string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "protocol."), strings.HasPrefix(goType, "struct"):
		return "an object"
	}
	return goType
}

func jsonKind(raw []byte) string {
	switch raw[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func invalid(format string, args ...any) error {
	return Errorf(ErrInvalidParams, format, args...)
}

func checkName(field, s string) error {
	if s == "" {
		return invalid("%s: required", field)
	}
	if !nameOK(s) {
		return invalid("%s: want [a-z0-9][a-z0-9._-]{0,62}; got %q", field, s)
	}
	return nil
}

func (p *RegisterParams) Validate() error {
	if err := checkName("name", p.Name); err != nil {
		return err
	}
	if len(p.Wasm) == 0 {
		return invalid("wasm: required (the module's bytes, base64)")
	}
	switch p.ABI {
	case "", ABIWasiCommand, ABIFabricV1:
	default:
		return invalid("abi: want %q or %q; got %q", ABIWasiCommand, ABIFabricV1, p.ABI)
	}
	if len(p.Entry) > 255 {
		return invalid("entry: at most 255 bytes")
	}
	if p.ReuseInstances && p.ABI == ABIWasiCommand {
		return invalid("reuse_instances: want a %s agent; a %s's _start runs once per instance", ABIFabricV1, ABIWasiCommand)
	}
	seen := map[string]bool{}
	for _, c := range p.Capabilities {
		if c != CapClock && c != CapRandom {
			return invalid("capabilities: want %q or %q; got %q", CapClock, CapRandom, c)
		}
		if seen[c] {
			return invalid("capabilities: %q named twice", c)
		}
		seen[c] = true
	}
	if p.Limits != nil {
		if err := p.Limits.validate("limits"); err != nil {
			return err
		}
	}
	return nil
}

func (l *Limits) validate(field string) error {
	switch {
	case l.MemoryMB < 0:
		return invalid("%s.memory_mb: want >= 0; got %d", field, l.MemoryMB)
	case l.OutputBytes < 0:
		return invalid("%s.output_bytes: want >= 0; got %d", field, l.OutputBytes)
	case l.TimeoutMs < 0:
		return invalid("%s.timeout_ms: want >= 0; got %d", field, l.TimeoutMs)
	case l.LogBytes < 0:
		return invalid("%s.log_bytes: want >= 0; got %d", field, l.LogBytes)
	}
	return nil
}

func (p *NameParams) Validate() error { return checkName("name", p.Name) }

func (p *StatsParams) Validate() error {
	if p.Name == "" {
		return nil
	}
	return checkName("name", p.Name)
}

func (p *SubmitParams) Validate() error {
	if err := checkName("agent", p.Agent); err != nil {
		return err
	}
	if len(p.Input) > 0 && len(p.InputBase64) > 0 {
		return invalid("input, input_base64: give at most one of the two")
	}
	if p.TimeoutMs < 0 {
		return invalid("timeout_ms: want > 0; got %d", p.TimeoutMs)
	}
	if p.MaxRetries != nil && (*p.MaxRetries < 0 || *p.MaxRetries > MaxRetriesCeiling) {
		return invalid("max_retries: want 0..%d; got %d", MaxRetriesCeiling, *p.MaxRetries)
	}
	if b := p.Backoff; b != nil {
		switch {
		case b.InitialMs < 0:
			return invalid("backoff.initial_ms: want >= 0; got %d", b.InitialMs)
		case b.MaxMs < 0:
			return invalid("backoff.max_ms: want >= 0; got %d", b.MaxMs)
		case b.MaxMs != 0 && b.MaxMs < b.InitialMs:
			return invalid("backoff.max_ms: want >= initial_ms (%d); got %d", b.InitialMs, b.MaxMs)
		case b.Multiplier != 0 && (b.Multiplier < 1 || b.Multiplier > 100 || math.IsNaN(b.Multiplier)):
			return invalid("backoff.multiplier: want 1..100; got %v", b.Multiplier)
		case b.Jitter < 0 || b.Jitter > 1 || math.IsNaN(b.Jitter):
			return invalid("backoff.jitter: want 0..1; got %v", b.Jitter)
		}
	}
	if q := p.Quota; q != nil {
		if q.MemoryMB < 0 {
			return invalid("quota.memory_mb: want >= 0; got %d", q.MemoryMB)
		}
		if q.OutputBytes < 0 {
			return invalid("quota.output_bytes: want >= 0; got %d", q.OutputBytes)
		}
	}
	if len(p.IdempotencyKey) > MaxIdempotencyKey {
		return invalid("idempotency_key: at most %d bytes; got %d", MaxIdempotencyKey, len(p.IdempotencyKey))
	}
	if len(p.Labels) > MaxLabels {
		return invalid("labels: at most %d; got %d", MaxLabels, len(p.Labels))
	}
	for k, v := range p.Labels {
		if k == "" || len(k) > MaxLabelBytes || strings.ContainsRune(k, '=') {
			return invalid("labels: key %q: want 1..%d bytes without '='", k, MaxLabelBytes)
		}
		if len(v) > MaxLabelBytes {
			return invalid("labels.%s: at most %d bytes", k, MaxLabelBytes)
		}
	}
	return nil
}

// EffectiveBackoff fills the zero fields of p.Backoff from DefaultBackoff.
func (p *SubmitParams) EffectiveBackoff() Backoff {
	b := DefaultBackoff
	if p.Backoff == nil {
		return b
	}
	o := *p.Backoff
	if o.InitialMs != 0 {
		b.InitialMs = o.InitialMs
	}
	if o.MaxMs != 0 {
		b.MaxMs = o.MaxMs
	} else if b.MaxMs < b.InitialMs {
		b.MaxMs = b.InitialMs
	}
	if o.Multiplier != 0 {
		b.Multiplier = o.Multiplier
	}
	b.Jitter = o.Jitter
	return b
}

func checkTaskID(id string) error {
	if id == "" {
		return invalid("task_id: required")
	}
	if len(id) > 128 {
		return invalid("task_id: at most 128 bytes")
	}
	return nil
}

func (p *TaskIDParams) Validate() error { return checkTaskID(p.TaskID) }

func (p *WaitParams) Validate() error {
	if err := checkTaskID(p.TaskID); err != nil {
		return err
	}
	if p.TimeoutMs != nil && (*p.TimeoutMs < 0 || *p.TimeoutMs > MaxWaitTimeout.Milliseconds()) {
		return invalid("timeout_ms: want 0..%d; got %d", MaxWaitTimeout.Milliseconds(), *p.TimeoutMs)
	}
	return nil
}

func (p *ListParams) Validate() error {
	if p.State != "" && !p.State.Valid() {
		return invalid("state: want one of queued, running, retrying, succeeded, failed, cancelled; got %q", p.State)
	}
	if p.Agent != "" {
		if err := checkName("agent", p.Agent); err != nil {
			return err
		}
	}
	if p.Limit < 0 || p.Limit > MaxListLimit {
		return invalid("limit: want 1..%d; got %d", MaxListLimit, p.Limit)
	}
	if len(p.Cursor) > 512 {
		return invalid("cursor: not a cursor this server gave")
	}
	return nil
}

func (p *SubscribeParams) Validate() error {
	if len(p.TaskIDs) > MaxSubscribeIDs {
		return invalid("task_ids: at most %d; got %d", MaxSubscribeIDs, len(p.TaskIDs))
	}
	for i, id := range p.TaskIDs {
		if err := checkTaskID(id); err != nil {
			return invalid("task_ids[%d]: %v", i, err.(*Error).Data["reason"])
		}
	}
	if p.Agent != "" {
		if err := checkName("agent", p.Agent); err != nil {
			return err
		}
	}
	if p.AfterSeq != nil && *p.AfterSeq < 0 {
		return invalid("after_seq: want >= 0; got %d", *p.AfterSeq)
	}
	return nil
}

func (p *UnsubscribeParams) Validate() error {
	if p.SubscriptionID == "" {
		return invalid("subscription_id: required")
	}
	return nil
}

func (p *KPISubscribeParams) Validate() error {
	if p.IntervalMs < MinKPIIntervalMs || p.IntervalMs > MaxKPIIntervalMs {
		return invalid("interval_ms: want %d..%d; got %d", MinKPIIntervalMs, MaxKPIIntervalMs, p.IntervalMs)
	}
	return nil
}

// String renders an error for logs.
func (e *TaskEvent) String() string {
	return fmt.Sprintf("seq=%d task=%s state=%s attempt=%d", e.Seq, e.TaskID, e.State, e.Attempt)
}
