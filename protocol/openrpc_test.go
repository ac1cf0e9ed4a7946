package protocol

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/openrpc.json from the code")

// TestOpenRPCMethods: every method constant is in the document once, and
// the document names no other.
func TestOpenRPCMethods(t *testing.T) {
	want := map[string]bool{
		MethodAgentRegister: true, MethodAgentList: true, MethodAgentGet: true, MethodAgentUnregister: true,
		MethodAgentStats: true, MethodTaskSubmit: true, MethodTaskGet: true, MethodTaskWait: true,
		MethodTaskCancel: true, MethodTaskList: true, MethodTaskSubscribe: true, MethodUnsubscribe: true,
		MethodKPISubscribe: true, MethodKPIGet: true, MethodSystemHealth: true, MethodRPCDiscover: true,
	}
	doc := OpenRPC("v")
	seen := map[string]bool{}
	for _, m := range doc.Methods {
		if !want[m.Name] {
			t.Errorf("the document lists %q, which is no method", m.Name)
		}
		if seen[m.Name] {
			t.Errorf("%q is listed twice", m.Name)
		}
		seen[m.Name] = true
		if m.ParamStructure != "by-name" {
			t.Errorf("%s: paramStructure %q", m.Name, m.ParamStructure)
		}
		codes := map[int64]bool{}
		for _, e := range m.Errors {
			codes[e.Code] = true
		}
		if !codes[ErrInvalidParams.Code] || !codes[ErrOverloaded.Code] {
			t.Errorf("%s: errors %v lack -32602 or -32002", m.Name, m.Errors)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("method %q is missing from the document", name)
		}
	}
	if n := doc.Notifications; len(n) != 2 || n[0].Name != NotifyTaskEvent || n[1].Name != NotifyKPIReport {
		t.Errorf("notifications: %+v", n)
	}
}

// TestOpenRPCParamsMatchTypes: each method's params are exactly the JSON
// fields of its params type, required exactly when not omitempty.
func TestOpenRPCParamsMatchTypes(t *testing.T) {
	doc := OpenRPC("v")
	for i, spec := range Methods {
		m := doc.Methods[i]
		fs := fields(spec.Params)
		if len(fs) != len(m.Params) {
			t.Errorf("%s: %d params in the document, %d fields in %s", m.Name, len(m.Params), len(fs), spec.Params)
			continue
		}
		for j, f := range fs {
			p := m.Params[j]
			if p.Name != f.name || p.Required == f.omitempty {
				t.Errorf("%s: param %d is %q (required %v); field %q (omitempty %v)", m.Name, j, p.Name, p.Required, f.name, f.omitempty)
			}
		}
	}
}

// TestOpenRPCRefsResolve: every $ref points at a component, and every
// component describes every JSON field of its Go type.
func TestOpenRPCRefsResolve(t *testing.T) {
	doc := OpenRPC("v")
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	schemas := v.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any)
	var walk func(path string, x any)
	refs := 0
	walk = func(path string, x any) {
		switch y := x.(type) {
		case map[string]any:
			if r, ok := y["$ref"].(string); ok {
				refs++
				name := strings.TrimPrefix(r, "#/components/schemas/")
				if _, ok := schemas[name]; !ok || name == r {
					t.Errorf("%s: $ref %q resolves to nothing", path, r)
				}
			}
			for k, e := range y {
				walk(path+"."+k, e)
			}
		case []any:
			for _, e := range y {
				walk(path+"[]", e)
			}
		}
	}
	walk("$", v)
	if refs == 0 {
		t.Fatal("no $ref at all: the walk is broken")
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Task](), reflect.TypeFor[Agent](), reflect.TypeFor[KPIReport](), reflect.TypeFor[ExecutionResult]()} {
		s, ok := schemas[typ.Name()].(map[string]any)
		if !ok {
			t.Errorf("no component %s", typ.Name())
			continue
		}
		props := s["properties"].(map[string]any)
		for _, f := range fields(typ) {
			if _, ok := props[f.name]; !ok {
				t.Errorf("%s: no property %q", typ.Name(), f.name)
			}
		}
	}
	// Params-side objects refuse unknown members, as the server does.
	if s := schemas["Limits"].(map[string]any); s["additionalProperties"] != false {
		t.Errorf("Limits: additionalProperties %v; want false", s["additionalProperties"])
	}
	if s := schemas["Task"].(map[string]any); s["additionalProperties"] != nil {
		t.Errorf("Task (a result) closes additionalProperties")
	}
}

// TestOpenRPCGolden keeps testdata/openrpc.json, the document as served, for
// review: run with -update after changing the API.
func TestOpenRPCGolden(t *testing.T) {
	got, err := json.MarshalIndent(OpenRPC(""), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const path = "testdata/openrpc.json"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./protocol -run Golden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the OpenRPC document differs from %s; review the change and run go test ./protocol -run Golden -update", path)
	}
}
