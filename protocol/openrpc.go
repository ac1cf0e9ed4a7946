package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"time"
)

// This file builds rpc.discover's OpenRPC 1.x document from one table of
// every method (Methods): its params type, its result type and the errors it
// can answer. The JSON schemas are derived from the Go types by reflection,
// so they cannot drift from what the server decodes and encodes; the few
// constraints a Go type cannot carry (patterns, ranges, enums) are listed in
// fieldRules.

// OpenRPCVersion is the OpenRPC specification version the document follows.
const OpenRPCVersion = "1.3.2"

// APIVersion is the version of the wire contract (PROTOCOL.md v1).
const APIVersion = "1.0.0"

// MethodSpec describes one method for the OpenRPC document.
type MethodSpec struct {
	Name    string
	Summary string
	Params  reflect.Type // a struct of named params; Empty for none
	Result  reflect.Type
	Errors  []*Error // the application and params errors it can answer
}

// NotificationSpec describes one server-to-client notification.
type NotificationSpec struct {
	Name    string
	Summary string
	Params  reflect.Type
}

// Errors any request can get, in addition to its method's own.
var commonErrors = []*Error{ErrInvalidParams, ErrOverloaded}

// Methods lists every method of PROTOCOL.md.
var Methods = []MethodSpec{
	{MethodAgentRegister, "Register a WebAssembly module as an agent (idempotent for the same bytes).",
		reflect.TypeFor[RegisterParams](), reflect.TypeFor[Agent](), []*Error{ErrInvalidModule, ErrLimit, ErrConflict}},
	{MethodAgentList, "List the registered agents.",
		reflect.TypeFor[Empty](), reflect.TypeFor[AgentList](), nil},
	{MethodAgentGet, "Get one agent.",
		reflect.TypeFor[NameParams](), reflect.TypeFor[Agent](), []*Error{ErrNotFound}},
	{MethodAgentUnregister, "Unregister an agent; its queued tasks fail with agent_missing.",
		reflect.TypeFor[NameParams](), reflect.TypeFor[Empty](), []*Error{ErrNotFound}},
	{MethodAgentStats, "Task statistics of one agent, or of all.",
		reflect.TypeFor[StatsParams](), reflect.TypeFor[AgentStatsList](), []*Error{ErrNotFound}},
	{MethodTaskSubmit, "Submit a task; with subscribe: true its events stream to this connection.",
		reflect.TypeFor[SubmitParams](), reflect.TypeFor[SubmitResult](), []*Error{ErrNotFound, ErrLimit, ErrConflict, ErrShuttingDown}},
	{MethodTaskGet, "Get one task.",
		reflect.TypeFor[TaskIDParams](), reflect.TypeFor[Task](), []*Error{ErrNotFound}},
	{MethodTaskWait, "Wait until a task is terminal, or until timeout_ms passes; answers the task.",
		reflect.TypeFor[WaitParams](), reflect.TypeFor[Task](), []*Error{ErrNotFound}},
	{MethodTaskCancel, "Cancel a task; a running guest is stopped.",
		reflect.TypeFor[TaskIDParams](), reflect.TypeFor[Task](), []*Error{ErrNotFound}},
	{MethodTaskList, "List tasks, newest first, a page at a time.",
		reflect.TypeFor[ListParams](), reflect.TypeFor[TaskList](), nil},
	{MethodTaskSubscribe, "Stream the events of matching tasks to this connection as task.event; after_seq replays stored events first.",
		reflect.TypeFor[SubscribeParams](), reflect.TypeFor[SubscriptionResult](), []*Error{ErrShuttingDown}},
	{MethodUnsubscribe, "End one of this connection's subscriptions.",
		reflect.TypeFor[UnsubscribeParams](), reflect.TypeFor[Empty](), []*Error{ErrNotFound}},
	{MethodKPISubscribe, "Send a kpi.report to this connection every interval_ms.",
		reflect.TypeFor[KPISubscribeParams](), reflect.TypeFor[SubscriptionResult](), []*Error{ErrShuttingDown}},
	{MethodKPIGet, "The fabric's KPIs over the sliding window.",
		reflect.TypeFor[Empty](), reflect.TypeFor[KPIReport](), nil},
	{MethodSystemHealth, "The server's status, version, engine and load.",
		reflect.TypeFor[Empty](), reflect.TypeFor[Health](), nil},
	{MethodRPCDiscover, "This OpenRPC document.",
		reflect.TypeFor[Empty](), reflect.TypeFor[OpenRPCDocument](), nil},
}

