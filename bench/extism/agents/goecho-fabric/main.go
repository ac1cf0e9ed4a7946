//go:build wasip1

// Command goecho-fabric is the Go-built echo of the comparison with
// Extism, for Fabric: a reactor (go build -buildmode=c-shared) exporting
// the fabric-v1 entry "run" through Fabric's guest SDK.
package main

import "github.com/chimera-fabric/fabric/guest"

//go:wasmexport run
func run() int32 { return guest.Handle(func(in []byte) ([]byte, error) { return in, nil }) }

func main() {}
