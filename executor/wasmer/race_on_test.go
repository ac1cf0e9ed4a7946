//go:build wasmer && race

package wasmer

// raceEnabled: the race detector's own memory grows a worker as it runs, so
// tests that measure a worker's memory skip.
const raceEnabled = true
