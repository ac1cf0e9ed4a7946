package protocol

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Priority orders tasks: Critical runs before High, and so on down to
// Background. Among equal priorities tasks run in the order they were accepted.
type Priority int8

const (
	Background Priority = iota
	Low
	Normal
	High
	Critical
)

// Priorities lists every priority from the most to the least urgent.
var Priorities = []Priority{Critical, High, Normal, Low, Background}

var priorityNames = [...]string{"background", "low", "normal", "high", "critical"}

func (p Priority) String() string {
	if p < Background || p > Critical {
		return fmt.Sprintf("Priority(%d)", int8(p))
	}
	return priorityNames[p]
}

// ParsePriority parses a wire name; the empty string means Normal.
func ParsePriority(s string) (Priority, error) {
	if s == "" {
		return Normal, nil
	}
	for i, n := range priorityNames {
		if n == s {
			return Priority(i), nil
		}
	}
	return 0, fmt.Errorf("want one of critical, high, normal, low, background; got %q", s)
}

func (p Priority) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

func (p *Priority) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want one of critical, high, normal, low, background; got %s", b)
	}
	v, err := ParsePriority(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// State is a task's state.
type State string

const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateRetrying  State = "retrying"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// States lists every state.
var States = []State{StateQueued, StateRunning, StateRetrying, StateSucceeded, StateFailed, StateCancelled}

// Terminal reports whether no further transition can happen.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// ABIs an agent may use (GUEST_ABI.md).
const (
	ABIWasiCommand = "wasi-command"
	ABIFabricV1    = "fabric-v1"
)

// Capabilities an agent may be granted at registration.
const (
	CapClock  = "clock"
	CapRandom = "random"
)

// Limits are an agent's ceilings for its tasks. Zero fields mean "the server's
// ceiling".
type Limits struct {
	MemoryMB    int64  `json:"memory_mb,omitempty"`
	OutputBytes int64  `json:"output_bytes,omitempty"`
	TimeoutMs   int64  `json:"timeout_ms,omitempty"`
	LogBytes    int64  `json:"log_bytes,omitempty"`
	Fuel        uint64 `json:"fuel,omitempty"`
}

// Agent is a registered WebAssembly module.
type Agent struct {
	Name         string    `json:"name"`
	Digest       string    `json:"digest"`
	ABI          string    `json:"abi"`
	Entry        string    `json:"entry"`
	SizeBytes    int64     `json:"size_bytes"`
	Capabilities []string  `json:"capabilities"`
	Limits       Limits    `json:"limits"`
	RegisteredAt time.Time `json:"registered_at"`
	// ReuseInstances: the agent's tasks may run in an instance that ran
	// its earlier tasks (one at a time), which keeps its linear memory and
	// globals. Faster; and a task can see what earlier tasks of the same
	// agent left in that memory (never another agent's). An instance is
	// discarded after any failed task. Off unless asked for at register.
	ReuseInstances bool `json:"reuse_instances,omitempty"`
}

// AgentStats summarises an agent's tasks.
type AgentStats struct {
	Name            string     `json:"name"`
	TasksTotal      int64      `json:"tasks_total"`
	Succeeded       int64      `json:"succeeded"`
	Failed          int64      `json:"failed"`
	Cancelled       int64      `json:"cancelled"`
	Running         int64      `json:"running"`
	AvgDurationMs   float64    `json:"avg_duration_ms"`
	P50Ms           float64    `json:"p50_ms"`
	P99Ms           float64    `json:"p99_ms"`
	CPUSecondsTotal float64    `json:"cpu_seconds_total"`
	MemoryPeakMBMax float64    `json:"memory_peak_mb_max"`
	LastTaskAt      *time.Time `json:"last_task_at"`
}

// Backoff is the retry delay policy: the delay before retry n (n from 1) is
// min(MaxMs, InitialMs * Multiplier^(n-1)), spread by ±Jitter.
type Backoff struct {
	InitialMs  int64   `json:"initial_ms"`
	MaxMs      int64   `json:"max_ms"`
	Multiplier float64 `json:"multiplier"`
	Jitter     float64 `json:"jitter"`
}

// DefaultBackoff applies where a submit gives none.
var DefaultBackoff = Backoff{InitialMs: 1000, MaxMs: 60000, Multiplier: 2, Jitter: 0.2}

// Delay returns the delay before retry n (n >= 1). u is a uniform random
// number in [0, 1) that places the delay within the jitter band.
func (b Backoff) Delay(n int, u float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(b.InitialMs) * math.Pow(b.Multiplier, float64(n-1))
	if d > float64(b.MaxMs) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.MaxMs)
	}
	d *= 1 + b.Jitter*(2*u-1)
	if d < 0 {
		d = 0
	}
	return time.Duration(d * float64(time.Millisecond))
}

// Quota caps one task. Zero fields mean "the agent's ceiling".
type Quota struct {
	MemoryMB    int64   `json:"memory_mb,omitempty"`
	OutputBytes int64   `json:"output_bytes,omitempty"`
	Fuel        *uint64 `json:"fuel,omitempty"`
}

