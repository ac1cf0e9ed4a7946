// Package sched is Fabric's scheduler: it accepts tasks, keeps them in the
// store's priority queue, runs them on a pool of workers through the executor,
// retries them with backoff, and publishes their events and KPIs.
package sched

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/metrics"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// Limits are the server's ceilings and defaults for agents and tasks.
type Limits struct {
	MaxModuleBytes     int64         // agent.register's module size
	MaxInputBytes      int64         // a task's input
	MaxMemoryMB        int64         // ceiling of a task's linear memory
	DefaultMemoryMB    int64         // when neither agent nor quota says
	MaxOutputBytes     int64         // ceiling of a task's output
	DefaultOutputBytes int64         //
	MaxLogBytes        int64         // ceiling of a task's kept logs
	DefaultTimeout     time.Duration // when the submit gives none
	MaxTimeout         time.Duration // ceiling of timeout_ms
	DefaultMaxRetries  int           // when the submit gives none (PROTOCOL.md: 3)
}

// DefaultLimits are the limits fabricd starts with.
var DefaultLimits = Limits{
	MaxModuleBytes:     64 << 20,
	MaxInputBytes:      16 << 20,
	MaxMemoryMB:        1024,
	DefaultMemoryMB:    256,
	MaxOutputBytes:     16 << 20,
	DefaultOutputBytes: 4 << 20,
	MaxLogBytes:        1 << 20,
	DefaultTimeout:     30 * time.Second,
	MaxTimeout:         time.Hour,
	DefaultMaxRetries:  3,
}

// Config configures a Scheduler.
type Config struct {
	Store     store.Store
	Engine    executor.Engine
	Workers   int // default: the number of CPUs
	MaxQueued int // queued + retrying tasks before task.submit answers -32002; default 100000
	Limits    Limits
	KPIWindow time.Duration // default 60s
	// ProgressInterval coalesces a task's progress reports: at most one
	// stored event per interval per task. Default 100ms.
	ProgressInterval time.Duration
	Retention        Retention
	Logger           zerolog.Logger
	Metrics          *metrics.Metrics // nil records nothing
	Version          string
	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
}

// Sink receives events of a subscription. It is called synchronously by the
// publisher and must not block; events of one task arrive in order.
type Sink func(ev protocol.TaskEvent)

// Retention says how long finished tasks and their events are kept. The zero
// value keeps everything.
type Retention struct {
	MaxAge time.Duration // remove finished tasks older than this (0: no age limit)
	Keep   int           // but always keep this many of the newest finished tasks
	// Max is a hard cap (0: none): finished tasks beyond the newest Max go
	// whatever their age. Besides the timer, a prune starts once Max/8
	// tasks (at least 1) have finished since the last, so the count stays
	// within about Max + Max/8 under any load, with no prune per task.
	Max      int
	Interval time.Duration // how often to prune; default 1 minute
}
