package main

import (
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		in      string
		draw    float64
		out     string // "" when it fails
		errWant string
		exit    int // -1: exit not called
	}{
		{"", 0.99, "", "flaky: failing on purpose (draw 0.9900 < probability 1)", -1},
		{`{}`, 0, "", "failing on purpose", -1},
		{`{"fail":"never"}`, 0, `{"ok":true,"draw":0}`, "", -1},
		{`{"probability":0.5}`, 0.7, `{"ok":true,"draw":0.7}`, "", -1},
		{`{"probability":0.5, "message":"try again"}`, 0.3, "", "try again", -1},
		{`{"probability":0}`, 0, `{"ok":true,"draw":0}`, "", -1},
		{`{"fail":"exit"}`, 0.2, "", "flaky: exit returned", 3},
		{`{"fail":"exit","exit_code":42}`, 0.2, "", "flaky: exit returned", 42},
	}
	for _, tt := range tests {
		exit := -1
		out, err := run([]byte(tt.in), tt.draw, func(code int) { exit = code })
		if string(out) != tt.out {
			t.Errorf("%s with draw %v: output %s, want %s", tt.in, tt.draw, out, tt.out)
		}
		if (err == nil) != (tt.errWant == "") || err != nil && !strings.Contains(err.Error(), tt.errWant) {
			t.Errorf("%s with draw %v: error %v, want %q", tt.in, tt.draw, err, tt.errWant)
		}
		if exit != tt.exit {
			t.Errorf("%s: exit(%d), want %d", tt.in, exit, tt.exit)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"fail":"sometimes"}`: `fail: want one of error, exit, never; got "sometimes"`,
		`{"probability":1.5}`:  "probability: want a number from 0 to 1; got 1.5",
		`{"probability":-0.1}`: "probability: want a number from 0 to 1; got -0.1",
		`{"exit_code":0}`:      "exit_code: want 1 to 255; got 0",
		`{"exit_code":256}`:    "exit_code: want 1 to 255; got 256",
		`{"retries":2}`:        `unknown field "retries"`,
		`"error"`:              `want {"fail", "probability", "message", "exit_code"}`,
	} {
		_, err := parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse(%s): error %v, want one containing %q", in, err, want)
		}
	}
}
