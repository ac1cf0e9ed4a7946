package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// The Store methods of SQLite. Writes go through the writer (sqlite_writer.go),
// encoded first on the calling goroutine; reads go to the read pool.

func (s *SQLite) PutAgent(ctx context.Context, a AgentRecord) error {
	if a.Name == "" {
		return fmt.Errorf("store: PutAgent: the agent has no name")
	}
	caps, err := jsonText(nonNil(a.Capabilities))
	if err != nil {
		return err
	}
	limits, err := jsonText(a.Limits)
	if err != nil {
		return err
	}
	module := a.Module
	if module == nil {
		module = []byte{}
	}
	return s.write(ctx, func(w *writer) error {
		_, err := w.stmts.putAgent.Exec(a.Name, a.Digest, a.ABI, a.Entry, a.SizeBytes, caps, limits, toNanos(a.RegisteredAt), module, a.ReuseInstances)
		if err != nil {
			return fmt.Errorf("store: writing agent %s: %w", a.Name, err)
		}
		return nil
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *SQLite) DeleteAgent(ctx context.Context, name string) error {
	return s.write(ctx, func(w *writer) error {
		res, err := w.stmts.deleteAgent.Exec(name)
		if err != nil {
			return fmt.Errorf("store: deleting agent %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return agentNotFound(name)
		}
		return nil
	})
}

func scanAgent(sc scanner) (AgentRecord, error) {
	var a AgentRecord
	var caps, limits []byte
	var registered int64
	if err := sc.Scan(&a.Name, &a.Digest, &a.ABI, &a.Entry, &a.SizeBytes, &caps, &limits, &registered, &a.Module, &a.ReuseInstances); err != nil {
		return a, err
	}
	a.RegisteredAt = fromNanos(registered)
	if err := json.Unmarshal(caps, &a.Capabilities); err != nil {
		return a, fmt.Errorf("store: agent %s: decoding its capabilities: %w", a.Name, err)
	}
	if err := json.Unmarshal(limits, &a.Limits); err != nil {
		return a, fmt.Errorf("store: agent %s: decoding its limits: %w", a.Name, err)
	}
	return a, nil
}

func (s *SQLite) GetAgent(ctx context.Context, name string) (AgentRecord, error) {
	if err := s.enter(); err != nil {
		return AgentRecord{}, err
	}
	defer s.life.RUnlock()
	a, err := scanAgent(s.getAgent.QueryRowContext(ctx, name))
	if err == sql.ErrNoRows {
		return AgentRecord{}, agentNotFound(name)
	}
	return a, err
}

func (s *SQLite) ListAgents(ctx context.Context) ([]AgentRecord, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	rows, err := s.listAgents.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: listing agents: %w", err)
	}
	defer rows.Close()
	out := []AgentRecord{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// createCall and updateCall hold what CreateTask and UpdateTask hand the
// writer, in one pooled allocation per call instead of several: the task,
// its encoded row and event, and the closure the writer runs.
type createCall struct {
	t       TaskRecord
	args    []any
	ev      protocol.TaskEvent
	payload string
	rec     *TaskRecord
	found   *taskRow
	run     func(w *writer) error
}

var createCalls = sync.Pool{New: func() any {
	c := &createCall{}
	c.run = func(w *writer) (err error) {
		c.found, err = w.createTask(&c.t, c.args, &c.ev, c.payload, c.rec)
		return err
	}
	return c
}}

func (s *SQLite) CreateTask(ctx context.Context, t TaskRecord) (TaskRecord, protocol.TaskEvent, bool, error) {
	if err := checkNewTask(&t, time.Now); err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, err
	}
	c := createCalls.Get().(*createCall)
	defer func() {
		clear(c.args)
		*c = createCall{args: c.args[:0], run: c.run}
		createCalls.Put(c)
	}()
	c.t = t
	var err error
	c.args, err = insertArgs(c.args[:0], &c.t)
	if err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, fmt.Errorf("store: encoding task %s: %w", t.TaskID, err)
	}
	c.ev = EventFor(&c.t, c.t.CreatedAt)
	if c.payload, err = encodeEvent(&c.ev); err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, err
	}
	// The record a claim will need, as a read would return it.
	if c.rec, err = recordOf(&c.t, c.args); err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, err
	}
	if err := s.enter(); err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, err
	}
	defer s.life.RUnlock()
	// Named, so that the claims the writer holds back are not flushed for
	// it (settleClaims).
	if err := s.sendFor(ctx, t.TaskID, opCreate, 0, false, c.run); err != nil {
		return TaskRecord{}, protocol.TaskEvent{}, false, err
	}
	if c.found != nil {
		old, err := s.withInput(context.WithoutCancel(ctx), c.found)
		return old, protocol.TaskEvent{}, false, err
	}
	return c.t, c.ev, true, nil
}

