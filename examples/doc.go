// Package examples holds the example agents, one main package per
// directory (see README.md). This package itself holds only the test that
// builds each of them for GOOS=wasip1 GOARCH=wasm and runs it under a host
// of GUEST_ABI.md.
package examples
