package main

import "testing"

func TestCount(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `{"bytes":0,"runes":0,"lines":0,"words":0}`},
		{"one", `{"bytes":3,"runes":3,"lines":1,"words":1}`},
		{"héllo wörld\n", `{"bytes":14,"runes":12,"lines":1,"words":2}`},
		{"a b\n\nc  d e\n", `{"bytes":12,"runes":12,"lines":3,"words":5}`},
	}
	for _, tt := range tests {
		got, err := count([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("count(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := count([]byte{0xff, 'a'}); err == nil || err.Error() != "reactor: input: want UTF-8 text; got invalid UTF-8" {
		t.Errorf("count of invalid UTF-8: error %v", err)
	}
}