type updateCall struct {
	t       TaskRecord
	expect  protocol.State
	m       mutable
	ev      protocol.TaskEvent
	payload string
	run     func(w *writer) error
}

var updateCalls = sync.Pool{New: func() any {
	u := &updateCall{}
	u.run = func(w *writer) error { return w.updateTask(&u.t, u.expect, &u.m, &u.ev, u.payload, w.cur.took) }
	return u
}}

func (s *SQLite) UpdateTask(ctx context.Context, t TaskRecord, expect protocol.State) (protocol.TaskEvent, error) {
	if err := checkUpdate(&t, expect); err != nil {
		return protocol.TaskEvent{}, err
	}
	u := updateCalls.Get().(*updateCall)
	defer func() {
		*u = updateCall{run: u.run}
		updateCalls.Put(u)
	}()
	u.t, u.expect = t, expect
	var err error
	if u.m, err = mutableArgs(&u.t); err != nil {
		return protocol.TaskEvent{}, fmt.Errorf("store: encoding task %s: %w", t.TaskID, err)
	}
	u.ev = EventFor(&u.t, updateEventAt(&u.t, time.Now))
	if u.payload, err = encodeUpdateEvent(&u.ev, &u.m); err != nil {
		return protocol.TaskEvent{}, err
	}
	if err := s.enter(); err != nil {
		return protocol.TaskEvent{}, err
	}
	defer s.life.RUnlock()
	kind, started := opOther, int64(-1)
	if expect == protocol.StateRunning {
		kind = opFinish
		if t.StartedAt != nil {
			started = toNanos(*t.StartedAt)
		}
	}
	if err := s.sendFor(ctx, t.TaskID, kind, started, waiting(expect), u.run); err != nil {
		return protocol.TaskEvent{}, err
	}
	return u.ev, nil
}

func (s *SQLite) AppendProgress(ctx context.Context, taskID string, attempt int, progress float64, at time.Time) (protocol.TaskEvent, error) {
	if err := checkProgress(taskID, progress); err != nil {
		return protocol.TaskEvent{}, err
	}
	if err := s.enter(); err != nil {
		return protocol.TaskEvent{}, err
	}
	defer s.life.RUnlock()
	var ev protocol.TaskEvent
	err := s.sendFor(ctx, taskID, opProgress, 0, false, func(w *writer) (err error) {
		return w.appendProgress(taskID, attempt, progress, at, &ev)
	})
	return ev, err
}

func (s *SQLite) GetTask(ctx context.Context, id string) (TaskRecord, error) {
	if err := s.enter(); err != nil {
		return TaskRecord{}, err
	}
	defer s.life.RUnlock()
	r, err := scanTask(s.getTask.QueryRowContext(ctx, id))
	if err == sql.ErrNoRows {
		return TaskRecord{}, taskNotFound(id)
	}
	if err != nil {
		return TaskRecord{}, fmt.Errorf("store: reading task %s: %w", id, err)
	}
	return r.decode()
}

func (s *SQLite) ListTasks(ctx context.Context, f TaskFilter) ([]TaskRecord, string, error) {
	q, err := parseFilter(f)
	if err != nil {
		return nil, "", err
	}
	var where []string
	var args []any
	if q.state != "" {
		where, args = append(where, "tasks.state = ?"), append(args, string(q.state))
	}
	if q.agent != "" {
		where, args = append(where, "tasks.agent = ?"), append(args, q.agent)
	}
	if q.before > 0 {
		where, args = append(where, "tasks.queue_seq < ?"), append(args, q.before)
	}
	if q.labelKey != "" {
		cond := "EXISTS (SELECT 1 FROM json_each(tasks.labels) WHERE key = ?"
		args = append(args, q.labelKey)
		if q.hasValue {
			cond += " AND value = ?"
			args = append(args, q.labelValue)
		}
		where = append(where, cond+")")
	}
	query := selectTasks
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY tasks.queue_seq DESC LIMIT ?"
	args = append(args, q.limit+1) // one more tells whether a next page exists

	if err := s.enter(); err != nil {
		return nil, "", err
	}
	defer s.life.RUnlock()
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: listing tasks: %w", err)
	}
	defer rows.Close()
	var raw []taskRow
	for rows.Next() {
		r, err := scanTask(rows)
		if err != nil {
			return nil, "", fmt.Errorf("store: listing tasks: %w", err)
		}
		raw = append(raw, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: listing tasks: %w", err)
	}
	next := ""
	if len(raw) > q.limit {
		raw = raw[:q.limit]
		next = makeCursor(raw[len(raw)-1].queueSeq)
	}
	out := make([]TaskRecord, len(raw))
	for i := range raw {
		if out[i], err = raw[i].decode(); err != nil {
			return nil, "", err
		}
	}
	return out, next, nil
}

