package server

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/sched"
)

// method is one entry of the dispatch table.
type method struct {
	params reflect.Type // the protocol params type, checked against the OpenRPC table
	result reflect.Type
	// decode decodes raw params into a new *P; call runs the method on
	// them.
	decode func(raw json.RawMessage) (any, error)
	call   func(ctx context.Context, ss *session, p any) (any, error)
	// try, when set, runs a call on the connection's reader if it needs
	// no waiting, and says done; otherwise (done false) the call runs on a
	// goroutine of its own, with call. Only what cannot wait may run
	// there: not on I/O, a commit, a timer, nor room in the outbound
	// queue; it holds up the reading of the connection while it runs.
	try func(ctx context.Context, ss *session, p any) (res any, err error, done bool)
	// overCap: run even when the connection is over its in-flight cap
	// (unsubscribe, which frees what it names and cannot wait).
	overCap bool
	// logs is the level of the least severe line the scheduler writes
	// about a call (with the logger of the request's context): the
	// request's logger is built only when lines of that level are
	// written. Default zerolog.DebugLevel.
	logs zerolog.Level
}

// bind makes a method of a typed handler: params are decoded strictly with
// protocol.DecodeParams (named params only; unknown fields refused; -32602
// naming the field) before fn runs.
func bind[P, R any](fn func(ctx context.Context, ss *session, p *P) (R, error)) method {
	return method{
		params: reflect.TypeFor[P](),
		result: reflect.TypeFor[R](),
		decode: func(raw json.RawMessage) (any, error) {
			p := new(P)
			if err := decodeParams(raw, p); err != nil {
				return nil, err
			}
			return p, nil
		},
		call: func(ctx context.Context, ss *session, p any) (any, error) {
			return fn(ctx, ss, p.(*P))
		},
	}
}

// decodeParams is protocol.DecodeParams, without its decoder for absent or
// empty params of a type that neither decodes nor validates itself (system.health,
// kpi.get, agent.list...): they decode to the zero value.
func decodeParams(raw json.RawMessage, p any) error {
	if len(raw) == 0 || string(raw) == "{}" {
		_, custom := p.(json.Unmarshaler)
		_, validates := p.(protocol.Validator)
		if !custom && !validates {
			return nil
		}
	}
	return protocol.DecodeParams(raw, p)
}

// quick: every call of m runs on the connection's reader.
func (m method) quick() method {
	return m.quickIf(func(*session, any) bool { return true })
}

// quickIf: a call of m runs on the connection's reader when ok says so.
func (m method) quickIf(ok func(ss *session, p any) bool) method {
	call := m.call
	m.try = func(ctx context.Context, ss *session, p any) (any, error, bool) {
		if !ok(ss, p) {
			return nil, nil, false
		}
		res, err := call(ctx, ss, p)
		return res, err, true
	}
	return m
}

// storeNeverWaits: the call reads or writes the store, which may happen on
// the reader only when the store answers without waiting
// (Config.StoreNeverWaits).
func storeNeverWaits(ss *session, _ any) bool { return ss.srv.cfg.StoreNeverWaits }

// submitQuick: a task.submit that subscribes writes its first events with
// back-pressure (eventFeed.flush), so it runs on a goroutine of its own.
func submitQuick(ss *session, p any) bool {
	return ss.srv.cfg.StoreNeverWaits && !p.(*protocol.SubmitParams).Subscribe
}

// tryTaskWait answers a task.wait on the reader when there is nothing to
// wait for: the task has ended (the usual case when a client waits for a
// short task it has just submitted), does not exist, or timeout_ms is 0.
func tryTaskWait(ctx context.Context, ss *session, p any) (any, error, bool) {
	if !ss.srv.cfg.StoreNeverWaits {
		return nil, nil, false
	}
	w := p.(*protocol.WaitParams)
	t, err := ss.sched().Task(ctx, w.TaskID)
	if err != nil || t.State.Terminal() || (w.TimeoutMs != nil && *w.TimeoutMs <= 0) {
		return t, err, true
	}
	return nil, nil, false
}

func (m method) tries(try func(ctx context.Context, ss *session, p any) (any, error, bool)) method {
	m.try = try
	return m
}

func (m method) evenOverCap() method {
	m.overCap = true
	return m
}

func (m method) logsAt(l zerolog.Level) method {
	m.logs = l
	return m
}

