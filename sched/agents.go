package sched

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// agentEntry is a registered agent with its compiled module. Runs hold a
// reference; a replaced or removed module is closed when the last run ends.
type agentEntry struct {
	agent   protocol.Agent
	mod     executor.Module
	refs    int  // guarded by Scheduler.mu
	retired bool // guarded by Scheduler.mu
	stats   *agentStats
}

func (s *Scheduler) loadAgents(ctx context.Context) error {
	recs, err := s.st.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("loading agents: %w", err)
	}
	for _, r := range recs {
		mod, err := s.eng.Compile(ctx, executor.ModuleSpec{
			Name: r.Name, Wasm: r.Module, ABI: r.ABI, Entry: r.Entry, Capabilities: r.Capabilities,
			ReuseInstances: r.ReuseInstances,
		})
		if err != nil {
			// The module was accepted once; an engine that refuses it now
			// (another --engine, a stricter version) must not stop the
			// fabric. Its tasks fail with agent_missing until it is
			// registered again.
			s.log.Error().Err(err).Str("agent", r.Name).Msg("a stored agent does not compile on this engine; its tasks will fail with agent_missing")
			continue
		}
		s.agents[r.Name] = &agentEntry{agent: r.Agent, mod: mod, stats: newAgentStats(r.Name)}
	}
	if len(recs) > 0 {
		s.log.Info().Int("agents", len(s.agents)).Msg("agents loaded")
	}
	return nil
}

// RegisterAgent validates, compiles and stores an agent.
func (s *Scheduler) RegisterAgent(ctx context.Context, p *protocol.RegisterParams) (protocol.Agent, error) {
	lim := s.cfg.Limits
	if int64(len(p.Wasm)) > lim.MaxModuleBytes {
		return protocol.Agent{}, protocol.Errorf(protocol.ErrLimit, "wasm: %d bytes is over the server's module limit of %d bytes", len(p.Wasm), lim.MaxModuleBytes).
			With("limit", lim.MaxModuleBytes)
	}
	limits := protocol.Limits{}
	if p.Limits != nil {
		limits = *p.Limits
	}
	if err := s.checkAgentLimits(limits); err != nil {
		return protocol.Agent{}, err
	}
	sum := sha256.Sum256(p.Wasm)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	caps := slices.Clone(p.Capabilities)
	slices.Sort(caps)
	if caps == nil {
		caps = []string{}
	}

	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	old := s.agents[p.Name]
	s.mu.Unlock()
	if old != nil {
		same := old.agent.Digest == digest && slices.Equal(old.agent.Capabilities, caps) && old.agent.Limits == limits &&
			(p.ABI == "" || p.ABI == old.agent.ABI) && (p.Entry == "" || p.Entry == old.agent.Entry) &&
			old.agent.ReuseInstances == p.ReuseInstances
		if same {
			return old.agent, nil
		}
		if !p.Replace {
			return protocol.Agent{}, protocol.Errorf(protocol.ErrConflict,
				"agent %q is registered with another module or settings (%s); set replace: true to replace it", p.Name, old.agent.Digest).
				With("digest", old.agent.Digest)
		}
	}

	began := time.Now()
	mod, err := s.eng.Compile(ctx, executor.ModuleSpec{
		Name: p.Name, Wasm: p.Wasm, ABI: p.ABI, Entry: p.Entry, Capabilities: caps,
		ReuseInstances: p.ReuseInstances,
	})
	if err != nil {
		return protocol.Agent{}, err
	}
	s.cfg.Metrics.Compiled(time.Since(began))
	a := protocol.Agent{
		Name:           p.Name,
		Digest:         digest,
		ABI:            mod.ABI(),
		Entry:          mod.Entry(),
		SizeBytes:      int64(len(p.Wasm)),
		Capabilities:   caps,
		Limits:         limits,
		RegisteredAt:   s.now().UTC(),
		ReuseInstances: p.ReuseInstances,
	}
	if err := s.st.PutAgent(ctx, store.AgentRecord{Agent: a, Module: p.Wasm}); err != nil {
		mod.Close(context.Background())
		return protocol.Agent{}, fmt.Errorf("storing agent %q: %w", p.Name, err)
	}
	e := &agentEntry{agent: a, mod: mod, stats: newAgentStats(a.Name)}
	s.mu.Lock()
	if old != nil {
		e.stats = old.stats
	}
	s.agents[p.Name] = e
	s.mu.Unlock()
	if old != nil {
		s.retire(old)
	}
	s.logFor(ctx).Info().Str("agent", a.Name).Str("digest", a.Digest).Str("abi", a.ABI).Int64("size_bytes", a.SizeBytes).Msg("agent registered")
	return a, nil
}

