package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/chimera-fabric/fabric/internal/jsonscan"
	"github.com/chimera-fabric/fabric/protocol"
)

// This file is the client's side of JSON-RPC 2.0 framing: encoding requests
// and decoding whatever the server sends (a response, a notification, or a
// batch of responses).

// Notification is a message the server sent without an id: task.event or
// kpi.report. Params is the raw JSON; decode it into protocol.TaskEvent or
// protocol.KPIReportNotification.
type Notification struct {
	Method string
	Params json.RawMessage
}

// request is an outgoing request or notification. ID is omitted for a
// notification (ID == 0: ids start at 1).
type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id,omitempty"`
	Method  string `json:"method"`
	Params  any    `json:"params,omitempty"`
}

// incoming is any message the server sends. A response has ID and one of
// Result or Error; a notification has Method and no ID.
type incoming struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *protocol.Error `json:"error"`
}

// reply is what a waiting call receives: a result, a JSON-RPC error, or (when
// the connection ended first) a transport error.
type reply struct {
	result json.RawMessage
	err    error
}

// encodeRequest encodes what json.Marshal of a request gives, without
// encoding the envelope by reflection: params already encoded (a
// json.RawMessage with nothing to compact or escape, as the load generator
// sends them) are copied once checked, the rest go through json.Marshal.
func encodeRequest(id uint64, method string, params any) ([]byte, error) {
	raw, pre := params.(json.RawMessage)
	if !plainName(method) || pre && !plainJSON(raw) {
		b, err := json.Marshal(request{JSONRPC: "2.0", ID: id, Method: method, Params: params})
		if err != nil {
			return nil, fmt.Errorf("%s: encoding params: %w", method, err)
		}
		return b, nil
	}
	if params != nil && !pre {
		var err error
		if raw, err = json.Marshal(params); err != nil {
			return nil, fmt.Errorf("%s: encoding params: %w", method, err)
		}
	}
	b := make([]byte, 0, 48+len(method)+len(raw))
	b = append(b, `{"jsonrpc":"2.0",`...)
	if id != 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendUint(b, id, 10)
		b = append(b, ',')
	}
	b = append(b, `"method":"`...)
	b = append(b, method...)
	b = append(b, '"')
	if params != nil {
		b = append(b, `,"params":`...)
		b = append(b, raw...)
	}
	return append(b, '}'), nil
}

// plainName: a method name json.Marshal writes as it is.
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainJSON: valid JSON that json.Marshal copies as it is (no whitespace to
// compact, no HTML characters or U+2028/2029 to escape).
func plainJSON(raw []byte) bool {
	for _, c := range raw {
		if c <= ' ' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			return false
		}
	}
	return jsonscan.Valid(raw)
}

// decodeMessage decodes one WebSocket message: an object, or an array of
// objects (the answer to a batch). After one check that it is JSON, its
// members are read by jsonscan: a result or params is a slice of data, not
// a copy, decoded once, by the caller that wants it.
func decodeMessage(data []byte) ([]incoming, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("empty message; want a JSON-RPC object or array")
	}
	if !jsonscan.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // says what is wrong, and where
		return nil, fmt.Errorf("undecodable message: %v", err)
	}
	if data[0] != '[' {
		m, err := decodeObject(data)
		if err != nil {
			return nil, fmt.Errorf("undecodable message: %v", err)
		}
		return []incoming{m}, nil
	}
	var msgs []incoming
	for e := range jsonscan.Elements(data) {
		m, err := decodeObject(e)
		if err != nil {
			return nil, fmt.Errorf("undecodable batch response: %v", err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// decodeObject reads one message object (valid JSON). Members other than
// the five are ignored; of a repeated one the last counts, as
// json.Unmarshal has it.
func decodeObject(obj []byte) (incoming, error) {
	var m incoming
	if obj[0] != '{' {
		return m, fmt.Errorf("want a JSON-RPC object; got %.20s", obj)
	}
	for key, val := range jsonscan.Members(obj) {
		switch string(key) {
		case `"id"`:
			m.ID = val
		case `"method"`:
			if val[0] != '"' && string(val) != "null" {
				return m, fmt.Errorf("method: want a string; got %.20s", val)
			}
			m.Method = jsonscan.String(val)
		case `"params"`:
			m.Params = val
		case `"result"`:
			m.Result = val
		case `"error"`:
			m.Error = nil
			if string(val) != "null" {
				var e protocol.Error
				if err := json.Unmarshal(val, &e); err != nil {
					return m, fmt.Errorf("error: %v", err)
				}
				m.Error = &e
			}
		}
	}
	return m, nil
}

// parseID reads an id this client sent (a positive integer); ok is false for
// null, strings and anything else, which cannot answer one of our requests.
func parseID(raw json.RawMessage) (uint64, bool) {
	if len(raw) == 0 || raw[0] < '1' || raw[0] > '9' {
		return 0, false
	}
	id, err := strconv.ParseUint(string(raw), 10, 64)
	return id, err == nil
}

// isRPCError reports whether err is the server's answer rather than a
// transport failure.
func isRPCError(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe)
}
