package main

import (
	"strings"
	"testing"
)

func TestTransform(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"op":"upper","data":"abc"}`, `"ABC"`},
		{`{"op":"upper","data":{"k":["a",{"b":"c"}],"n":1}}`, `{"k":["A",{"b":"C"}],"n":1}`},
		{`{"op":"lower","data":["ÀB",true,null]}`, `["àb",true,null]`},
		{`{"op":"sort","data":[3,1.5,-2]}`, `[-2,1.5,3]`},
		{`{"op":"sort","data":["b","a","C"]}`, `["C","a","b"]`},
		{`{"op":"sort","data":[]}`, `[]`},
		{`{"op":"sum","data":[1,2,3.5]}`, `6.5`},
		{`{"op":"sum","data":[]}`, `0`},
		{`{"op":"reverse","data":[1,"a",null]}`, `[null,"a",1]`},
		{`{"op":"reverse","data":"héllo"}`, `"olléh"`},
		{`{"op":"count","data":{"a":1,"b":2}}`, `2`},
		{`{"op":"count","data":"héllo"}`, `5`},
		{`{"op":"keys","data":{"b":1,"a":2}}`, `["a","b"]`},
	}
	for _, tt := range tests {
		got, err := transform([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestTransformErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `input: want a JSON object {"op": ..., "data": ...}: EOF`},
		{`[1]`, `input: want a JSON object`},
		{`{"op":"upper","data":"a"} {}`, `want one JSON object; got more after it`},
		{`{"op":"upper","data":"a","extra":1}`, `unknown field "extra"`},
		{`{"op":"shout","data":"a"}`, `op: want one of upper, lower, sort, sum, reverse, count, keys; got "shout"`},
		{`{"op":"sum"}`, `data: missing; sum needs it`},
		{`{"op":"sum","data":[1,"2"]}`, `sum: data[1]: want a number; got a string`},
		{`{"op":"sum","data":{}}`, `sum: data: want an array; got an object`},
		{`{"op":"sort","data":[1,"a"]}`, `sort: data[1]: want a number; got a string`},
		{`{"op":"sort","data":["a",1]}`, `sort: data[1]: want a string like data[0]; got a number`},
		{`{"op":"sort","data":[true]}`, `sort: data[0]: want a number or a string; got a boolean`},
		{`{"op":"reverse","data":3}`, `reverse: data: want an array or a string; got a number`},
		{`{"op":"count","data":null}`, `count: data: want an array, an object or a string; got null`},
		{`{"op":"keys","data":[]}`, `keys: data: want an object; got an array`},
	}
	for _, tt := range tests {
		_, err := transform([]byte(tt.in))
		if err == nil {
			t.Errorf("%s: want an error containing %q", tt.in, tt.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "jsonxform: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want it to start with \"jsonxform: \" and contain %q", tt.in, err, tt.want)
		}
	}
}