// methodTable maps every method of PROTOCOL.md to its handler. The OpenRPC
// document (protocol.Methods) lists the same methods; a test keeps the two
// in step. The levels are those of the scheduler's lines about a call
// (sched: logFor).
func methodTable() map[string]method {
	return map[string]method{
		protocol.MethodAgentRegister:   bind(agentRegister).logsAt(zerolog.InfoLevel),
		protocol.MethodAgentList:       bind(agentList),
		protocol.MethodAgentGet:        bind(agentGet).quick(),
		protocol.MethodAgentUnregister: bind(agentUnregister).logsAt(zerolog.InfoLevel),
		protocol.MethodAgentStats:      bind(agentStats),
		protocol.MethodTaskSubmit:      bind(taskSubmit).quickIf(submitQuick),
		protocol.MethodTaskGet:         bind(taskGet).quickIf(storeNeverWaits),
		protocol.MethodTaskWait:        bind(taskWait).tries(tryTaskWait),
		protocol.MethodTaskCancel:      bind(taskCancel).logsAt(zerolog.InfoLevel),
		protocol.MethodTaskList:        bind(taskList),
		protocol.MethodTaskSubscribe:   bind(taskSubscribe),
		protocol.MethodUnsubscribe:     bind(unsubscribe).quick().evenOverCap(),
		protocol.MethodKPISubscribe:    bind(kpiSubscribe),
		protocol.MethodKPIGet:          bind(kpiGet),
		protocol.MethodSystemHealth:    bind(systemHealth).quick(),
		protocol.MethodRPCDiscover:     bind(rpcDiscover),
	}
}

func (ss *session) sched() *sched.Scheduler { return ss.srv.cfg.Sched }

func agentRegister(ctx context.Context, ss *session, p *protocol.RegisterParams) (protocol.Agent, error) {
	return ss.sched().RegisterAgent(ctx, p)
}

func agentList(ctx context.Context, ss *session, _ *protocol.Empty) (protocol.AgentList, error) {
	agents, err := ss.sched().Agents(ctx)
	if agents == nil {
		agents = []protocol.Agent{}
	}
	return protocol.AgentList{Agents: agents}, err
}

func agentGet(ctx context.Context, ss *session, p *protocol.NameParams) (protocol.Agent, error) {
	return ss.sched().Agent(ctx, p.Name)
}

func agentUnregister(ctx context.Context, ss *session, p *protocol.NameParams) (protocol.Empty, error) {
	return protocol.Empty{}, ss.sched().UnregisterAgent(ctx, p.Name)
}

func agentStats(ctx context.Context, ss *session, p *protocol.StatsParams) (protocol.AgentStatsList, error) {
	stats, err := ss.sched().AgentStats(ctx, p.Name)
	if stats == nil {
		stats = []protocol.AgentStats{}
	}
	return protocol.AgentStatsList{Agents: stats}, err
}

func taskSubmit(ctx context.Context, ss *session, p *protocol.SubmitParams) (protocol.SubmitResult, error) {
	if !p.Subscribe {
		res, _, err := ss.sched().Submit(ctx, p, nil)
		return res, err
	}
	feed := ss.newFeed()
	res, sub, err := ss.sched().Submit(ctx, p, feed.sink)
	if err != nil {
		return res, err
	}
	res.SubscriptionID = feed.id
	if !ss.addSubscription(&subscription{id: feed.id, task: sub}) {
		// The task exists; only the connection is going away.
		sub.Close()
		return res, nil
	}
	return res, feed.flush(ctx)
}

func taskGet(ctx context.Context, ss *session, p *protocol.TaskIDParams) (protocol.Task, error) {
	return ss.sched().Task(ctx, p.TaskID)
}

// taskWait waits up to timeout_ms (default: protocol.MaxWaitTimeout). When the
// connection starts to close (server shutdown), it answers with the task as
// it stands, as if the timeout had passed.
func taskWait(ctx context.Context, ss *session, p *protocol.WaitParams) (protocol.Task, error) {
	timeout := protocol.MaxWaitTimeout
	if p.TimeoutMs != nil {
		timeout = time.Duration(*p.TimeoutMs) * time.Millisecond
	}
	t, err := ss.sched().Wait(ss.drainCtx, p.TaskID, timeout)
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return ss.sched().Task(ctx, p.TaskID)
	}
	return t, err
}

func taskCancel(ctx context.Context, ss *session, p *protocol.TaskIDParams) (protocol.Task, error) {
	return ss.sched().Cancel(ctx, p.TaskID)
}

func taskList(ctx context.Context, ss *session, p *protocol.ListParams) (protocol.TaskList, error) {
	l, err := ss.sched().List(ctx, p)
	if l.Tasks == nil {
		l.Tasks = []protocol.Task{}
	}
	return l, err
}

func kpiGet(ctx context.Context, ss *session, _ *protocol.Empty) (protocol.KPIReport, error) {
	return ss.sched().KPI(ctx), nil
}

func systemHealth(ctx context.Context, ss *session, _ *protocol.Empty) (protocol.Health, error) {
	h := ss.sched().Health(ctx)
	if ss.srv.shuttingDown() {
		h.Status = protocol.HealthDraining
	}
	return h, nil
}

func rpcDiscover(_ context.Context, ss *session, _ *protocol.Empty) (*protocol.OpenRPCDocument, error) {
	return protocol.OpenRPC(ss.srv.cfg.Version), nil
}
