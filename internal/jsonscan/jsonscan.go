// Package jsonscan walks the top level of a JSON text that json.Valid has
// accepted: the members of an object and the elements of an array, as
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