// Notifications lists the notifications the server sends.
var Notifications = []NotificationSpec{
	{NotifyTaskEvent, "An event of a task a subscription matches; seq grows by one per stored event, server-wide.",
		reflect.TypeFor[TaskEvent]()},
	{NotifyKPIReport, "A KPI report of a kpi.subscribe subscription.",
		reflect.TypeFor[KPIReportNotification]()},
}

// OpenRPCDocument is an OpenRPC 1.x document. Notifications, which OpenRPC
// has no place for, are listed under the extension "x-notifications" in the
// shape of methods without a result.
type OpenRPCDocument struct {
	OpenRPC       string                `json:"openrpc"`
	Info          OpenRPCInfo           `json:"info"`
	Methods       []OpenRPCMethod       `json:"methods"`
	Components    OpenRPCComponents     `json:"components"`
	Notifications []OpenRPCNotification `json:"x-notifications"`
}

// OpenRPCInfo is the document's info object.
type OpenRPCInfo struct {
	Title         string `json:"title"`
	Description   string `json:"description"`
	Version       string `json:"version"`
	ServerVersion string `json:"x-server-version,omitempty"`
}

// OpenRPCMethod is a method object.
type OpenRPCMethod struct {
	Name           string              `json:"name"`
	Summary        string              `json:"summary"`
	ParamStructure string              `json:"paramStructure"`
	Params         []ContentDescriptor `json:"params"`
	Result         ContentDescriptor   `json:"result"`
	Errors         []OpenRPCError      `json:"errors"`
}

// OpenRPCNotification is a notification described as a method object.
type OpenRPCNotification struct {
	Name           string              `json:"name"`
	Summary        string              `json:"summary"`
	ParamStructure string              `json:"paramStructure"`
	Params         []ContentDescriptor `json:"params"`
}

// ContentDescriptor is an OpenRPC content descriptor.
type ContentDescriptor struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required,omitempty"`
	Schema      Schema `json:"schema"`
}

// OpenRPCError is an error object.
type OpenRPCError struct {
	Code    int64  `json:"code"`
	Message string `json:"message"`
}

// OpenRPCComponents holds the schemas that methods refer to with $ref.
type OpenRPCComponents struct {
	Schemas map[string]Schema `json:"schemas"`
}

// Schema is a JSON Schema.
type Schema map[string]any

var (
	docOnce sync.Once
	doc     OpenRPCDocument
)

// OpenRPC returns the OpenRPC document of every method; serverVersion is
// shown as info.x-server-version. The document is built once; callers must
// not modify what they get beyond the copy's Info.
func OpenRPC(serverVersion string) *OpenRPCDocument {
	docOnce.Do(func() { doc = buildOpenRPC() })
	d := doc
	d.Info.ServerVersion = serverVersion
	return &d
}

