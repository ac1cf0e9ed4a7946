// Command jsonxform transforms JSON. Its input is an object
//
//	{"op": "upper", "data": ...}
//
// and its output the JSON value the operation makes of data:
//
//	upper, lower  every string in data (not object keys) in upper or lower case
//	sort          an array of numbers, or of strings, in ascending order
//	sum           the sum of an array of numbers
//	reverse       an array, or a string (by runes), reversed
//	count         the length of an array, object or string (in runes)
//	keys          an object's keys, sorted
//
// Bad input fails the task with a message naming what was wrong.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chimera-fabric/fabric/guest"
)

// Request is the agent's input.
type Request struct {
	Op   string          `json:"op"`
	Data json.RawMessage `json:"data"`
}

var ops = map[string]func(data any) (any, error){
	"upper":   func(d any) (any, error) { return mapStrings(d, strings.ToUpper), nil },
	"lower":   func(d any) (any, error) { return mapStrings(d, strings.ToLower), nil },
	"sort":    sortOp,
	"sum":     sumOp,
	"reverse": reverseOp,
	"count":   countOp,
	"keys":    keysOp,
}

const opNames = "upper, lower, sort, sum, reverse, count, keys"

func main() { guest.Run(transform) }

func transform(in []byte) ([]byte, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf(`jsonxform: input: want a JSON object {"op": ..., "data": ...}: %v`, err)
	}
	if dec.More() {
		return nil, errors.New("jsonxform: input: want one JSON object; got more after it")
	}
	op, ok := ops[req.Op]
	if !ok {
		return nil, fmt.Errorf("jsonxform: op: want one of %s; got %q", opNames, req.Op)
	}
	if len(req.Data) == 0 {
		return nil, fmt.Errorf("jsonxform: data: missing; %s needs it", req.Op)
	}
	var data any
	if err := json.Unmarshal(req.Data, &data); err != nil {
		return nil, fmt.Errorf("jsonxform: data: %v", err)
	}
	guest.Logf(guest.Debug, "applying %s to %d bytes of data", req.Op, len(req.Data))
	out, err := op(data)
	if err != nil {
		return nil, fmt.Errorf("jsonxform: %s: %w", req.Op, err)
	}
	return json.Marshal(out)
}

func mapStrings(v any, f func(string) string) any {
	switch v := v.(type) {
	case string:
		return f(v)
	case []any:
		for i := range v {
			v[i] = mapStrings(v[i], f)
		}
	case map[string]any:
		for k := range v {
			v[k] = mapStrings(v[k], f)
		}
	}
	return v
}

func array(v any) ([]any, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("data: want an array; got %s", kind(v))
	}
	return a, nil
}

func sortOp(v any) (any, error) {
	a, err := array(v)
	if err != nil {
		return nil, err
	}
	if len(a) == 0 {
		return a, nil
	}
	switch a[0].(type) {
	case float64:
		nums, err := numbers(a)
		if err != nil {
			return nil, err
		}
		slices.Sort(nums)
		return nums, nil
	case string:
		strs := make([]string, len(a))
		for i, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("data[%d]: want a string like data[0]; got %s", i, kind(e))
			}
			strs[i] = s
		}
		slices.Sort(strs)
		return strs, nil
	}
	return nil, fmt.Errorf("data[0]: want a number or a string; got %s", kind(a[0]))
}

func numbers(a []any) ([]float64, error) {
	nums := make([]float64, len(a))
	for i, e := range a {
		n, ok := e.(float64)
		if !ok {
			return nil, fmt.Errorf("data[%d]: want a number; got %s", i, kind(e))
		}
		nums[i] = n
	}
	return nums, nil
}

func sumOp(v any) (any, error) {
	a, err := array(v)
	if err != nil {
		return nil, err
	}
	nums, err := numbers(a)
	if err != nil {
		return nil, err
	}
	var sum float64
	for _, n := range nums {
		sum += n
	}
	return sum, nil
}

func reverseOp(v any) (any, error) {
	switch v := v.(type) {
	case []any:
		slices.Reverse(v)
		return v, nil
	case string:
		r := []rune(v)
		slices.Reverse(r)
		return string(r), nil
	}
	return nil, fmt.Errorf("data: want an array or a string; got %s", kind(v))
}

func countOp(v any) (any, error) {
	switch v := v.(type) {
	case []any:
		return len(v), nil
	case map[string]any:
		return len(v), nil
	case string:
		return len([]rune(v)), nil
	}
	return nil, fmt.Errorf("data: want an array, an object or a string; got %s", kind(v))
}

func keysOp(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("data: want an object; got %s", kind(v))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// kind names a decoded JSON value's type for error messages.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
