//go:build wasmer

package main

import "testing"

// The sandbox's bad cases through the real server on the wasmer engine: same
// outcomes as on wazero, and the server goes on serving.
func TestHostileAgentsOnWasmer(t *testing.T) { hostileAgents(t, "wasmer") }
