package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestRegisterReuseInstances: reuse_instances decodes, is echoed in Agent
// only when set, and is refused with -32602 for an agent declared a
// wasi-command.
func TestRegisterReuseInstances(t *testing.T) {
	var p RegisterParams
	if err := DecodeParams(json.RawMessage(`{"name":"a","wasm":"AGFzbQEAAAA=","reuse_instances":true}`), &p); err != nil || !p.ReuseInstances {
		t.Fatalf("DecodeParams: %v, ReuseInstances %v", err, p.ReuseInstances)
	}
	err := DecodeParams(json.RawMessage(`{"name":"a","wasm":"AGFzbQEAAAA=","abi":"wasi-command","reuse_instances":true}`), &p)
	if !errors.Is(err, ErrInvalidParams) || !strings.Contains(err.Error(), "reuse_instances") {
		t.Fatalf("a wasi-command with reuse_instances: %v; want -32602 naming the field", err)
	}
	for _, c := range []struct {
		a    Agent
		want bool
	}{{Agent{Name: "a"}, false}, {Agent{Name: "a", ReuseInstances: true}, true}} {
		b, _ := json.Marshal(c.a)
		if got := strings.Contains(string(b), `"reuse_instances":true`); got != c.want {
			t.Errorf("Agent %+v encodes as %s", c.a, b)
		}
		if !c.want && strings.Contains(string(b), "reuse_instances") {
			t.Errorf("an agent without reuse encodes the field: %s", b)
		}
	}
}