// Claim takes the next task from the in-memory queue and hands the write
// that records the claim to the writer in the same step (sendTaking says
// why). When the queue kept the task's record, as it does for tasks created
// by this process, Claim returns at once and started reports the commit:
// the caller runs the task while its claim is committed with other writes.
// Otherwise the claim's write reads the record and Claim waits for its
// commit.
//
// Running a task before its claim is durable is safe: until the claim
// commits, the file says the task is waiting, which after a crash is what
// Recover would make of a running task anyway; the only difference is that
// the interrupted attempt is not counted. The outcome of the run is written
// after the claim (the caller waits for started), so no outcome is ever
// stored for a claim that is not.
func (s *SQLite) Claim(ctx context.Context, now time.Time) (TaskRecord, *Pending, bool, error) {
	if err := s.enter(); err != nil {
		return TaskRecord{}, nil, false, err
	}
	defer s.life.RUnlock()
	w := s.w
	w.qmu.Lock()
	e, ok := w.queue.pop(now)
	if !ok {
		w.qmu.Unlock()
		return TaskRecord{}, nil, false, nil
	}
	if t := e.rec; t != nil {
		w.queue.drop(e)
		e.rec = nil
		attempt := t.Attempt
		claimed(t, fromNanos(toNanos(now)))
		p := newPending()
		p.ev = protocol.TaskEvent{TaskID: t.TaskID, Agent: t.Agent, State: protocol.StateRunning, Attempt: t.Attempt, At: now}
		payload, err := encodeEvent(&p.ev)
		if err != nil {
			w.queue.restore(e)
			w.qmu.Unlock()
			return TaskRecord{}, nil, false, err
		}
		o := getOp(context.Background(), func(w *writer) error { return w.claimKnown(e, attempt, now, &p.ev, payload) })
		o.pend, o.took, o.task, o.kind, o.started = p, e, e.id, opClaim, toNanos(*t.StartedAt)
		w.hand(o)
		w.qmu.Unlock()
		w.poke()
		return *t, p, true, nil
	}
	var row taskRow
	var ev protocol.TaskEvent
	o := getOp(context.Background(), func(w *writer) (err error) {
		row, err = w.claimRead(e, now, &ev)
		return err
	})
	o.took, o.task = e, e.id
	w.hand(o)
	w.qmu.Unlock()
	w.poke()
	if err := w.await(o); err != nil {
		return TaskRecord{}, nil, false, err
	}
	// The claim is committed: the task must reach the caller, whatever ctx.
	t, err := s.withInput(context.WithoutCancel(ctx), &row)
	return t, donePending(ev, nil), true, err
}

// NextReadyAt and QueueDepth read the in-memory queue, which runs ahead of
// the file by the writes of the batch being committed, if any.
func (s *SQLite) NextReadyAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	if err := s.enter(); err != nil {
		return time.Time{}, false, err
	}
	defer s.life.RUnlock()
	s.w.qmu.Lock()
	defer s.w.qmu.Unlock()
	at, ok := s.w.queue.nextReadyAt(now)
	return at, ok, nil
}

func (s *SQLite) QueueDepth(ctx context.Context) (map[protocol.Priority]int, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	s.w.qmu.Lock()
	defer s.w.qmu.Unlock()
	return s.w.queue.depthMap(), nil
}

