package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

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
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		// checkJSON accepted it, so this cannot happen short of a bug.
		return inbound{reject: protocol.Errorf(protocol.ErrParse, "%v", err)}
	}
	if len(elems) == 0 {
		return inbound{reject: protocol.Errorf(protocol.ErrInvalidRequest, "empty batch; want at least one request in the array")}
	}
	in := inbound{batch: true, items: make([]item, len(elems))}
	for i, e := range elems {
		in.items[i] = parseRequest(e)
	}
	return in
}

// checkJSON reports unparsable JSON as a parse error that says where.
func checkJSON(data []byte) *protocol.Error {
	if json.Valid(data) {
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

// requestMembers are the members a request object may have.
var requestMembers = map[string]bool{"jsonrpc": true, "method": true, "params": true, "id": true}

// parseRequest validates one request object (already known to be valid JSON).
func parseRequest(raw json.RawMessage) item {
	raw = bytes.TrimSpace(raw)
	if raw[0] != '{' {
		return invalidItem(nullID, "want a request object; got %s", kindOf(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalidItem(nullID, "%v", err)
	}
	var it item
	// The id first, so that the other errors can be answered with it.
	if id, ok := m["id"]; ok {
		c, err := compact(id)
		if err != nil {
			return invalidItem(nullID, "id: %v", err)
		}
		switch c[0] {
		case '"', 'n':
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			return invalidItem(nullID, "id: want a string, a number or null; got %s", kindOf(c))
		}
		it.req.ID = c
	}
	answerID := it.req.ID
	if answerID == nil {
		answerID = nullID
	}
	if v, ok := m["jsonrpc"]; !ok {
		return invalidItem(answerID, `jsonrpc: required; want "2.0"`)
	} else if string(bytes.TrimSpace(v)) != `"2.0"` {
		return invalidItem(answerID, `jsonrpc: want "2.0"; got %s`, clip(v))
	}
	meth, ok := m["method"]
	if !ok {
		return invalidItem(answerID, "method: required; want a string")
	}
	meth = bytes.TrimSpace(meth)
	if meth[0] != '"' || json.Unmarshal(meth, &it.req.Method) != nil {
		return invalidItem(answerID, "method: want a string; got %s", kindOf(meth))
	}
	if p, ok := m["params"]; ok {
		p = bytes.TrimSpace(p)
		if p[0] != '{' && p[0] != '[' {
			return invalidItem(answerID, "params: want an object (or an array); got %s", kindOf(p))
		}
		it.req.Params = p
	}
	var extra []string
	for k := range m {
		if !requestMembers[k] {
			extra = append(extra, fmt.Sprintf("%q", k))
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return invalidItem(answerID, "unknown member %s; a request has only jsonrpc, method, params and id", strings.Join(extra, ", "))
	}
	return it
}

func invalidItem(id json.RawMessage, format string, args ...any) item {
	return item{req: request{ID: id}, err: protocol.Errorf(protocol.ErrInvalidRequest, format, args...)}
}

func compact(raw json.RawMessage) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
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
// becomes an internal error response.
func encodeResult(id json.RawMessage, result any) []byte {
	b, err := json.Marshal(result)
	if err != nil {
		return encodeError(id, protocol.Errorf(protocol.ErrInternal, "encoding the result: %v", err))
	}
	return mustMarshal(response{JSONRPC: "2.0", ID: id, Result: b})
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
func encodeNotification(method string, params any) ([]byte, error) {
	return json.Marshal(notificationMsg{JSONRPC: "2.0", Method: method, Params: params})
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
