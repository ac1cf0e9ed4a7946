// Command cpu is a CPU-bound agent: it counts the primes up to N by trial
// division, reporting progress as it goes, the count as the KPI "primes",
// and a log line at the start and the end. Its input is N, as a JSON number
// or as {"n": N}; its output {"n": N, "primes": count, "largest": p}.
//
// Trial division makes the work grow about as N·√N / ln N: under wazero
// N = 10⁶ takes some 0.4 s and 3·10⁶ some 2 s, and 10⁸ runs for minutes,
// which makes the agent handy for loading workers and for timeouts.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/chimera-fabric/fabric/guest"
)

// MaxN bounds N, so that a typo cannot ask for years of work.
const MaxN = 10_000_000_000

// Result is the agent's output.
type Result struct {
	N       int64 `json:"n"`
	Primes  int64 `json:"primes"`
	Largest int64 `json:"largest,omitempty"`
}

func main() { guest.Run(run) }

func run(in []byte) ([]byte, error) {
	n, err := parseN(in)
	if err != nil {
		return nil, err
	}
	guest.Logf(guest.Info, "counting the primes up to %d", n)
	r := countPrimes(n, guest.Progress)
	guest.KPI("primes", float64(r.Primes))
	guest.Logf(guest.Info, "found %d primes up to %d", r.Primes, n)
	return json.Marshal(r)
}

func parseN(in []byte) (int64, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || dec.More() {
		return 0, fmt.Errorf(`cpu: input: want N, a JSON number, or {"n": N}; got %.40q`, in)
	}
	if obj, ok := v.(map[string]any); ok {
		for k := range obj {
			if k != "n" {
				return 0, fmt.Errorf(`cpu: input: want {"n": N}; got a field %q besides`, k)
			}
		}
		if v, ok = obj["n"]; !ok {
			return 0, fmt.Errorf(`cpu: input: want {"n": N}; n is missing`)
		}
	}
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("cpu: n: want an integer from 0 to %d; got %s", int64(MaxN), bytes.TrimSpace(in))
	}
	f, err := num.Float64()
	if err != nil || f != math.Trunc(f) || f < 0 || f > MaxN {
		return 0, fmt.Errorf("cpu: n: want an integer from 0 to %d; got %s", int64(MaxN), num)
	}
	return int64(f), nil
}

// countPrimes counts the primes up to n, calling progress with the fraction
// done each time it grows by a hundredth (each report is a task.event, so
// they are kept few).
func countPrimes(n int64, progress func(float64)) Result {
	r := Result{N: n}
	step := max(n/100, 1)
	for k := int64(2); k <= n; k++ {
		if isPrime(k) {
			r.Primes++
			r.Largest = k
		}
		if k%step == 0 && k < n {
			progress(float64(k) / float64(n))
		}
	}
	progress(1)
	return r
}

func isPrime(k int64) bool {
	if k < 4 {
		return k >= 2
	}
	if k%2 == 0 {
		return false
	}
	for d := int64(3); d*d <= k; d += 2 {
		if k%d == 0 {
			return false
		}
	}
	return true
}
