package sched

import (
	"context"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// Scheduler accepts, queues, runs and reports tasks.
type Scheduler struct {
	cfg Config
}

// Subscription is a live feed of task events; Close ends it.
type Subscription struct {
	close func()
}

// Close ends the subscription; no event is delivered after it returns.
func (s *Subscription) Close() { s.close() }

// New returns a Scheduler; Start starts it.
func New(cfg Config) (*Scheduler, error) { panic("unimplemented") }

// Start recovers the store's state, loads agents and starts the workers.
func (s *Scheduler) Start(ctx context.Context) error { panic("unimplemented") }

// Drain stops accepting tasks (task.submit answers -32007) and lets running
// tasks finish until ctx is done; then Stop.
func (s *Scheduler) Drain() { panic("unimplemented") }

// Stop stops the workers: running tasks are given until ctx is done, then
// stopped and requeued durably. It is idempotent.
func (s *Scheduler) Stop(ctx context.Context) error { panic("unimplemented") }

func (s *Scheduler) RegisterAgent(ctx context.Context, p *protocol.RegisterParams) (protocol.Agent, error) {
	panic("unimplemented")
}
func (s *Scheduler) Agents(ctx context.Context) ([]protocol.Agent, error) { panic("unimplemented") }
func (s *Scheduler) Agent(ctx context.Context, name string) (protocol.Agent, error) {
	panic("unimplemented")
}
func (s *Scheduler) UnregisterAgent(ctx context.Context, name string) error { panic("unimplemented") }
func (s *Scheduler) AgentStats(ctx context.Context, name string) ([]protocol.AgentStats, error) {
	panic("unimplemented")
}

// Submit accepts a task. If sink is not nil, the task's events (from its
// first) are delivered to it through the returned subscription.
func (s *Scheduler) Submit(ctx context.Context, p *protocol.SubmitParams, sink Sink) (protocol.SubmitResult, *Subscription, error) {
	panic("unimplemented")
}
func (s *Scheduler) Task(ctx context.Context, id string) (protocol.Task, error) {
	panic("unimplemented")
}

// Wait returns the task once it is terminal, or as it stands after timeout.
func (s *Scheduler) Wait(ctx context.Context, id string, timeout time.Duration) (protocol.Task, error) {
	panic("unimplemented")
}
func (s *Scheduler) Cancel(ctx context.Context, id string) (protocol.Task, error) {
	panic("unimplemented")
}
func (s *Scheduler) List(ctx context.Context, p *protocol.ListParams) (protocol.TaskList, error) {
	panic("unimplemented")
}

// Subscribe delivers matching events to sink: first the stored ones after
// afterSeq (if not nil), then live ones, with no gap and no duplicate.
func (s *Scheduler) Subscribe(ctx context.Context, f store.EventFilter, afterSeq *int64, sink Sink) (*Subscription, error) {
	panic("unimplemented")
}
func (s *Scheduler) KPI(ctx context.Context) protocol.KPIReport { panic("unimplemented") }
func (s *Scheduler) Health(ctx context.Context) protocol.Health { panic("unimplemented") }