func buildOpenRPC() OpenRPCDocument {
	g := &schemaGen{schemas: map[string]Schema{}, closed: map[reflect.Type]bool{}}
	for _, m := range Methods {
		g.markClosed(m.Params)
	}
	d := OpenRPCDocument{
		OpenRPC: OpenRPCVersion,
		Info: OpenRPCInfo{
			Title: "Fabric",
			Description: "Fabric runs tasks in sandboxed WebAssembly agents. Params are named (an object); " +
				"unknown params are refused with -32602. Every request may also get -32600, -32601, -32603, " +
				"and -32004 (unauthorized) when the connection has no valid token.",
			Version: APIVersion,
		},
	}
	for _, m := range Methods {
		om := OpenRPCMethod{
			Name:           m.Name,
			Summary:        m.Summary,
			ParamStructure: "by-name",
			Params:         g.params(m.Params),
			Result:         ContentDescriptor{Name: resultName(m.Result), Schema: g.schema(m.Result)},
		}
		for _, e := range append(append([]*Error{}, commonErrors...), m.Errors...) {
			om.Errors = append(om.Errors, OpenRPCError{Code: e.Code, Message: e.Message})
		}
		d.Methods = append(d.Methods, om)
	}
	for _, n := range Notifications {
		d.Notifications = append(d.Notifications, OpenRPCNotification{
			Name: n.Name, Summary: n.Summary, ParamStructure: "by-name", Params: g.params(n.Params),
		})
	}
	d.Components.Schemas = g.schemas
	return d
}

func resultName(t reflect.Type) string {
	if t == reflect.TypeFor[OpenRPCDocument]() {
		return "OpenrpcDocument"
	}
	return t.Name()
}

// schemaGen derives JSON schemas from Go types.
type schemaGen struct {
	schemas map[string]Schema
	// closed are the struct types reachable from params: the server refuses
	// their unknown fields, so their schemas say additionalProperties: false.
	closed map[reflect.Type]bool
}

func (g *schemaGen) markClosed(t reflect.Type) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || g.closed[t] || special(t) != nil {
		return
	}
	g.closed[t] = true
	for _, f := range fields(t) {
		g.markClosed(f.typ)
	}
}

// params turns a params struct into by-name content descriptors.
func (g *schemaGen) params(t reflect.Type) []ContentDescriptor {
	out := []ContentDescriptor{}
	for _, f := range fields(t) {
		s := g.fieldSchema(t, f)
		cd := ContentDescriptor{Name: f.name, Required: !f.omitempty, Schema: s}
		if d, ok := s["description"].(string); ok {
			cd.Description = d
		}
		out = append(out, cd)
	}
	return out
}

type field struct {
	name      string
	typ       reflect.Type
	omitempty bool
}

// fields lists the JSON fields of a struct, embedded structs flattened.
func fields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			out = append(out, fields(sf.Type)...)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out = append(out, field{name: name, typ: sf.Type, omitempty: strings.Contains(","+opts+",", ",omitempty,")})
	}
	return out
}

// special returns the schema of the types JSON encodes in their own way.
func special(t reflect.Type) Schema {
	switch t {
	case reflect.TypeFor[time.Time]():
		return Schema{"type": "string", "format": "date-time"}
	case reflect.TypeFor[json.RawMessage]():
		return Schema{"description": "any JSON value"}
	case reflect.TypeFor[[]byte]():
		return Schema{"type": "string", "contentEncoding": "base64"}
	case reflect.TypeFor[Priority]():
		names := []any{}
		for _, p := range Priorities {
			names = append(names, p.String())
		}
		return Schema{"type": "string", "enum": names}
	case reflect.TypeFor[State]():
		names := []any{}
		for _, s := range States {
			names = append(names, string(s))
		}
		return Schema{"type": "string", "enum": names}
	case reflect.TypeFor[Schema]():
		return Schema{"type": "object", "description": "a JSON Schema"}
	}
	return nil
}

