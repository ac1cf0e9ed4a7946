package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/chimera-fabric/fabric/internal/jsonenc"
	"github.com/chimera-fabric/fabric/internal/jsonscan"
	"github.com/chimera-fabric/fabric/protocol"
)

// This file is the JSON-RPC 2.0 message layer: it turns one incoming message
// (a request, a notification or a batch) into requests to dispatch and the
// errors to answer at once, and it encodes responses and notifications.
//
// sourcegraph/jsonrpc2 is not used on this path (doc.go says why):
// its ID cannot hold null, negative, fractional or large numbers, it has no
// batches, it closes the connection on the first malformed message, and it
// re-encodes params through interface{}. Here ids are kept as the raw JSON
// the client sent and echoed byte for byte.

// request is one well-formed request or notification.
type request struct {
	// ID is the id exactly as sent (compacted), or nil for a notification.
	// A request with "id": null has ID == `null` and is answered.
	ID     json.RawMessage
	Method string
	// Params is nil when the request had none.
	Params json.RawMessage
}

func (r *request) notification() bool { return r.ID == nil }

// item is one element of an incoming message: a request to dispatch, or an
// error to answer without dispatching (err != nil; req.ID is the id to
// answer with, null when none could be read).
type item struct {
	req request
	err *protocol.Error
}

// inbound is one parsed incoming message.
type inbound struct {
	items []item
	batch bool
	// reject is set when the message as a whole is answered with one error
	// (unparsable JSON, an empty batch): items is then empty.
	reject *protocol.Error
}

var nullID = json.RawMessage("null")

// parseMessage parses one whole JSON-RPC message.
func parseMessage(data []byte) inbound {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return inbound{reject: protocol.Errorf(protocol.ErrParse, "empty message; want a JSON-RPC request object or a batch array")}
	}
	if err := checkJSON(data); err != nil {
		return inbound{reject: err}
	}
	if data[0] != '[' {
		return inbound{items: []item{parseRequest(data)}}
	}
	var in inbound
	for e := range jsonscan.Elements(data) {
		in.items = append(in.items, parseRequest(e))
	}
	if len(in.items) == 0 {
		return inbound{reject: protocol.Errorf(protocol.ErrInvalidRequest, "empty batch; want at least one request in the array")}
	}
	in.batch = true
	return in
}