func (s *SQLite) Waiting(ctx context.Context, agent string) ([]TaskRecord, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	rows, err := s.waiting.QueryContext(ctx, agent)
	if err != nil {
		return nil, fmt.Errorf("store: reading waiting tasks: %w", err)
	}
	defer rows.Close()
	var out []TaskRecord
	for rows.Next() {
		r, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("store: reading waiting tasks: %w", err)
		}
		t, err := r.decode()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *SQLite) Events(ctx context.Context, after int64, f EventFilter, limit int) ([]protocol.TaskEvent, error) {
	query := "SELECT seq, task_id, agent, payload FROM events WHERE seq > ?"
	args := []any{after}
	if len(f.TaskIDs) > 0 {
		query += " AND task_seq IN (SELECT queue_seq FROM tasks WHERE task_id IN (?" + strings.Repeat(", ?", len(f.TaskIDs)-1) + "))"
		for _, id := range f.TaskIDs {
			args = append(args, id)
		}
	}
	if f.Agent != "" {
		query += " AND agent = ?"
		args = append(args, f.Agent)
	}
	// No LIMIT: a row may hold several events (flushEvents); the scan
	// stops once it has limit.
	query += " ORDER BY seq"
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: reading events: %w", err)
	}
	defer rows.Close()
	var out []protocol.TaskEvent
	for (limit <= 0 || len(out) < limit) && rows.Next() {
		var seq int64
		var id, agent string
		var payload []byte
		if err := rows.Scan(&seq, &id, &agent, &payload); err != nil {
			return nil, fmt.Errorf("store: reading events: %w", err)
		}
		if out, err = decodeEvents(out, after, seq, id, agent, payload); err != nil {
			return nil, err
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, rows.Err()
}

func (s *SQLite) LastSeq(ctx context.Context) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	return s.w.committed.Load(), nil
}

func (s *SQLite) Recover(ctx context.Context, now time.Time) ([]TaskRecord, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var rows []taskRow
	err := s.send(ctx, func(w *writer) (err error) {
		rows, _, err = w.recover(now)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]TaskRecord, len(rows))
	for i := range rows {
		if out[i], err = s.withInput(context.WithoutCancel(ctx), &rows[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pruneBatch is how many tasks one Prune transaction removes, so that the
// writer is never held for long.
const pruneBatch = 256

func (s *SQLite) Prune(ctx context.Context, olderThan time.Time, keep int) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	// The keep newest finished tasks stay: find the oldest of them.
	var keepDone, keepSeq int64
	bounded := keep > 0
	if bounded {
		err := s.rdb.QueryRowContext(ctx, `SELECT done_at, queue_seq FROM tasks WHERE done_at IS NOT NULL
			ORDER BY done_at DESC, queue_seq DESC LIMIT 1 OFFSET ?`, keep-1).Scan(&keepDone, &keepSeq)
		if err == sql.ErrNoRows {
			s.life.RUnlock()
			return 0, nil // no more than keep finished tasks
		}
		if err != nil {
			s.life.RUnlock()
			return 0, fmt.Errorf("store: prune: %w", err)
		}
	}
	s.life.RUnlock()

	// The writer does not enforce foreign keys (sqliteDSN): a task's
	// events and input are deleted with it here.
	batch := `SELECT queue_seq FROM tasks WHERE done_at IS NOT NULL AND done_at < ?`
	args := []any{toNanos(olderThan)}
	if bounded {
		batch += ` AND (done_at, queue_seq) < (?, ?)`
		args = append(args, keepDone, keepSeq)
	}
	batch += ` ORDER BY done_at, queue_seq LIMIT ?`
	args = append(args, pruneBatch)
	var queries []string
	for _, table := range []string{"events", "task_inputs"} {
		key := "queue_seq"
		if table == "events" {
			key = "task_seq"
		}
		queries = append(queries, `DELETE FROM `+table+` WHERE `+key+` IN (`+batch+`)`)
	}
	query := `DELETE FROM tasks WHERE queue_seq IN (` + batch + `)`
	total := 0
	for {
		var n int64
		err := s.write(ctx, func(w *writer) error {
			if err := w.saveMeta(context.Background()); err != nil {
				return abort(fmt.Errorf("store: prune: %w", err))
			}
			// The same batch each time: only the last deletes tasks.
			for _, q := range queries {
				if _, err := w.conn.ExecContext(context.Background(), q, args...); err != nil {
					return abort(fmt.Errorf("store: prune: %w", err))
				}
			}
			res, err := w.conn.ExecContext(context.Background(), query, args...)
			if err != nil {
				return abort(fmt.Errorf("store: prune: %w", err))
			}
			n, err = res.RowsAffected()
			return abort(err)
		})
		total += int(n)
		if err != nil {
			return total, err
		}
		if n < pruneBatch {
			return total, nil
		}
	}
}