// Task is a unit of work as the wire shows it.
type Task struct {
	TaskID         string            `json:"task_id"`
	Agent          string            `json:"agent"`
	Priority       Priority          `json:"priority"`
	State          State             `json:"state"`
	Attempt        int               `json:"attempt"`
	MaxRetries     int               `json:"max_retries"`
	Labels         map[string]string `json:"labels"`
	CreatedAt      time.Time         `json:"created_at"`
	StartedAt      *time.Time        `json:"started_at,omitempty"`
	FinishedAt     *time.Time        `json:"finished_at,omitempty"`
	NextAttemptAt  *time.Time        `json:"next_attempt_at,omitempty"`
	Result         *ExecutionResult  `json:"result,omitempty"`
	Error          *TaskError        `json:"error,omitempty"`
	TimeoutMs      int64             `json:"timeout_ms"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	// AttemptErrors holds every failed attempt's error, oldest first: the
	// dead-letter record of a task that exhausted its retries.
	AttemptErrors []TaskError `json:"attempt_errors,omitempty"`
}

// LogLine is one line an agent logged.
type LogLine struct {
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	At    time.Time `json:"at"`
}

// Log levels, by the number a guest passes to fabric.log.
var LogLevels = [...]string{"debug", "info", "warn", "error"}

// ExecutionResult is what one attempt produced. Output holds the agent's
// output when it is valid JSON; OutputBase64 otherwise. An empty output sets
// neither.
type ExecutionResult struct {
	Output       json.RawMessage    `json:"output,omitempty"`
	OutputBase64 []byte             `json:"output_base64,omitempty"`
	Usage        ResourceUsage      `json:"usage"`
	KPIs         map[string]float64 `json:"kpis"`
	Logs         []LogLine          `json:"logs"`
	DurationMs   float64            `json:"duration_ms"`
	// LogsTruncated says the agent logged more than its log cap; later lines
	// were dropped.
	LogsTruncated bool `json:"logs_truncated,omitempty"`
}

// SetOutput stores out as Output when it is valid JSON, else as OutputBase64.
func (r *ExecutionResult) SetOutput(out []byte) {
	r.Output, r.OutputBase64 = nil, nil
	if len(out) == 0 {
		return
	}
	if json.Valid(out) {
		r.Output = json.RawMessage(out)
		return
	}
	r.OutputBase64 = out
}

// ResourceUsage is what an attempt measurably used.
type ResourceUsage struct {
	CPUSeconds     float64  `json:"cpu_seconds"`
	MemoryPeakMB   float64  `json:"memory_peak_mb"`
	NetworkTxBytes int64    `json:"network_tx_bytes"`
	NetworkRxBytes int64    `json:"network_rx_bytes"`
	DiskIOOps      int64    `json:"disk_io_ops"`
	GPUUtilization *float64 `json:"gpu_utilization"`
	FuelConsumed   *uint64  `json:"fuel_consumed,omitempty"`
}

// Task error codes.
const (
	CodeTrap          = "trap"
	CodeTimeout       = "timeout"
	CodeMemoryLimit   = "memory_limit"
	CodeOutputLimit   = "output_limit"
	CodeFuelExhausted = "fuel_exhausted"
	CodeExitStatus    = "exit_status"
	CodeAgentError    = "agent_error"
	CodeAgentMissing  = "agent_missing"
	CodeCancelled     = "cancelled"
	CodeInternal      = "internal"
)

// TaskError says why an attempt failed.
type TaskError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// NewTaskError builds a TaskError with Retryable set from its code.
func NewTaskError(code, format string, args ...any) *TaskError {
	return &TaskError{Code: code, Message: fmt.Sprintf(format, args...), Retryable: Retryable(code)}
}

func (e *TaskError) Error() string { return e.Code + ": " + e.Message }

// Retryable reports whether a failure with this code may be retried.
func Retryable(code string) bool {
	switch code {
	case CodeAgentMissing, CodeCancelled, CodeMemoryLimit, CodeOutputLimit, CodeFuelExhausted:
		return false
	}
	return true
}

// TaskEvent is a stored event of a task, sent as the task.event notification.
type TaskEvent struct {
	SubscriptionID string           `json:"subscription_id,omitempty"`
	Seq            int64            `json:"seq"`
	TaskID         string           `json:"task_id"`
	Agent          string           `json:"agent,omitempty"`
	State          State            `json:"state"`
	Attempt        int              `json:"attempt"`
	At             time.Time        `json:"at"`
	Progress       *float64         `json:"progress,omitempty"`
	Result         *ExecutionResult `json:"result,omitempty"`
	Error          *TaskError       `json:"error,omitempty"`
}

// LatencyMs are latency percentiles in milliseconds.
type LatencyMs struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// KPIReport summarises the fabric over a sliding window.
type KPIReport struct {
	At             time.Time          `json:"at"`
	WindowS        float64            `json:"window_s"`
	Submitted      int64              `json:"submitted"`
	Completed      int64              `json:"completed"`
	Failed         int64              `json:"failed"`
	ThroughputPerS float64            `json:"throughput_per_s"`
	LatencyMs      LatencyMs          `json:"latency_ms"`
	QueueDepth     map[string]int     `json:"queue_depth"`
	Running        int                `json:"running"`
	Workers        int                `json:"workers"`
	Agents         []AgentStats       `json:"agents"`
	Custom         map[string]float64 `json:"custom"`
}

// Health is system.health's result.
type Health struct {
	Status     string  `json:"status"`
	Version    string  `json:"version"`
	Engine     string  `json:"engine"`
	UptimeS    float64 `json:"uptime_s"`
	QueueDepth int     `json:"queue_depth"`
	Running    int     `json:"running"`
}

// Health statuses.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
	HealthDraining = "draining"
)

// nameOK reports whether s matches [a-z0-9][a-z0-9._-]{0,62}.
func nameOK(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._-", rune(c))) {
			return false
		}
	}
	return true
}
