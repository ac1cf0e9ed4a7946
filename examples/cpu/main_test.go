package main

import (
	"strings"
	"testing"
)

func TestCountPrimes(t *testing.T) {
	tests := []struct {
		n, primes, largest int64
	}{
		{0, 0, 0}, {1, 0, 0}, {2, 1, 2}, {3, 2, 3}, {10, 4, 7}, {100, 25, 97}, {7919, 1000, 7919}, {100000, 9592, 99991},
	}
	for _, tt := range tests {
		var reports []float64
		r := countPrimes(tt.n, func(f float64) { reports = append(reports, f) })
		if r.N != tt.n || r.Primes != tt.primes || r.Largest != tt.largest {
			t.Errorf("countPrimes(%d) = %+v, want %d primes, the largest %d", tt.n, r, tt.primes, tt.largest)
		}
		if len(reports) == 0 || reports[len(reports)-1] != 1 {
			t.Errorf("countPrimes(%d): progress %v should end at 1", tt.n, reports)
		}
		for i := 1; i < len(reports); i++ {
			if reports[i] < reports[i-1] {
				t.Errorf("countPrimes(%d): progress went back: %v", tt.n, reports)
				break
			}
		}
		if len(reports) > 102 {
			t.Errorf("countPrimes(%d) reported progress %d times, want at most 101", tt.n, len(reports))
		}
	}
}

func TestParseN(t *testing.T) {
	for in, want := range map[string]int64{"10": 10, " 0\n": 0, `{"n": 5}`: 5, "1e3": 1000, "10000000000": MaxN} {
		n, err := parseN([]byte(in))
		if err != nil || n != want {
			t.Errorf("parseN(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                "want N, a JSON number",
		"ten":             `want N, a JSON number, or {"n": N}; got "ten"`,
		"-1":              "n: want an integer from 0 to 10000000000; got -1",
		"2.5":             "got 2.5",
		"10000000001":     "got 10000000001",
		`{}`:              "n is missing",
		`{"n": "5"}`:      `n: want an integer from 0 to 10000000000; got {"n": "5"}`,
		`{"n": 5, "m":1}`: `got a field "m" besides`,
		"5 6":             `got "5 6"`,
	} {
		_, err := parseN([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseN(%q): error %v, want one containing %q", in, err, want)
		}
	}
}
