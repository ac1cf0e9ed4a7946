package guest_test

import (
	"bytes"

	"github.com/chimera-fabric/fabric/guest"
)

// Built natively, Output writes to stdout; built for wasip1 it appends to the
// task's output through fabric.output_write.
func ExampleOutput() {
	guest.Output([]byte("hello, "))
	guest.Output([]byte("fabric\n"))
	// Output: hello, fabric
}

// The usual main function of an agent.
func ExampleRun() {
	guest.Run(func(in []byte) ([]byte, error) {
		guest.Log(guest.Info, "shouting")
		guest.KPI("bytes", float64(len(in)))
		return bytes.ToUpper(in), nil
	})
}

// The entry function of a fabric-v1 reactor, built with
// -buildmode=c-shared; see examples/reactor.
func ExampleHandle() {
	run := func() int32 { // in an agent: //go:wasmexport run
		return guest.Handle(func(in []byte) ([]byte, error) { return in, nil })
	}
	_ = run
}
