package protocol

import (
	"encoding/json"
	"time"
)

// Method names.
const (
	MethodAgentRegister   = "agent.register"
	MethodAgentList       = "agent.list"
	MethodAgentGet        = "agent.get"
	MethodAgentUnregister = "agent.unregister"
	MethodAgentStats      = "agent.stats"
	MethodTaskSubmit      = "task.submit"
	MethodTaskGet         = "task.get"
	MethodTaskWait        = "task.wait"
	MethodTaskCancel      = "task.cancel"
	MethodTaskList        = "task.list"
	MethodTaskSubscribe   = "task.subscribe"
	MethodUnsubscribe     = "unsubscribe"
	MethodKPISubscribe    = "kpi.subscribe"
	MethodKPIGet          = "kpi.get"
	MethodSystemHealth    = "system.health"
	MethodRPCDiscover     = "rpc.discover"

	// Notifications, server to client.
	NotifyTaskEvent = "task.event"
	NotifyKPIReport = "kpi.report"
)

// Empty is the params and result of methods that take or give nothing.
type Empty struct{}

// RegisterParams are agent.register's params. Wasm is base64 on the wire.
type RegisterParams struct {
	Name         string   `json:"name"`
	Wasm         []byte   `json:"wasm"`
	ABI          string   `json:"abi,omitempty"`
	Entry        string   `json:"entry,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	Limits       *Limits  `json:"limits,omitempty"`
	Replace      bool     `json:"replace,omitempty"`
	// ReuseInstances lets the engine run the agent's tasks in instances
	// kept from its earlier tasks (fabric-v1 only; see Agent).
	ReuseInstances bool `json:"reuse_instances,omitempty"`
}

// NameParams name one agent (agent.get, agent.unregister).
type NameParams struct {
	Name string `json:"name"`
}

// StatsParams are agent.stats's params.
type StatsParams struct {
	Name string `json:"name,omitempty"`
}

// AgentList is agent.list's result.
type AgentList struct {
	Agents []Agent `json:"agents"`
}

// AgentStatsList is agent.stats's result.
type AgentStatsList struct {
	Agents []AgentStats `json:"agents"`
}

// SubmitParams are task.submit's params.
type SubmitParams struct {
	Agent          string            `json:"agent"`
	Input          json.RawMessage   `json:"input,omitempty"`
	InputBase64    []byte            `json:"input_base64,omitempty"`
	Priority       *Priority         `json:"priority,omitempty"` // nil: Normal
	TimeoutMs      int64             `json:"timeout_ms,omitempty"`
	MaxRetries     *int              `json:"max_retries,omitempty"`
	Backoff        *Backoff          `json:"backoff,omitempty"`
	Quota          *Quota            `json:"quota,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Subscribe      bool              `json:"subscribe,omitempty"`
}

// SubmitResult is task.submit's result.
type SubmitResult struct {
	TaskID  string `json:"task_id"`
	State   State  `json:"state"`
	Created bool   `json:"created"`
	// SubscriptionID names the subscription made by subscribe: true.
	SubscriptionID string `json:"subscription_id,omitempty"`
}

// TaskIDParams name one task (task.get, task.cancel).
type TaskIDParams struct {
	TaskID string `json:"task_id"`
}

// WaitParams are task.wait's params.
type WaitParams struct {
	TaskID    string `json:"task_id"`
	TimeoutMs *int64 `json:"timeout_ms,omitempty"`
}

// ListParams are task.list's params.
type ListParams struct {
	State  State  `json:"state,omitempty"`
	Agent  string `json:"agent,omitempty"`
	Label  string `json:"label,omitempty"` // "key" or "key=value"
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// TaskList is task.list's result.
type TaskList struct {
	Tasks      []Task `json:"tasks"`
	NextCursor string `json:"next_cursor"`
}

// SubscribeParams are task.subscribe's params.
type SubscribeParams struct {
	TaskIDs  []string `json:"task_ids,omitempty"`
	Agent    string   `json:"agent,omitempty"`
	AfterSeq *int64   `json:"after_seq,omitempty"`
}

// SubscriptionResult is the result of task.subscribe and kpi.subscribe.
type SubscriptionResult struct {
	SubscriptionID string `json:"subscription_id"`
}

// UnsubscribeParams are unsubscribe's params.
type UnsubscribeParams struct {
	SubscriptionID string `json:"subscription_id"`
}

// KPISubscribeParams are kpi.subscribe's params.
type KPISubscribeParams struct {
	IntervalMs int64 `json:"interval_ms"`
}

// KPIReportNotification is kpi.report's params.
type KPIReportNotification struct {
	SubscriptionID string    `json:"subscription_id"`
	Report         KPIReport `json:"report"`
}

// Bounds the protocol itself sets, whatever the server's configuration.
const (
	MaxListLimit      = 1000
	DefaultListLimit  = 100
	MinKPIIntervalMs  = 100
	MaxKPIIntervalMs  = 3_600_000
	MaxWaitTimeout    = 24 * time.Hour
	MaxLabels         = 32
	MaxLabelBytes     = 256
	MaxIdempotencyKey = 256
	MaxRetriesCeiling = 100
	MaxSubscribeIDs   = 1000
)
