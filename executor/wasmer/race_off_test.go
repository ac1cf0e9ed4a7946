//go:build wasmer && !race

package wasmer

// raceEnabled: see race_on_test.go.
const raceEnabled = false
