// Command reactor is a fabric-v1 agent in the reactor form: built with
// -buildmode=c-shared it exports _initialize, memory and run, and the host
// calls run (type () -> i32, 0 for success) once per task instead of
// _start. It counts the bytes, lines and words of its input:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o reactor.wasm ./examples/reactor
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/chimera-fabric/fabric/guest"
)

// Counts is the agent's output.
type Counts struct {
	Bytes int `json:"bytes"`
	Runes int `json:"runes"`
	Lines int `json:"lines"`
	Words int `json:"words"`
}

//go:wasmexport run
func run() int32 { return guest.Handle(count) }

func count(in []byte) ([]byte, error) {
	if !utf8.Valid(in) {
		return nil, errors.New("reactor: input: want UTF-8 text; got invalid UTF-8")
	}
	c := Counts{
		Bytes: len(in),
		Runes: utf8.RuneCount(in),
		Lines: bytes.Count(in, []byte("\n")),
		Words: len(bytes.Fields(in)),
	}
	if len(in) > 0 && in[len(in)-1] != '\n' {
		c.Lines++ // a last line without its newline still counts
	}
	guest.KPI("words", float64(c.Words))
	return json.Marshal(c)
}

// main is never called in a reactor (_initialize runs the package's
// initialisers, not main), but package main must have one. Built for a
// native platform it makes the agent runnable: go run ./examples/reactor.
func main() { guest.Run(count) }
