// Command sdkagent calls every function of the guest SDK, for the tests
// that run the SDK as WebAssembly. Built plainly it is a wasi-command (main
// runs); built with -buildmode=c-shared, a fabric-v1 reactor (run runs).
//
// Its input chooses the ending: "panic" panics, "fail:MSG" fails with MSG,
// and anything else is echoed after "got:".
package main

import (
	"bytes"
	"errors"
	"math"

	"github.com/chimera-fabric/fabric/guest"
)

//go:wasmexport run
func run() int32 { return guest.Handle(work) }

func main() { guest.Run(work) }

func work(in []byte) ([]byte, error) {
	guest.Log(guest.Debug, "debug")
	guest.Log(guest.Info, "info")
	guest.Log(guest.Warn, "warn")
	guest.Log(guest.Error, "error")
	guest.Log(guest.Level(7), "clamped")
	guest.Logf(guest.Info, "héllo %d", 42)
	guest.Progress(-1)
	guest.Progress(0.25)
	guest.Progress(math.NaN())
	guest.Progress(2)
	guest.KPI("in_bytes", float64(len(in)))
	guest.KPI("third", 1.0/3)
	guest.KPI("nan", math.NaN())
	if again := guest.Input(); len(again) != len(in) {
		return nil, errors.New("Input changed between calls")
	}
	switch {
	case string(in) == "panic":
		panic("boom")
	case bytes.HasPrefix(in, []byte("fail:")):
		return nil, errors.New(string(in[len("fail:"):]))
	}
	guest.Output([]byte("got:"))
	return in, nil
}