func (g *schemaGen) schema(t reflect.Type) Schema {
	if s := special(t); s != nil {
		return s
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return Schema{"type": "string"}
	case reflect.Bool:
		return Schema{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return Schema{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Schema{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return Schema{"type": "number"}
	case reflect.Slice, reflect.Array:
		return Schema{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return Schema{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return Schema{}
	case reflect.Struct:
		return g.component(t)
	}
	panic("protocol: no JSON schema for " + t.String())
}

// component registers a named struct's schema and returns a reference to it.
func (g *schemaGen) component(t reflect.Type) Schema {
	name := t.Name()
	if t == reflect.TypeFor[OpenRPCDocument]() {
		return Schema{"type": "object", "description": "an OpenRPC document (https://spec.open-rpc.org)",
			"required": []any{"openrpc", "info", "methods"}}
	}
	ref := Schema{"$ref": "#/components/schemas/" + name}
	if _, ok := g.schemas[name]; ok {
		return ref
	}
	s := Schema{"type": "object", "title": name}
	g.schemas[name] = s // before the fields: types may refer to themselves
	props := Schema{}
	required := []any{}
	for _, f := range fields(t) {
		props[f.name] = g.fieldSchema(t, f)
		if !f.omitempty {
			required = append(required, f.name)
		}
	}
	s["properties"] = props
	if len(required) > 0 {
		s["required"] = required
	}
	if g.closed[t] {
		s["additionalProperties"] = false
	}
	return ref
}

// fieldSchema is a field's schema with its rules applied. A pointer field
// without omitempty is sent as null when unset.
func (g *schemaGen) fieldSchema(owner reflect.Type, f field) Schema {
	s := g.schema(f.typ)
	if rule, ok := fieldRules[owner.Name()+"."+f.name]; ok {
		c := Schema{}
		for k, v := range s {
			c[k] = v
		}
		if _, isRef := c["$ref"]; isRef {
			c = Schema{"allOf": []any{s}}
		}
		for k, v := range rule {
			if k == "items" {
				items := Schema{}
				for ik, iv := range c["items"].(Schema) {
					items[ik] = iv
				}
				for ik, iv := range v.(Schema) {
					items[ik] = iv
				}
				c["items"] = items
				continue
			}
			c[k] = v
		}
		s = c
	}
	if f.typ.Kind() == reflect.Pointer && !f.omitempty {
		s = Schema{"oneOf": []any{s, Schema{"type": "null"}}}
	}
	return s
}

const namePattern = "^[a-z0-9][a-z0-9._-]{0,62}$"

var (
	nameRule = Schema{"pattern": namePattern, "description": "an agent name: [a-z0-9][a-z0-9._-]{0,62}"}
	abiRule  = Schema{"enum": []any{ABIWasiCommand, ABIFabricV1}}
)

// fieldRules are the constraints the Go types cannot carry, by
// "Type.json_name".
var fieldRules = map[string]Schema{
	"RegisterParams.name":            nameRule,
	"RegisterParams.wasm":            {"description": "the module's bytes, base64"},
	"RegisterParams.abi":             {"enum": []any{ABIWasiCommand, ABIFabricV1}, "description": "detected from the exports when left out"},
	"RegisterParams.entry":           {"maxLength": 255, "description": "the entry function; default run (fabric-v1) or _start (wasi-command)"},
	"RegisterParams.capabilities":    {"items": Schema{"enum": []any{CapClock, CapRandom}}, "uniqueItems": true},
	"RegisterParams.replace":         {"description": "replace an agent of this name registered with other bytes or settings"},
	"RegisterParams.reuse_instances": {"description": "opt in to instance reuse (fabric-v1 only; -32602 otherwise): a task may run in an instance kept from the agent's earlier tasks, seeing the memory and globals they left; an instance is discarded after any failed task. Default false: a fresh instance per task"},
	"Agent.reuse_instances":          {"description": "the agent opted in to instance reuse at register (absent: every task in a fresh instance)"},
	"NameParams.name":                nameRule,
	"StatsParams.name":               nameRule,
	"Agent.name":                     nameRule,
	"Agent.abi":                      abiRule,
	"Agent.digest":                   {"pattern": "^sha256:[0-9a-f]{64}$"},
	"AgentStats.name":                nameRule,
	"Limits.memory_mb":               {"minimum": 0},
	"Limits.output_bytes":            {"minimum": 0},
	"Limits.timeout_ms":              {"minimum": 0},
	"Limits.log_bytes":               {"minimum": 0},
	"SubmitParams.agent":             nameRule,
	"SubmitParams.input":             {"description": "any JSON value, handed to the agent as its UTF-8 JSON text; at most one of input and input_base64"},
	"SubmitParams.input_base64":      {"description": "raw input bytes, base64"},
	"SubmitParams.timeout_ms":        {"minimum": 0, "description": "0 or absent: the agent's or the server's default"},
	"SubmitParams.max_retries":       {"minimum": 0, "maximum": MaxRetriesCeiling, "description": "default 3"},
	"SubmitParams.idempotency_key": {"maxLength": MaxIdempotencyKey,
		"description": "a second submit with the same key and params returns the first task (created: false); with other params it is -32006"},
	"SubmitParams.labels":    {"maxProperties": MaxLabels, "additionalProperties": Schema{"type": "string", "maxLength": MaxLabelBytes}},
	"SubmitParams.subscribe": {"description": "stream this task's events to this connection; the result then carries subscription_id"},
	"Backoff.initial_ms":     {"minimum": 0},
	"Backoff.max_ms":         {"minimum": 0},
	"Backoff.multiplier":     {"minimum": 0, "maximum": 100, "description": "1..100; 0 or absent: 2"},
	"Backoff.jitter":         {"minimum": 0, "maximum": 1},
	"Quota.memory_mb":        {"minimum": 0},
	"Quota.output_bytes":     {"minimum": 0},
	"TaskIDParams.task_id":   {"minLength": 1, "maxLength": 128},
	"WaitParams.task_id":     {"minLength": 1, "maxLength": 128},
	"WaitParams.timeout_ms":  {"minimum": 0, "maximum": MaxWaitTimeout.Milliseconds(), "description": "absent: wait up to 24h"},
	"ListParams.agent":       nameRule,
	"ListParams.label":       {"description": `"key" (has the label) or "key=value"`},
	"ListParams.limit":       {"minimum": 0, "maximum": MaxListLimit, "description": "0 or absent: 100"},
	"ListParams.cursor":      {"description": "next_cursor of the previous page"},
	"TaskList.next_cursor":   {"description": `"" after the last page`},
	"SubscribeParams.task_ids": {"maxItems": MaxSubscribeIDs,
		"description": "the tasks to follow; absent: every task (of agent, if given)"},
	"SubscribeParams.agent":              nameRule,
	"SubscribeParams.after_seq":          {"minimum": 0, "description": "first replay the stored events with a greater seq"},
	"KPISubscribeParams.interval_ms":     {"minimum": MinKPIIntervalMs, "maximum": MaxKPIIntervalMs},
	"TaskEvent.progress":                 {"minimum": 0, "maximum": 1},
	"TaskError.code":                     {"enum": []any{CodeTrap, CodeTimeout, CodeMemoryLimit, CodeOutputLimit, CodeFuelExhausted, CodeExitStatus, CodeAgentError, CodeAgentMissing, CodeCancelled, CodeInternal}},
	"LogLine.level":                      {"enum": []any{LogLevels[0], LogLevels[1], LogLevels[2], LogLevels[3]}},
	"Health.status":                      {"enum": []any{HealthOK, HealthDegraded, HealthDraining}},
	"ResourceUsage.gpu_utilization":      {"description": "null when there is no GPU"},
	"KPIReport.queue_depth":              {"description": "queued and retrying tasks by priority"},
	"ExecutionResult.output":             {"description": "the agent's output when it is valid JSON"},
	"ExecutionResult.output_base64":      {"description": "the agent's output when it is not valid JSON"},
	"ExecutionResult.logs_truncated":     {"description": "the agent logged more than its log cap; later lines were dropped"},
	"SubmitResult.subscription_id":       {"description": "set when subscribe was true"},
	"KPIReportNotification.report":       {"description": "see kpi.get"},
	"SubscriptionResult.subscription_id": {"description": "stamped on every notification of the subscription"},
}
