package protocol

import (
	"errors"
	"fmt"
)

// Error is a JSON-RPC error. The package-level values are sentinels compared by
// code: errors.Is(err, ErrNotFound) holds for any *Error with code -32001.
// Handlers build detailed errors with Errorf; the conversion to the wire
// happens once, at the transport's edge, with AsError.
type Error struct {
	Code    int64          `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// With returns a copy of e with data[key] = value.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Data = make(map[string]any, len(e.Data)+1)
	for k, v := range e.Data {
		c.Data[k] = v
	}
	c.Data[key] = value
	return &c
}

// Standard JSON-RPC 2.0 errors.
var (
	ErrParse          = &Error{Code: -32700, Message: "parse error"}
	ErrInvalidRequest = &Error{Code: -32600, Message: "invalid request"}
	ErrMethodNotFound = &Error{Code: -32601, Message: "method not found"}
	ErrInvalidParams  = &Error{Code: -32602, Message: "invalid params"}
	ErrInternal       = &Error{Code: -32603, Message: "internal error"}
)

// Fabric's application errors (PROTOCOL.md).
var (
	ErrNotFound      = &Error{Code: -32001, Message: "not found"}
	ErrOverloaded    = &Error{Code: -32002, Message: "overloaded"}
	ErrInvalidModule = &Error{Code: -32003, Message: "invalid agent module"}
	ErrUnauthorized  = &Error{Code: -32004, Message: "unauthorized"}
	ErrLimit         = &Error{Code: -32005, Message: "request exceeds a server limit"}
	ErrConflict      = &Error{Code: -32006, Message: "conflict"}
	ErrShuttingDown  = &Error{Code: -32007, Message: "shutting down"}
)

// Errorf returns an error of kind's code whose message is kind's message
// followed by the detail, and whose data carries the detail as "reason".
func Errorf(kind *Error, format string, args ...any) *Error {
	reason := fmt.Sprintf(format, args...)
	return &Error{
		Code:    kind.Code,
		Message: kind.Message + ": " + reason,
		Data:    map[string]any{"reason": reason},
	}
}

// AsError converts any error into the *Error sent on the wire. Errors that
// carry no *Error become internal errors; their text is kept as the reason so
// that an operator can find the cause.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		if pe.Error() == err.Error() {
			return pe
		}
		// Wrapped with more context: keep the code and data, use the full text.
		c := *pe
		c.Message = err.Error()
		return &c
	}
	return Errorf(ErrInternal, "%v", err)
}

// Overloaded returns an ErrOverloaded error telling the caller when to retry.
func Overloaded(retryAfterMs int64, format string, args ...any) *Error {
	return Errorf(ErrOverloaded, format, args...).With("retry_after_ms", retryAfterMs)
}