func (s *Scheduler) checkAgentLimits(l protocol.Limits) error {
	lim := s.cfg.Limits
	over := func(field string, got, max int64) error {
		return protocol.Errorf(protocol.ErrLimit, "limits.%s: %d is over the server's ceiling of %d", field, got, max).With("limit", max)
	}
	switch {
	case l.MemoryMB > lim.MaxMemoryMB:
		return over("memory_mb", l.MemoryMB, lim.MaxMemoryMB)
	case l.OutputBytes > lim.MaxOutputBytes:
		return over("output_bytes", l.OutputBytes, lim.MaxOutputBytes)
	case l.TimeoutMs > lim.MaxTimeout.Milliseconds():
		return over("timeout_ms", l.TimeoutMs, lim.MaxTimeout.Milliseconds())
	case l.LogBytes > lim.MaxLogBytes:
		return over("log_bytes", l.LogBytes, lim.MaxLogBytes)
	case l.Fuel > 0 && !s.metering():
		return protocol.Errorf(protocol.ErrInvalidParams, "limits.fuel: the %s engine does not meter fuel", s.eng.Name())
	}
	return nil
}

// metering reports whether the engine counts fuel.
func (s *Scheduler) metering() bool {
	m, ok := s.eng.(interface{ Metering() bool })
	return ok && m.Metering()
}

// retire closes a replaced or removed agent's module once no run holds it.
func (s *Scheduler) retire(e *agentEntry) {
	s.mu.Lock()
	e.retired = true
	idle := e.refs == 0
	s.mu.Unlock()
	if idle {
		e.mod.Close(context.Background())
	}
}

// acquire returns the named agent with a reference held, or nil.
func (s *Scheduler) acquire(name string) *agentEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.agents[name]
	if e != nil {
		e.refs++
	}
	return e
}

func (s *Scheduler) release(e *agentEntry) {
	s.mu.Lock()
	e.refs--
	idle := e.retired && e.refs == 0
	s.mu.Unlock()
	if idle {
		e.mod.Close(context.Background())
	}
}

// Agents lists the registered agents by name.
func (s *Scheduler) Agents(ctx context.Context) ([]protocol.Agent, error) {
	s.mu.Lock()
	out := make([]protocol.Agent, 0, len(s.agents))
	for _, e := range s.agents {
		out = append(out, e.agent)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b protocol.Agent) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

// Agent returns one registered agent.
func (s *Scheduler) Agent(ctx context.Context, name string) (protocol.Agent, error) {
	s.mu.Lock()
	e := s.agents[name]
	s.mu.Unlock()
	if e == nil {
		return protocol.Agent{}, agentNotFound(name)
	}
	return e.agent, nil
}

func agentNotFound(name string) error {
	return protocol.Errorf(protocol.ErrNotFound, "agent %q is not registered", name)
}

// UnregisterAgent removes an agent. Its queued and retrying tasks fail with
// agent_missing; running ones finish on the module they started with.
func (s *Scheduler) UnregisterAgent(ctx context.Context, name string) error {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.mu.Lock()
	e := s.agents[name]
	s.mu.Unlock()
	if e == nil {
		return agentNotFound(name)
	}
	if err := s.st.DeleteAgent(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("removing agent %q: %w", name, err)
	}
	s.mu.Lock()
	delete(s.agents, name)
	s.mu.Unlock()
	s.retire(e)

	waiting, err := s.st.Waiting(ctx, name)
	if err != nil {
		return fmt.Errorf("agent %q removed, but listing its waiting tasks failed: %w", name, err)
	}
	for _, t := range waiting {
		s.failWaiting(ctx, t, protocol.NewTaskError(protocol.CodeAgentMissing, "agent %q was unregistered", name))
	}
	s.logFor(ctx).Info().Str("agent", name).Int("failed_waiting", len(waiting)).Msg("agent unregistered")
	return nil
}

// AgentStats returns the stats of one agent, or of all when name is "".
func (s *Scheduler) AgentStats(ctx context.Context, name string) ([]protocol.AgentStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "" {
		e := s.agents[name]
		if e == nil {
			return nil, agentNotFound(name)
		}
		return []protocol.AgentStats{e.stats.snapshot()}, nil
	}
	out := make([]protocol.AgentStats, 0, len(s.agents))
	for _, e := range s.agents {
		out = append(out, e.stats.snapshot())
	}
	slices.SortFunc(out, func(a, b protocol.AgentStats) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return out, nil
}
