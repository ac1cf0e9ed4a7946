// Command flaky fails on purpose, to show retries, backoff and the
// dead-letter record of a task that ran out of attempts. Its input is an
// object, every field optional:
//
//	{"fail": "error" | "exit" | "never",   default "error"
//	 "probability": 0..1,                  default 1: fail every time
//	 "message": "...",                     the error message
//	 "exit_code": 1..255}                  for "exit", default 3
//
// "error" fails through guest.Fail (the task's error code is agent_error);
// "exit" exits with exit_code and no error message (code exit_status).
// With a probability below 1 the agent draws a number from math/rand and
// fails when it is below the probability. The draw comes from the WASI
// random source: the host's own with the "random" capability, else the
// fabric's deterministic one, which the scheduler seeds from the task id and
// the attempt number, so that each retry draws afresh and a replay of the
// same attempt draws the same. On success the output is
// {"ok": true, "draw": x}.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/chimera-fabric/fabric/guest"
)

// Request is the agent's input.
type Request struct {
	Fail        string   `json:"fail"`
	Probability *float64 `json:"probability"`
	Message     string   `json:"message"`
	ExitCode    int      `json:"exit_code"`
}

// Outcome is the agent's output when it does not fail.
type Outcome struct {
	OK   bool    `json:"ok"`
	Draw float64 `json:"draw"`
}

func main() {
	guest.Run(func(in []byte) ([]byte, error) { return run(in, rand.Float64(), os.Exit) })
}

// run decides with draw, a number in [0, 1), and calls exit for "exit".
func run(in []byte, draw float64, exit func(int)) ([]byte, error) {
	req, err := parse(in)
	if err != nil {
		return nil, err
	}
	p := 1.0
	if req.Probability != nil {
		p = *req.Probability
	}
	fail := req.Fail != "never" && draw < p
	guest.Logf(guest.Info, "flaky: mode %s, draw %.4f, probability %g: %s",
		req.Fail, draw, p, map[bool]string{true: "failing", false: "succeeding"}[fail])
	if !fail {
		return json.Marshal(Outcome{OK: true, Draw: draw})
	}
	msg := req.Message
	if msg == "" {
		msg = fmt.Sprintf("flaky: failing on purpose (draw %.4f < probability %g)", draw, p)
	}
	if req.Fail == "exit" {
		// A wasi-command's stderr lines are its logs, and the last ones
		// make the exit_status message.
		fmt.Fprintln(os.Stderr, msg)
		exit(req.ExitCode)
		return nil, errors.New("flaky: exit returned") // only when exit is a test's
	}
	return nil, errors.New(msg)
}

func parse(in []byte) (Request, error) {
	req := Request{Fail: "error", ExitCode: 3}
	if len(bytes.TrimSpace(in)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, fmt.Errorf(`flaky: input: want {"fail", "probability", "message", "exit_code"} (all optional): %v`, err)
		}
	}
	switch req.Fail {
	case "error", "exit", "never":
	default:
		return req, fmt.Errorf("flaky: fail: want one of error, exit, never; got %q", req.Fail)
	}
	if p := req.Probability; p != nil && !(*p >= 0 && *p <= 1) {
		return req, fmt.Errorf("flaky: probability: want a number from 0 to 1; got %g", *p)
	}
	if req.ExitCode < 1 || req.ExitCode > 255 {
		return req, fmt.Errorf("flaky: exit_code: want 1 to 255; got %d", req.ExitCode)
	}
	return req, nil
}
