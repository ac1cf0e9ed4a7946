package sched

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// kpiWindow keeps what happened over a sliding window: submits, and each
// finished task's latency (submit to terminal), state and custom KPIs.
type kpiWindow struct {
	window time.Duration

	mu    sync.Mutex
	subs  []time.Time
	dones []done
}

type done struct {
	at      time.Time
	latency time.Duration
	failed  bool // ended failed (not cancelled)
	custom  map[string]float64
}

func newKPIWindow(w time.Duration) *kpiWindow { return &kpiWindow{window: w} }

func (k *kpiWindow) submitted(now time.Time) {
	k.mu.Lock()
	k.subs = append(k.subs, now)
	k.trim(now)
	k.mu.Unlock()
}

func (k *kpiWindow) completed(now time.Time, latency time.Duration, st protocol.State, custom map[string]float64) {
	k.mu.Lock()
	k.dones = append(k.dones, done{at: now, latency: latency, failed: st == protocol.StateFailed, custom: custom})
	k.trim(now)
	k.mu.Unlock()
}

// trim drops what fell out of the window; k.mu is held.
func (k *kpiWindow) trim(now time.Time) {
	cut := now.Add(-k.window)
	i := 0
	for i < len(k.subs) && k.subs[i].Before(cut) {
		i++
	}
	// Resliced, not copied down: a full window loses about one entry per
	// call, and copying the rest each time (600,000 entries at 10,000
	// tasks/s) would cost more than the task. append moves the live part
	// to a new array when it runs out of room, so the memory stays within
	// a small factor of the window's.
	k.subs = k.subs[i:]
	j := 0
	for j < len(k.dones) && k.dones[j].at.Before(cut) {
		j++
	}
	clear(k.dones[:j]) // their custom maps
	k.dones = k.dones[j:]
}

// throughput is the recent completion rate, per second. It is taken over
// the span the window actually holds (at least a second), so that it is not
// diluted in the first minute of load: retry_after_ms is derived from it.
func (k *kpiWindow) throughput(now time.Time) float64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.trim(now)
	if len(k.dones) == 0 {
		return 0
	}
	span := min(max(now.Sub(k.dones[0].at), time.Second), k.window)
	return float64(len(k.dones)) / span.Seconds()
}

func (k *kpiWindow) report(now time.Time) protocol.KPIReport {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.trim(now)
	r := protocol.KPIReport{
		At:        now.UTC(),
		WindowS:   k.window.Seconds(),
		Submitted: int64(len(k.subs)),
		Custom:    map[string]float64{},
	}
	lat := make([]float64, 0, len(k.dones))
	for _, d := range k.dones {
		r.Completed++
		if d.failed {
			r.Failed++
		}
		lat = append(lat, float64(d.latency.Microseconds())/1000)
		for name, v := range d.custom {
			r.Custom[name] += v
		}
	}
	r.ThroughputPerS = float64(r.Completed) / k.window.Seconds()
	slices.Sort(lat)
	r.LatencyMs = protocol.LatencyMs{P50: quantile(lat, 0.5), P90: quantile(lat, 0.9), P99: quantile(lat, 0.99)}
	return r
}

// quantile of sorted values, nearest rank; 0 for none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// agentStats accumulates one agent's figures since the process started.
type agentStats struct {
	mu        sync.Mutex
	s         protocol.AgentStats
	durations []float64 // the last durationsKept run durations, ms, a ring
	next      int
	durSum    float64
	durN      int64
}

const durationsKept = 1024

func newAgentStats(name string) *agentStats {
	return &agentStats{s: protocol.AgentStats{Name: name}}
}

func (a *agentStats) started() {
	a.mu.Lock()
	a.s.Running++
	a.mu.Unlock()
}

// ended records a transition: out is nil for tasks that never ran (cancelled
// or failed while waiting).
func (a *agentStats) ended(t *store.TaskRecord, out *executor.Outcome, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if out != nil {
		a.s.Running--
		ms := float64(out.Duration.Microseconds()) / 1000
		if len(a.durations) < durationsKept {
			a.durations = append(a.durations, ms)
		} else {
			a.durations[a.next] = ms
			a.next = (a.next + 1) % durationsKept
		}
		a.durSum += ms
		a.durN++
		a.s.CPUSecondsTotal += out.Usage.CPUSeconds
		a.s.MemoryPeakMBMax = max(a.s.MemoryPeakMBMax, out.Usage.MemoryPeakMB)
		at := now.UTC()
		a.s.LastTaskAt = &at
	}
	if !t.State.Terminal() {
		return
	}
	a.s.TasksTotal++
	switch t.State {
	case protocol.StateSucceeded:
		a.s.Succeeded++
	case protocol.StateFailed:
		a.s.Failed++
	case protocol.StateCancelled:
		a.s.Cancelled++
	}
}

func (a *agentStats) snapshot() protocol.AgentStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.s
	if a.durN > 0 {
		s.AvgDurationMs = a.durSum / float64(a.durN)
	}
	d := slices.Clone(a.durations)
	slices.Sort(d)
	s.P50Ms, s.P99Ms = quantile(d, 0.5), quantile(d, 0.99)
	if s.LastTaskAt != nil {
		at := *s.LastTaskAt
		s.LastTaskAt = &at
	}
	return s
}

// QueueDepth counts queued and retrying tasks by priority.
func (s *Scheduler) QueueDepth() map[string]int {
	d := make(map[string]int, len(protocol.Priorities))
	for _, p := range protocol.Priorities {
		d[p.String()] = int(s.depth[p].Load())
	}
	return d
}

// Running counts the tasks running now.
func (s *Scheduler) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.run)
}

// Workers is the size of the worker pool.
func (s *Scheduler) Workers() int { return s.cfg.Workers }

// Ready reports whether the scheduler takes new tasks.
func (s *Scheduler) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateRunning
}

// KPI reports the fabric's figures over the sliding window.
func (s *Scheduler) KPI(ctx context.Context) protocol.KPIReport {
	r := s.kpi.report(s.now())
	r.QueueDepth = s.QueueDepth()
	r.Running = s.Running()
	r.Workers = s.cfg.Workers
	r.Agents, _ = s.AgentStats(ctx, "")
	return r
}

// Health says whether the fabric is serving.
func (s *Scheduler) Health(ctx context.Context) protocol.Health {
	s.mu.Lock()
	st := s.state
	running := len(s.run)
	s.mu.Unlock()
	h := protocol.Health{
		Status:     protocol.HealthOK,
		Version:    s.cfg.Version,
		Engine:     s.eng.Name(),
		UptimeS:    s.now().Sub(s.started).Seconds(),
		QueueDepth: int(s.queued()),
		Running:    running,
	}
	switch {
	case st != stateRunning:
		h.Status = protocol.HealthDraining
	case s.now().UnixNano()-s.lastStoreErr.Load() < int64(30*time.Second):
		h.Status = protocol.HealthDegraded
	}
	if s.started.IsZero() {
		h.UptimeS = 0
	}
	return h
}