// checkJSON reports unparsable JSON as a parse error that says where.
func checkJSON(data []byte) *protocol.Error {
	if jsonscan.Valid(data) {
		return nil
	}
	var v json.RawMessage
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return protocol.Errorf(protocol.ErrParse, "invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	if err != nil {
		return protocol.Errorf(protocol.ErrParse, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return protocol.Errorf(protocol.ErrParse, "invalid JSON")
}

// parseRequest validates one request object (already known to be valid
// JSON). Its members are read by jsonscan, not json.Unmarshal into a map:
// ids and params are slices of the message as it came, not copies.
func parseRequest(raw json.RawMessage) item {
	raw = bytes.TrimSpace(raw)
	if raw[0] != '{' {
		return invalidItem(nullID, "want a request object; got %s", kindOf(raw))
	}
	var id, version, meth, params json.RawMessage
	var hasID, hasVersion, hasMethod, hasParams bool
	var extra []string
	for key, val := range jsonscan.Members(raw) {
		// A repeated member counts once, the last one, as encoding/json
		// decodes it.
		switch memberName(key) {
		case "id":
			id, hasID = val, true
		case "jsonrpc":
			version, hasVersion = val, true
		case "method":
			meth, hasMethod = val, true
		case "params":
			params, hasParams = val, true
		default:
			if q := fmt.Sprintf("%q", memberName(key)); !slices.Contains(extra, q) {
				extra = append(extra, q)
			}
		}
	}
	var it item
	// The id first, so that the other errors can be answered with it. A
	// valid scalar has no whitespace to compact.
	if hasID {
		switch id[0] {
		case '"', 'n':
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			return invalidItem(nullID, "id: want a string, a number or null; got %s", kindOf(id))
		}
		it.req.ID = id
	}
	answerID := it.req.ID
	if answerID == nil {
		answerID = nullID
	}
	if !hasVersion {
		return invalidItem(answerID, `jsonrpc: required; want "2.0"`)
	} else if string(version) != `"2.0"` {
		return invalidItem(answerID, `jsonrpc: want "2.0"; got %s`, clip(version))
	}
	if !hasMethod {
		return invalidItem(answerID, "method: required; want a string")
	}
	if meth[0] != '"' {
		return invalidItem(answerID, "method: want a string; got %s", kindOf(meth))
	}
	it.req.Method = jsonString(meth)
	if hasParams {
		if params[0] != '{' && params[0] != '[' {
			return invalidItem(answerID, "params: want an object (or an array); got %s", kindOf(params))
		}
		it.req.Params = params
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return invalidItem(answerID, "unknown member %s; a request has only jsonrpc, method, params and id", strings.Join(extra, ", "))
	}
	return it
}

// memberName is a member's key, unquoted; the four of a request without
// allocating.
func memberName(key []byte) string {
	switch string(key) {
	case `"id"`:
		return "id"
	case `"jsonrpc"`:
		return "jsonrpc"
	case `"method"`:
		return "method"
	case `"params"`:
		return "params"
	}
	return jsonString(key)
}

// methodNames holds the name of every method, to be shared rather than
// copied from each request.
var methodNames = func() map[string]string {
	m := map[string]string{}
	for _, spec := range protocol.Methods {
		m[spec.Name] = spec.Name
	}
	return m
}()

// jsonString unquotes a valid JSON string, sharing a method's name rather
// than copying it.
func jsonString(q []byte) string {
	if jsonscan.Plain(q) {
		if name, ok := methodNames[string(q[1:len(q)-1])]; ok {
			return name
		}
	}
	return jsonscan.String(q)
}

func invalidItem(id json.RawMessage, format string, args ...any) item {
	return item{req: request{ID: id}, err: protocol.Errorf(protocol.ErrInvalidRequest, format, args...)}
}

// kindOf names the JSON type of a valid, trimmed JSON text.
func kindOf(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// clip shortens a JSON text for an error message.
func clip(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 40 {
		return string(raw[:37]) + "..."
	}
	return string(raw)
}

// response is a JSON-RPC response object.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *protocol.Error `json:"error,omitempty"`
}

// encodeResult encodes a success response. A result that cannot be encoded
// becomes an internal error response. The envelope is written around the
// encoded result by hand: json.Marshal of a response would scan and copy the
// result once more (json.RawMessage is compacted), and the id is the valid
// JSON the client sent.
func encodeResult(id json.RawMessage, result any) []byte {
	if id == nil {
		id = nullID
	}
	const head, mid = `{"jsonrpc":"2.0","id":`, `,"result":`
	scratch := scratchPool.Get().(*[]byte)
	msg := append((*scratch)[:0], head...)
	msg = append(msg, id...)
	msg = append(msg, mid...)
	msg, ok := appendResult(msg, result)
	var out []byte
	if ok {
		out = bytes.Clone(append(msg, '}'))
	}
	putScratch(scratch, msg)
	if ok {
		return out
	}
	b, err := json.Marshal(result)
	if err != nil {
		return encodeError(id, protocol.Errorf(protocol.ErrInternal, "encoding the result: %v", err))
	}
	msg = make([]byte, 0, len(head)+len(id)+len(mid)+len(b)+1)
	msg = append(msg, head...)
	msg = append(msg, id...)
	msg = append(msg, mid...)
	msg = append(msg, b...)
	return append(msg, '}')
}

// encodeError encodes an error response.
func encodeError(id json.RawMessage, e *protocol.Error) []byte {
	if id == nil {
		id = nullID
	}
	b, err := json.Marshal(response{JSONRPC: "2.0", ID: id, Error: e})
	if err != nil {
		// Only e.Data can fail to encode; send the error without it.
		b = mustMarshal(response{JSONRPC: "2.0", ID: id, Error: &protocol.Error{Code: e.Code, Message: e.Message}})
	}
	return b
}

type notificationMsg struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params"`
}

// encodeNotification encodes a server-to-client notification.
// The params of a task.event are appended (encode.go); the rest go through
// json.Marshal.
func encodeNotification(method string, params any) ([]byte, error) {
	scratch := scratchPool.Get().(*[]byte)
	msg := append((*scratch)[:0], `{"jsonrpc":"2.0","method":`...)
	msg = jsonenc.AppendString(msg, method)
	msg = append(msg, `,"params":`...)
	msg, ok := appendResult(msg, params)
	var out []byte
	if ok {
		out = bytes.Clone(append(msg, '}'))
	}
	putScratch(scratch, msg)
	if ok {
		return out, nil
	}
	return json.Marshal(notificationMsg{JSONRPC: "2.0", Method: method, Params: params})
}

// scratchPool holds the buffers messages are appended in; each message is
// then copied out at its size, so that an answer holds no more memory than
// it needs (and a buffer grown by a large task is not kept).
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func putScratch(p *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*p = b[:0]
		scratchPool.Put(p)
	}
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("server: encoding %T: %v", v, err))
	}
	return b
}

// joinBatch joins encoded responses into one batch reply.
func joinBatch(parts [][]byte) []byte {
	n := 2
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, p := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p...)
	}
	return append(b, ']')
}
