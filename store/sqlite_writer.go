package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/chimera-fabric/fabric/protocol"
)

// writer is the single goroutine that writes fabric.db. Callers hand it
// writeOps by appending them to pending, in order (the writes of running
// tasks to a lane of their own: hand); it takes what is handed over (up to
// maxBatch pending writes, paced to the workers: fill), runs it in one
// transaction and commits once: group commit. While a commit's fsync runs,
// the next writes gather, so many concurrent writes share one fsync; and
// since one goroutine assigns event seqs and QueueSeqs, they grow in commit
// order. New tasks' rows and all events are inserted at the commit
// (sqlite_rowbuf.go, flushEvents).
//
// The writer owns the in-memory state that mirrors the file: the next seqs
// and the queue of waiting tasks. Ops that add to the queue do so as they
// run, inside the transaction. Ops that take a task out of it (a claim, an
// update of a waiting task) take it when they are handed over, under qmu,
// in the same step that orders them: so no claim takes a task that an
// earlier write is changing, and a claim need not wait for its commit to
// know which task is its own (SQLite.Claim). If a transaction does not
// commit, the state is reloaded from the file, less the tasks that pending
// writes took.
type writer struct {
	conn     *sql.Conn
	log      zerolog.Logger
	maxBatch int
	wake     chan struct{} // a write was handed over; capacity 1
	laneWake chan struct{} // a write was handed over to the lane; capacity 1
	linger   *time.Timer   // waitLane's
	quit     chan struct{}
	done     chan struct{}

	stmts writerStmts

	seq      int64 // last event seq assigned, committed or not
	queueSeq int64 // last QueueSeq assigned, committed or not
	metaSeq  int64 // last_seq as stored in meta
	metaQSeq int64 // last_queue_seq as stored in meta

	committed atomic.Int64 // last event seq committed: LastSeq
	commits   atomic.Int64 // transactions committed
	onCommit  func(time.Duration, int)
	onReady   atomic.Pointer[func()] // told when a creation puts a task in the queue (SQLite.OnReady)
	writes    atomic.Int64           // writes committed in them
	pairs     atomic.Int64           // claims committed with the finish of their run (deferredClaim)
	once      atomic.Int64           // tasks committed with their creation, claim and finish (WriteStats.Once)
	logFrames atomic.Int64           // the log's length at the checkpointer's last run
	restarts  atomic.Int64           // restartLog's checkpoints
	restartAt int64                  // the log's length that calls for restartLog

	qmu     sync.Mutex // guards queue, pending and lane
	queue   *waitQueue
	pending []*writeOp // handed over, not yet taken, in order
	lane    []*writeOp // the same, for the writes of running tasks (hand)

	cur        *writeOp // the op running, on the writer goroutine
	inTx       bool     // a transaction is open
	began      time.Time
	txOps      []*writeOp               // the writes run in it
	txMain     int                      // how many of them came from pending, not lane
	deferred   map[string]deferredClaim // claims whose row update waits, by task
	events     []eventRow               // events appended in it, not yet inserted (flushEvents)
	rowArgs    []any                    // rows of tasks created in it, not yet inserted: rowCols each (flushRows)
	rowAt      map[string]int           // index of the buffered row by task
	open       int                      // buffered rows not finished
	ripe       int                      // buffered rows finished (flushDone)
	doneArgs   []any                    // flushDone's rows, reused
	doneSeqs   map[int64]bool           // flushDone's tasks, by QueueSeq
	doneEvents []eventRow               // flushDone's events, reused
	evRows     []any                    // flushEvents' rows' arguments, reused
	evGroup    map[int64]int            // flushEvents': a task's group, by QueueSeq
	evFirst    []int                    // flushEvents': each group's first event
	evLast     []int                    // flushEvents': each group's last event so far
	evNext     []int                    // flushEvents': the next event of the same group, -1 for none
	paired     int64                    // claims merged into their finish in it
	doneRows   int64                    // buffered rows finished in it
	broken     error                    // set when the file and memory could not be reconciled
}

type writerStmts struct {
	taskByKey, updateTask, taskState, claim, claimFinish, progressOf, requeue, putAgent, deleteAgent, setMeta *sql.Stmt

	// The writes of every task's life (rawStmt).
	insertTask, insertInput, claimKnown, begin, commit, updateKnown, claimFinishKnown *rawStmt
	insertEvents                                                                      [len(eventChunks)]*rawStmt
	insertRows                                                                        [len(rowChunks)]*rawStmt
}

// writeOp is one caller's write. run executes inside the writer's
// transaction; an error it returns fails that op alone if the op wrote
// nothing, and must be an abortBatch if it did.
type writeOp struct {
	ctx  context.Context
	run  func(w *writer) error
	err  error
	done chan struct{} // signalled once the op is committed or failed, unless pend is set
	pend *Pending      // an op nobody waits for: its end goes to pend
	took *qentry       // the queue entry the op took when handed over

	task    string // the task the op writes, if it names one
	kind    opKind
	started int64 // a claim's start, or the start of the claim a finish is for
	merge   bool  // a finish that makes its claim's deferred update (settleClaims)
}

// opKind tells the ops that deferredClaim does something with.
type opKind uint8

const (
	opOther    opKind = iota
	opClaim           // a claim from a kept record (claimKnown), deferred
	opFinish          // an update of a running task (updateTask expecting running)
	opCreate          // a task's creation (createTask)
	opProgress        // a progress event of a running task (appendProgress)
)

// laned tells the writes that go in the lane: those of a running task,
// from its claim from a kept record to its finish.
func (k opKind) laned() bool { return k == opClaim || k == opFinish || k == opProgress }

// abortBatch fails the whole transaction: an op failed after writing part
// of its change, which must not be committed.
type abortBatch struct{ err error }

func (a abortBatch) Error() string { return a.err.Error() }
func (a abortBatch) Unwrap() error { return a.err }

func abort(err error) error {
	if err == nil {
		return nil
	}
	return abortBatch{err}
}

var opPool = sync.Pool{New: func() any { return &writeOp{done: make(chan struct{}, 1)} }}

func getOp(ctx context.Context, run func(w *writer) error) *writeOp {
	o := opPool.Get().(*writeOp)
	o.ctx, o.run = ctx, run
	return o
}

func putOp(o *writeOp) {
	o.ctx, o.run, o.err, o.pend, o.took = nil, nil, nil, nil, nil
	o.task, o.kind, o.started, o.merge = "", opOther, 0, false
	opPool.Put(o)
}

// recCacheBytes bounds the records the queue keeps for claims (queue.go).
const recCacheBytes = 32 << 20

func newWriter(ctx context.Context, conn *sql.Conn, maxBatch int, log zerolog.Logger, onCommit func(time.Duration, int)) (*writer, error) {
	w := &writer{conn: conn, log: log, maxBatch: maxBatch, onCommit: onCommit, wake: make(chan struct{}, 1), laneWake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		deferred: map[string]deferredClaim{}}
	prep := func(dst **sql.Stmt, q string) error {
		if *dst != nil {
			return nil
		}
		s, err := conn.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("store: preparing %q: %w", q, err)
		}
		*dst = s
		return nil
	}
	prepRaw := func(dst **rawStmt, q string) error {
		s, err := prepareRaw(ctx, conn, q)
		*dst = s
		return err
	}
	for _, p := range []struct {
		dst **rawStmt
		q   string
	}{
		{&w.stmts.insertTask, insertTaskSQL},
		{&w.stmts.insertInput, `INSERT INTO task_inputs (queue_seq, input) VALUES (?, ?)`},
		// As updateTask and claimFinish, for a caller whose record names the
		// row (QueueSeq): no index to search, nothing to return.
		{&w.stmts.updateKnown, `UPDATE tasks SET ` + mutableSet + `
			WHERE queue_seq = ? AND task_id = ? AND agent = ? AND state = ? AND (state <> 'running' OR started_at IS ?)`},
		{&w.stmts.claimFinishKnown, `UPDATE tasks SET ` + mutableSet + `
			WHERE queue_seq = ? AND task_id = ? AND agent = ? AND state IN ('queued', 'retrying') AND attempt = ?`},
		{&w.stmts.begin, `BEGIN IMMEDIATE`},
		{&w.stmts.commit, `COMMIT`},
		{&w.stmts.claimKnown, `UPDATE tasks SET state = 'running', attempt = attempt + 1, started_at = ?, ready_at = 0,
			next_attempt_at = NULL WHERE queue_seq = ? AND attempt = ? AND state IN ('queued', 'retrying')`},
	} {
		if err := prepRaw(p.dst, p.q); err != nil {
			w.closeStmts()
			return nil, err
		}
	}
	for i, n := range eventChunks {
		q := insertEventSQL + strings.Repeat(", (?, ?, ?, ?, ?)", n-1)
		if err := prepRaw(&w.stmts.insertEvents[i], q); err != nil {
			w.closeStmts()
			return nil, err
		}
	}
	for i, n := range rowChunks {
		if err := prepRaw(&w.stmts.insertRows[i], insertRowsSQL(n)); err != nil {
			w.closeStmts()
			return nil, err
		}
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&w.stmts.taskByKey, `SELECT ` + taskCols + ` FROM tasks WHERE idempotency_key = ?`},
		{&w.stmts.updateTask, `UPDATE tasks SET priority = ?, state = ?, attempt = ?, max_retries = ?, timeout_ms = ?,
			started_at = ?, finished_at = ?, next_attempt_at = ?, ready_at = ?, labels = ?, result = ?, error = ?,
			attempt_errors = ?, done_at = ?
			WHERE task_id = ? AND state = ? AND (state <> 'running' OR started_at IS ?) RETURNING queue_seq, agent`},
		{&w.stmts.claimFinish, `UPDATE tasks SET priority = ?, state = ?, attempt = ?, max_retries = ?, timeout_ms = ?,
			started_at = ?, finished_at = ?, next_attempt_at = ?, ready_at = ?, labels = ?, result = ?, error = ?,
			attempt_errors = ?, done_at = ?
			WHERE task_id = ? AND state IN ('queued', 'retrying') AND attempt = ? RETURNING queue_seq, agent`},
		{&w.stmts.taskState, `SELECT state FROM tasks WHERE task_id = ?`},
		{&w.stmts.claim, `UPDATE tasks SET state = 'running', attempt = attempt + 1, started_at = ?, ready_at = 0,
			next_attempt_at = NULL WHERE queue_seq = ? AND state IN ('queued', 'retrying') RETURNING ` + taskCols},
		{&w.stmts.progressOf, `SELECT state, attempt, agent, queue_seq FROM tasks WHERE task_id = ?`},
		{&w.stmts.requeue, `UPDATE tasks SET state = 'queued', ready_at = 0, next_attempt_at = NULL WHERE queue_seq = ? AND state = 'running'`},
		{&w.stmts.putAgent, `INSERT OR REPLACE INTO agents (name, digest, abi, entry, size, capabilities, limits, registered_at, module, reuse_instances)
			VALUES (?,?,?,?,?,?,?,?,?,?)`},
		{&w.stmts.deleteAgent, `DELETE FROM agents WHERE name = ?`},
		{&w.stmts.setMeta, `UPDATE meta SET value = ? WHERE key = ?`},
	} {
		if err := prep(p.dst, p.q); err != nil {
			w.closeStmts()
			return nil, err
		}
	}
	w.qmu.Lock()
	err := w.load(ctx)
	w.qmu.Unlock()
	if err != nil {
		w.closeStmts()
		return nil, err
	}
	w.committed.Store(w.seq)
	go w.loop()
	return w, nil
}

// load reads the state the writer mirrors from the file, leaving out of the
// queue the tasks that pending writes took. w.qmu is held.
func (w *writer) load(ctx context.Context) error {
	var maxSeq, maxQSeq, metaSeq, metaQSeq int64
	err := w.conn.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(MAX(seq), 0) FROM events),
		(SELECT COALESCE(MAX(queue_seq), 0) FROM tasks),
		(SELECT value FROM meta WHERE key = 'last_seq'),
		(SELECT value FROM meta WHERE key = 'last_queue_seq')`).Scan(&maxSeq, &maxQSeq, &metaSeq, &metaQSeq)
	if err != nil {
		return fmt.Errorf("store: reading the last seqs: %w", err)
	}
	q := newWaitQueue()
	q.recLimit = recCacheBytes
	rows, err := w.conn.QueryContext(ctx, `SELECT task_id, agent, priority, queue_seq, ready_at FROM tasks
		WHERE state IN ('queued', 'retrying')`)
	if err != nil {
		return fmt.Errorf("store: reading the queue: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, agent string
		var prio, seq, ready int64
		if err := rows.Scan(&id, &agent, &prio, &seq, &ready); err != nil {
			return fmt.Errorf("store: reading the queue: %w", err)
		}
		q.put(id, agent, protocol.Priority(prio), seq, fromNanos(ready), nil)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: reading the queue: %w", err)
	}
	// A pending claim whose task the file does not hold as waiting took
	// it from a write that failed (its creation, rolled back): it fails
	// now, before it runs, since a claim's event is written before its
	// row (deferredClaim).
	var lost []*writeOp
	for _, ops := range []*[]*writeOp{&w.pending, &w.lane} {
		kept := (*ops)[:0]
		for _, o := range *ops {
			if o.took != nil {
				if o.kind == opClaim && q.byID[o.took.id] == nil {
					lost = append(lost, o)
					continue
				}
				q.remove(o.took.id)
			}
			kept = append(kept, o)
		}
		clear((*ops)[len(kept):])
		*ops = kept
	}
	for _, o := range lost {
		o.err = fmt.Errorf("%w: the write that created it was rolled back", taskNotFound(o.took.id))
		o.notify()
	}
	w.seq, w.metaSeq = max(maxSeq, metaSeq), metaSeq
	w.queueSeq, w.metaQSeq = max(maxQSeq, metaQSeq), metaQSeq
	w.queue = q
	return nil
}

// hand appends o to the pending writes; w.qmu is held. The caller pokes
// the writer once it has let go of w.qmu.
//
// The writes of a running task (its claim from a kept record, progress and
// finish) go in a lane of their own, which the writer takes first: they may
// pass the writes pending before them, since those are of other tasks (a
// claim comes after its task's creation ran, and a write of a waiting task
// took it from the queue as it was handed over, before any claim), or name
// no task and do not depend on the state of running ones. Passing lets a
// short task's claim and finish join the transaction that creates it even
// when many creations are pending: the task's row is then inserted once,
// in its final state (sqlite_rowbuf.go).
func (w *writer) hand(o *writeOp) {
	if o.kind.laned() {
		w.lane = append(w.lane, o)
		select {
		case w.laneWake <- struct{}{}:
		default:
		}
	} else {
		w.pending = append(w.pending, o)
	}
}

func (w *writer) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// notify tells the op's caller that it ended, with o.err.
func (o *writeOp) notify() {
	if o.pend != nil {
		o.pend.finish(o.err)
		putOp(o)
	} else {
		o.done <- struct{}{}
	}
}

// await waits for an op handed over without pend, and recycles it.
func (w *writer) await(o *writeOp) error {
	<-o.done
	err := o.err
	putOp(o)
	return err
}

func (w *writer) loop() {
	defer close(w.done)
	chunk := make([]*writeOp, 0, w.maxBatch)
	for {
		quit := false
		select {
		case <-w.wake:
		case <-w.quit:
			// Close waits for the calls in progress, but a claim's write
			// may still be pending (nobody waits for it): commit it.
			quit = true
		}
		for {
			if chunk = w.take(chunk[:0], takeSlice, true); len(chunk) == 0 {
				break
			}
			w.execute(chunk)
			clear(chunk)
			chunk = w.fill(chunk)
			if len(w.txOps) > 0 {
				w.commit()
			}
		}
		if quit {
			return
		}
	}
}

// fill runs the rest of a transaction begun with a first slice of writes:
// the writes handed over while these ran join it. A short task's claim and
// outcome, written while its creation runs, then commit with it (its row
// is inserted once, in its final state), and whoever waits for the task
// waits one commit less. So pending writes are taken a slice at a time,
// the lane's in between, and while a slice's worth of the tasks created
// in the transaction are not finished, more pending writes wait for their
// claims and finishes (the writer would otherwise create tasks faster than
// the workers run them, and commit them all unfinished); unless the lane
// stays idle for a while (long tasks). Only pending writes count against
// maxBatch (a running task's are bounded by the tasks), and the lane alone
// stops at twice it. Once nothing pending can join, the transaction waits
// for its unfinished tasks up to lingerLane in all.
func (w *writer) fill(chunk []*writeOp) []*writeOp {
	idle := false // the lane was waited for in vain since the last take
	var lingering time.Time
	for w.inTx && len(w.txOps) < 3*w.maxBatch {
		limit := max(min(takeSlice, w.maxBatch-w.txMain), 0)
		if w.open >= takeSlice && !idle {
			limit = 0
		}
		if chunk = w.take(chunk[:0], limit, false); len(chunk) > 0 {
			w.execute(chunk)
			clear(chunk)
			idle = false
			continue
		}
		if limit > 0 || w.txMain >= w.maxBatch { // nothing pending can join
			if w.open == 0 || idle {
				break
			}
			if lingering.IsZero() {
				lingering = time.Now()
			} else if time.Since(lingering) > lingerLane {
				break
			}
		}
		if w.ripe >= ripeFlush {
			// Rather than wait, insert what the commit would.
			if err := w.flushDone(); err != nil {
				w.rollback(err, nil)
				return chunk
			}
			continue
		}
		idle = !w.waitLane()
	}
	return chunk
}

// take moves the lane's writes, and pending writes up to limit, to chunk,
// to run in one transaction. When linger is set (the transaction's first
// take), callers woken by the last commit may still be on their way,
// runnable but not yet run: yielding the processor a few times lets them
// arrive and share this commit rather than wait for the next one.
func (w *writer) take(chunk []*writeOp, limit int, linger bool) []*writeOp {
	main := 0
	for round := 0; ; round++ {
		n := len(chunk)
		w.qmu.Lock()
		chunk = append(chunk, w.lane...)
		clear(w.lane)
		w.lane = w.lane[:0]
		k := min(len(w.pending), limit-main)
		chunk = append(chunk, w.pending[:k]...)
		left := copy(w.pending, w.pending[k:])
		clear(w.pending[left:])
		w.pending = w.pending[:left]
		w.qmu.Unlock()
		main += k
		if !linger || round+1 == lingerRounds || main >= limit || len(chunk) == 0 || round > 0 && len(chunk) == n {
			return chunk // no lingering, or nothing to do, or nobody came during the yield
		}
		runtime.Gosched()
	}
}

// lingerLane bounds how long a transaction waits, once nothing pending can
// join it, for the tasks it created to finish (a short task runs in
// microseconds), against a commit of a millisecond or more; it stops
// sooner when lingerIdle passes without a write of a running task
// (waitLane): then the tasks are long.
const (
	lingerLane = time.Millisecond
	lingerIdle = 50 * time.Microsecond
)

// waitLane waits up to lingerIdle for a write of a running task to be
// handed over; false if none was.
func (w *writer) waitLane() bool {
	if w.linger == nil {
		w.linger = time.NewTimer(lingerIdle)
	} else {
		w.linger.Reset(lingerIdle)
	}
	select {
	case <-w.laneWake:
		w.linger.Stop()
		return true
	case <-w.linger.C:
		return false
	}
}

// ripeFlush is how many finished buffered rows make it worth inserting them
// while the writer would wait (flushDone): a statement takes 32 rows.
var ripeFlush = 32 // a variable for tests

// takeSlice is how many pending writes a transaction takes at a time
// after its first take.
const takeSlice = 64

// lingerRounds bounds take's yields: each costs a scheduler pass, a few
// microseconds, against a commit's fsync of a millisecond or more.
const lingerRounds = 4

// execute runs a chunk of writes in a transaction, beginning it. A write
// that aborts rolls the transaction back (rollback), and the rest of the
// chunk goes back to pending.
func (w *writer) execute(chunk []*writeOp) {
	for i, o := range chunk {
		if w.broken != nil {
			o.err = w.broken
			o.notify()
			continue
		}
		if err := o.ctx.Err(); err != nil {
			o.err = err
			if o.took != nil {
				w.qmu.Lock()
				w.queue.restore(o.took)
				w.qmu.Unlock()
			}
			o.notify()
			continue
		}
		if !w.inTx {
			if _, err := w.stmts.begin.Exec(); err != nil {
				// This write fails; the rest go back to pending, to try
				// again (each try fails one write at most).
				o.err = fmt.Errorf("store: beginning a transaction: %w", err)
				w.rollback(o.err, chunk[i+1:])
				o.notify()
				return
			}
			w.inTx, w.began = true, time.Now()
		}
		w.txOps = append(w.txOps, o)
		if !o.kind.laned() {
			w.txMain++
		}
		err := w.settleClaims(o)
		if err == nil && w.needsRows(o) {
			err = w.flushRows()
		}
		if err == nil && o.task == "" && len(w.events) > 0 {
			err = w.flushEvents() // a write of no task of its own may read or delete events
		}
		if err == nil {
			err = w.runOp(o)
		}
		o.err = err
		var ab abortBatch
		if errors.As(err, &ab) {
			w.rollback(ab.err, chunk[i+1:])
			return
		}
	}
}

// commit commits the transaction (synchronous=FULL: with the log's fsync)
// and acknowledges its writes.
func (w *writer) commit() {
	for id := range w.deferred {
		if err := w.flushClaim(id); err != nil {
			w.rollback(err, nil)
			return
		}
	}
	if err := w.flushRows(); err != nil {
		w.rollback(err, nil)
		return
	}
	if err := w.flushEvents(); err != nil {
		w.rollback(err, nil)
		return
	}
	if _, err := w.stmts.commit.Exec(); err != nil {
		w.rollback(fmt.Errorf("committing: %w", err), nil)
		return
	}
	w.inTx = false
	w.commits.Add(1)
	w.writes.Add(int64(len(w.txOps)))
	w.pairs.Add(w.paired)
	w.once.Add(w.doneRows)
	w.paired, w.doneRows = 0, 0
	if w.onCommit != nil {
		w.onCommit(time.Since(w.began), len(w.txOps))
	}
	w.committed.Store(w.seq)
	for i, o := range w.txOps {
		o.notify()
		w.txOps[i] = nil
	}
	w.txOps = w.txOps[:0]
	w.txMain = 0
	if w.logFrames.Load() >= w.restartAt {
		w.restartLog()
	}
}

// restartLog checkpoints on the writer's connection, between two
// transactions, so that the next one starts the log over (checkpointer).
// The background checkpointer has copied all but the last few commits.
func (w *writer) restartLog() {
	w.logFrames.Store(0) // the checkpointer says again if this did not do
	var busy, logFrames, copied int64
	if err := w.conn.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied); err != nil {
		w.log.Warn().Err(err).Msg("checkpointing the store's log failed; retrying later")
	}
	w.restarts.Add(1)
}

// rollback undoes the transaction: nothing of it is durable, which
// every write in it is told, and memory is made to match the file again.
// rest, writes taken but not run, go back to the front of the pending ones,
// so that the reload leaves the tasks they took out of the queue. No write
// is handed over meanwhile, so that none takes a task from the queue the
// failure made stale.
func (w *writer) rollback(failed error, rest []*writeOp) {
	bg := context.Background()
	w.qmu.Lock()
	if w.inTx {
		w.conn.ExecContext(bg, "ROLLBACK")
	}
	w.inTx = false
	clear(w.deferred)
	w.dropRows()
	clear(w.events)
	w.events = w.events[:0]
	w.paired, w.doneRows = 0, 0
	failedOps := slices.Clone(w.txOps)
	clear(w.txOps)
	w.txOps = w.txOps[:0]
	w.txMain = 0
	var back, backLane []*writeOp
	for _, o := range rest {
		if o.kind.laned() {
			backLane = append(backLane, o)
		} else {
			back = append(back, o)
		}
	}
	w.pending = append(back, w.pending...)
	w.lane = append(backLane, w.lane...)
	if len(failedOps) > 0 {
		w.log.Error().Err(failed).Int("ops", len(failedOps)).Msg("a store write batch failed and was rolled back")
	}
	if err := w.load(bg); err != nil {
		w.broken = fmt.Errorf("store: unusable after a failed write (%v), then a failed reload: %w", failed, err)
		w.log.Error().Err(w.broken).Msg("the store stops writing; restart fabricd")
	}
	w.qmu.Unlock()
	if len(rest) > 0 {
		w.poke()
	}
	// A claim that failed with the creation of its task, in the same
	// transaction, leaves no task behind: say so, as load does for a claim
	// still pending.
	var created map[string]bool
	for _, o := range failedOps {
		if o.kind == opCreate {
			if created == nil {
				created = map[string]bool{}
			}
			created[o.task] = true
		}
	}
	for _, o := range failedOps {
		o.err = fmt.Errorf("store: write not committed: %w", failed)
		if o.kind == opClaim && created[o.task] {
			o.err = fmt.Errorf("%w: the write that created it was rolled back: %w", taskNotFound(o.task), failed)
		}
		o.notify()
	}
}

// A claim from a kept record only appends its event when it runs; the
// update of its row is deferred. When the finish of the task's run comes
// in the same transaction, as it does for a short task (claim and finish
// gather in pending while the writer's last fsync runs), that finish makes
// the row's one update, from waiting to its end, under the claim's
// condition: one row update instead of two. Any other write of the task, a
// write that names no task, and the commit first make the claim's own
// update (flushClaim).
type deferredClaim struct {
	e       *qentry
	attempt int   // the attempt before the claim
	started int64 // the claim's start, as stored
}

// settleClaims flushes the deferred claims o could see, and marks o to
// make its task's claim update if it is that claim's finish (merge). A
// finish whose context can end is not merged: it could be skipped, leaving
// the claim half written.
func (w *writer) settleClaims(o *writeOp) error {
	if len(w.deferred) == 0 {
		return nil
	}
	if o.task == "" {
		for id := range w.deferred {
			if err := w.flushClaim(id); err != nil {
				return err
			}
		}
		return nil
	}
	d, ok := w.deferred[o.task]
	if !ok || o.kind == opProgress { // appendProgress reads the deferred claim
		return nil
	}
	if o.kind == opFinish && o.ctx.Done() == nil && o.started == d.started {
		o.merge = true
		return nil
	}
	return w.flushClaim(o.task)
}

// flushClaim makes a deferred claim's row update. Its event is written
// already: a claim that no longer finds its task aborts.
func (w *writer) flushClaim(id string) error {
	d := w.deferred[id]
	delete(w.deferred, id)
	if row := w.buffered(id); row != nil {
		return claimBuffered(row, d)
	}
	res, err := w.stmts.claimKnown.Exec(d.started, d.e.seq, d.attempt)
	if err != nil {
		return abort(fmt.Errorf("claiming task %s: %w", id, err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return abort(fmt.Errorf("claiming task %s: %w", id, w.claimLost(d.e)))
	}
	return nil
}

// runOp runs one op; a panic in it fails the transaction instead of killing the
// writer, which every later write would wait for.
func (w *writer) runOp(o *writeOp) (err error) {
	w.cur = o
	defer func() {
		w.cur = nil
		if p := recover(); p != nil {
			err = abort(fmt.Errorf("panic in a store write: %v\n%s", p, debug.Stack()))
		}
	}()
	return o.run(w)
}

// saveMeta records the last seqs so that they never go back, even once the
// newest events or tasks are pruned: Prune calls it before it deletes. (The
// other writes need not: at open, the seqs are the largest of the rows and
// of meta, and only Prune removes rows.)
func (w *writer) saveMeta(ctx context.Context) error {
	if w.seq != w.metaSeq {
		if _, err := w.stmts.setMeta.ExecContext(ctx, w.seq, "last_seq"); err != nil {
			return err
		}
		w.metaSeq = w.seq
	}
	if w.queueSeq != w.metaQSeq {
		if _, err := w.stmts.setMeta.ExecContext(ctx, w.queueSeq, "last_queue_seq"); err != nil {
			return err
		}
		w.metaQSeq = w.queueSeq
	}
	return nil
}

func (w *writer) stop() {
	close(w.quit)
	<-w.done
	w.closeStmts()
}

func (w *writer) closeStmts() {
	for _, s := range []*sql.Stmt{w.stmts.taskByKey, w.stmts.updateTask, w.stmts.taskState, w.stmts.claim, w.stmts.claimFinish,
		w.stmts.progressOf, w.stmts.requeue, w.stmts.putAgent, w.stmts.deleteAgent, w.stmts.setMeta} {
		if s != nil {
			s.Close()
		}
	}
	for _, s := range append([]*rawStmt{w.stmts.insertTask, w.stmts.insertInput, w.stmts.claimKnown, w.stmts.begin, w.stmts.commit,
		w.stmts.updateKnown, w.stmts.claimFinishKnown}, append(w.stmts.insertEvents[:], w.stmts.insertRows[:]...)...) {
		if s != nil {
			s.Close()
		}
	}
}

// insertEvent appends ev, an event of the task with QueueSeq taskSeq. Its
// seq is assigned, and its row inserted with others, when the events
// appended so far are flushed (flushEvents), before the commit: ev must
// stay where it is until then. A failure then aborts the transaction.
func (w *writer) insertEvent(taskSeq int64, ev *protocol.TaskEvent, payload string) error {
	w.events = append(w.events, eventRow{taskSeq: taskSeq, ev: ev, payload: payload})
	return nil
}

// eventRow is an event waiting to be inserted.
type eventRow struct {
	taskSeq int64
	ev      *protocol.TaskEvent
	payload string
}

// An events row holds one event, or several consecutive events of one task
// (from schema version 3): its seq is the last one's, and its payload the
// JSON array of theirs. flushEvents gives the events of each task in a
// transaction consecutive seqs, in their order, so that a short task's
// three events (queued, running, finished) make one row, not three.
const insertEventSQL = `INSERT INTO events (seq, task_seq, task_id, agent, payload) VALUES (?, ?, ?, ?, ?)`

// eventChunks are the row counts of the prepared event inserts, largest
// first. A statement costs about as much as the rows it inserts (binding,
// stepping and resetting it through database/sql and the transpiled C):
// several rows to a statement insert each for half.
var eventChunks = [...]int{32, 8, 1}

// flushEvents assigns the seqs of the events appended so far, each task's
// together, and inserts them. It runs before the commit, and before any
// write that is not one of a task's own (Prune deletes events, saveMeta
// reads the last seq).
func (w *writer) flushEvents() error {
	if err := w.insertEvents(w.events); err != nil {
		return err
	}
	clear(w.events)
	w.events = w.events[:0]
	return nil
}

// insertEvents assigns the seqs of events and inserts them (flushEvents).
func (w *writer) insertEvents(events []eventRow) error {
	if len(events) == 0 {
		return nil
	}
	// Each task's events, in their order, the tasks in the order of their
	// first event.
	if w.evGroup == nil {
		w.evGroup = map[int64]int{}
	}
	firsts := w.evFirst[:0]
	for i := range events {
		g, ok := w.evGroup[events[i].taskSeq]
		if !ok {
			g = len(firsts)
			w.evGroup[events[i].taskSeq] = g
			firsts = append(firsts, i)
		}
		w.evNext = append(w.evNext, -1)
		if ok {
			w.evNext[w.evLast[g]] = i
			w.evLast[g] = i
		} else {
			w.evLast = append(w.evLast, i)
		}
	}
	rows := w.evRows[:0]
	var b strings.Builder
	for _, i := range firsts {
		e := &events[i]
		n := 0
		for j := i; j >= 0; j = w.evNext[j] {
			w.seq++
			events[j].ev.Seq = w.seq
			n++
		}
		payload := e.payload
		if n > 1 {
			b.Reset()
			b.WriteByte('[')
			for j := i; j >= 0; j = w.evNext[j] {
				if j != i {
					b.WriteByte(',')
				}
				b.WriteString(events[j].payload)
			}
			b.WriteByte(']')
			payload = b.String()
		}
		rows = append(rows, w.seq, e.taskSeq, e.ev.TaskID, e.ev.Agent, payload)
	}
	w.evFirst, w.evRows = firsts, rows
	clear(w.evGroup)
	w.evNext, w.evLast = w.evNext[:0], w.evLast[:0]
	for len(rows) > 0 {
		i := 0
		for eventChunks[i]*5 > len(rows) {
			i++
		}
		n := eventChunks[i] * 5
		if _, err := w.stmts.insertEvents[i].Exec(rows[:n]...); err != nil {
			return abort(fmt.Errorf("appending the events of task %s and more: %w", rows[2], err))
		}
		rows = rows[n:]
	}
	clear(w.evRows)
	return nil
}

func (w *writer) queuePut(id, agent string, prio protocol.Priority, seq int64, at time.Time, rec *TaskRecord) {
	w.qmu.Lock()
	w.queue.put(id, agent, prio, seq, at, rec)
	w.qmu.Unlock()
}

// The ops. Each takes its arguments encoded by the caller.

// createTask inserts a task; rec, if not nil, is its record as a read
// would return it, for the queue to keep.
func (w *writer) createTask(t *TaskRecord, args []any, ev *protocol.TaskEvent, payload string, rec *TaskRecord) (found *taskRow, err error) {
	if _, ok := w.rowAt[t.TaskID]; ok {
		return nil, taskExists(t.TaskID)
	}
	if t.IdempotencyKey != "" {
		if err := w.flushRows(); err != nil {
			return nil, err
		}
		r, err := scanTask(w.stmts.taskByKey.QueryRow(t.IdempotencyKey))
		if err == nil {
			return &r, nil
		}
		if err != sql.ErrNoRows {
			return nil, fmt.Errorf("store: looking up idempotency key: %w", err)
		}
	}
	qseq := w.queueSeq + 1
	args[0] = qseq
	if inputInline(t.Input) {
		w.bufferRow(args)
	} else if _, err := w.stmts.insertTask.Exec(args...); err != nil {
		if isConstraint(err) {
			return nil, taskExists(t.TaskID)
		}
		return nil, fmt.Errorf("store: inserting task %s: %w", t.TaskID, err)
	}
	w.queueSeq, t.QueueSeq = qseq, qseq
	if !inputInline(t.Input) {
		if _, err := w.stmts.insertInput.Exec(qseq, t.Input); err != nil {
			return nil, abort(fmt.Errorf("inserting the input of task %s: %w", t.TaskID, err))
		}
	}
	if err := w.insertEvent(qseq, ev, payload); err != nil {
		return nil, err
	}
	if rec != nil {
		rec.QueueSeq = qseq
	}
	w.queuePut(t.TaskID, t.Agent, t.Priority, qseq, t.ReadyAt, rec)
	if f := w.onReady.Load(); f != nil {
		(*f)()
	}
	return nil, nil
}

// updateTask writes t if it is in state expect. When expect is a waiting
// state, the task's queue entry was taken when the write was handed over
// (took, nil if it had none): on failure it goes back if the file says the
// task is waiting still.
func (w *writer) updateTask(t *TaskRecord, expect protocol.State, m *mutable, ev *protocol.TaskEvent, payload string, took *qentry) error {
	var qseq int64
	var agent string
	merged := w.cur != nil && w.cur.merge
	known := false
	if row := w.buffered(t.TaskID); merged && row != nil {
		// Created, claimed and finished in this transaction.
		if err := finishBuffered(row, t, m); err != nil {
			return err
		}
		if !waiting(t.State) {
			w.open--
			w.ripe++
			w.doneRows++
		}
		known, qseq, agent = true, row[colQueueSeq].(int64), t.Agent
	} else if t.QueueSeq > 0 {
		// The record names its row: update it there. If it does not
		// (another row, another state), the statements below find out why.
		args := []any{int64(t.Priority), string(t.State), int64(t.Attempt), int64(t.MaxRetries), t.TimeoutMs,
			m.started, m.finished, m.next, m.readyAt, m.labels, m.result, m.terr, m.attemptErrs, m.doneAt,
			t.QueueSeq, t.TaskID, t.Agent}
		var res driver.Result
		var err error
		if merged {
			res, err = w.stmts.claimFinishKnown.Exec(append(args, int64(t.Attempt-1))...)
		} else {
			res, err = w.stmts.updateKnown.Exec(append(args, string(expect), m.started)...)
		}
		if err != nil {
			return abort(fmt.Errorf("updating task %s: %w", t.TaskID, err))
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			known, qseq, agent = true, t.QueueSeq, t.Agent
		}
	}
	if known {
		// written
	} else if merged {
		// Merged with the claim, earlier in the transaction, that
		// appended only its event: the row goes from waiting to t under
		// the claim's condition; anything else leaves that event alone:
		// abort.
		err := w.stmts.claimFinish.QueryRow(int64(t.Priority), string(t.State), t.Attempt, t.MaxRetries, t.TimeoutMs,
			m.started, m.finished, m.next, m.readyAt, m.labels, m.result, m.terr, m.attemptErrs, m.doneAt,
			t.TaskID, t.Attempt-1).Scan(&qseq, &agent)
		if err != nil {
			return abort(fmt.Errorf("claiming and finishing task %s: %w", t.TaskID, err))
		}
	} else if err := w.stmts.updateTask.QueryRow(int64(t.Priority), string(t.State), t.Attempt, t.MaxRetries, t.TimeoutMs,
		m.started, m.finished, m.next, m.readyAt, m.labels, m.result, m.terr, m.attemptErrs, m.doneAt,
		t.TaskID, string(expect), m.started).Scan(&qseq, &agent); err == sql.ErrNoRows {
		got, err := w.stateOf(t.TaskID)
		if took != nil {
			w.qmu.Lock()
			if err == nil && waiting(got) {
				w.queue.restore(took)
			} else {
				w.queue.drop(took)
			}
			w.qmu.Unlock()
		}
		if err != nil {
			return err
		}
		return stateChanged(t.TaskID, got, expect)
	} else if err != nil {
		// The statement is undone, but it may have run RETURNING's row:
		// do not trust the rest of the transaction.
		return abort(fmt.Errorf("updating task %s: %w", t.TaskID, err))
	}
	if merged {
		delete(w.deferred, t.TaskID)
		w.paired++
	}
	ev.Agent = agent
	if err := w.insertEvent(qseq, ev, payload); err != nil {
		return err
	}
	w.qmu.Lock()
	if took != nil {
		w.queue.drop(took)
	}
	if waiting(t.State) {
		w.queue.put(t.TaskID, agent, t.Priority, qseq, t.ReadyAt, nil)
	} else if took == nil {
		w.queue.remove(t.TaskID)
	}
	w.qmu.Unlock()
	return nil
}

// stateOf reads a task's state, or says that it does not exist.
func (w *writer) stateOf(id string) (protocol.State, error) {
	var got string
	switch err := w.stmts.taskState.QueryRow(id).Scan(&got); {
	case err == sql.ErrNoRows:
		return "", taskNotFound(id)
	case err != nil:
		return "", fmt.Errorf("store: reading task %s: %w", id, err)
	}
	return protocol.State(got), nil
}

// claimLost explains a claim that found its task no longer waiting: a
// write ordered before the claim changed it (or the task's creation was
// rolled back). That fails the claim alone. A task the file still says is
// waiting means that memory and file disagree: reload both.
func (w *writer) claimLost(e *qentry) error {
	got, err := w.stateOf(e.id)
	switch {
	case err == nil && waiting(got):
		return abort(fmt.Errorf("claiming task %s: the queue and the file disagree", e.id))
	case err == nil:
		return stateChanged(e.id, got, protocol.StateQueued)
	case errors.Is(err, ErrNotFound):
		return err
	}
	return abort(err)
}

// claimKnown records the claim of a task whose record the claimer had
// (attempt is the attempt before the claim): it appends the claim's event
// and defers the row's update (deferredClaim).
func (w *writer) claimKnown(e *qentry, attempt int, now time.Time, ev *protocol.TaskEvent, payload string) error {
	if err := w.insertEvent(e.seq, ev, payload); err != nil {
		return err
	}
	w.deferred[e.id] = deferredClaim{e: e, attempt: attempt, started: toNanos(now)}
	return nil
}

// claimRead claims a task whose record must be read, and appends its event.
// Its event is *ev, whose Seq is set before the commit (insertEvent).
func (w *writer) claimRead(e *qentry, now time.Time, ev *protocol.TaskEvent) (row taskRow, err error) {
	row, err = scanTask(w.stmts.claim.QueryRow(toNanos(now), e.seq))
	if err == sql.ErrNoRows {
		return row, w.claimLost(e)
	}
	if err != nil {
		return row, abort(fmt.Errorf("claiming task %s: %w", e.id, err))
	}
	*ev = protocol.TaskEvent{TaskID: row.id, Agent: row.agent, State: protocol.StateRunning, Attempt: int(row.attempt), At: now}
	payload, err := encodeEvent(ev)
	if err != nil {
		return row, abort(err)
	}
	return row, w.insertEvent(row.queueSeq, ev, payload)
}

// runState returns what appendProgress checks of a task: from its claim,
// if that is deferred, or its row, if that is buffered; otherwise from the
// file.
func (w *writer) runState(id string) (state string, attempt int, agent string, qseq int64, err error) {
	if d, ok := w.deferred[id]; ok {
		return string(protocol.StateRunning), d.attempt + 1, d.e.agent, d.e.seq, nil
	}
	if row := w.buffered(id); row != nil {
		return row[colState].(string), row[colAttempt].(int), row[colAgent].(string), row[colQueueSeq].(int64), nil
	}
	switch err := w.stmts.progressOf.QueryRow(id).Scan(&state, &attempt, &agent, &qseq); {
	case err == sql.ErrNoRows:
		return "", 0, "", 0, taskNotFound(id)
	case err != nil:
		return "", 0, "", 0, fmt.Errorf("store: reading task %s: %w", id, err)
	}
	return state, attempt, agent, qseq, nil
}

// appendProgress appends a progress event, *ev, whose Seq is set before
// the commit (insertEvent).
func (w *writer) appendProgress(taskID string, attempt int, progress float64, at time.Time, ev *protocol.TaskEvent) error {
	state, cur, agent, qseq, err := w.runState(taskID)
	if err != nil {
		return err
	}
	t := TaskRecord{Task: protocol.Task{TaskID: taskID, Agent: agent, State: protocol.State(state), Attempt: cur}}
	if *ev, err = progressEvent(&t, attempt, progress, at); err != nil {
		return err
	}
	payload, err := encodeEvent(ev)
	if err != nil {
		return err
	}
	return w.insertEvent(qseq, ev, payload)
}

func (w *writer) recover(now time.Time) ([]taskRow, []protocol.TaskEvent, error) {
	rows, err := w.conn.QueryContext(context.Background(), `SELECT `+taskCols+` FROM tasks WHERE state = 'running' ORDER BY queue_seq`)
	if err != nil {
		return nil, nil, fmt.Errorf("store: reading running tasks: %w", err)
	}
	var running []taskRow
	for rows.Next() {
		r, err := scanTask(rows)
		if err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("store: reading running tasks: %w", err)
		}
		running = append(running, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: reading running tasks: %w", err)
	}
	evs := make([]protocol.TaskEvent, 0, len(running))
	for i := range running {
		r := &running[i]
		if _, err := w.stmts.requeue.Exec(r.queueSeq); err != nil {
			return nil, nil, abort(fmt.Errorf("requeueing task %s: %w", r.id, err))
		}
		r.state, r.readyAt, r.next = string(protocol.StateQueued), 0, sql.NullInt64{}
		// In evs' room, which does not move: insertEvent sets its Seq later.
		evs = append(evs, protocol.TaskEvent{TaskID: r.id, Agent: r.agent, State: protocol.StateQueued, Attempt: int(r.attempt), At: now})
		ev := &evs[len(evs)-1]
		payload, err := encodeEvent(ev)
		if err != nil {
			return nil, nil, abort(err)
		}
		if err := w.insertEvent(r.queueSeq, ev, payload); err != nil {
			return nil, nil, err
		}
		w.queuePut(r.id, r.agent, protocol.Priority(r.prio), r.queueSeq, time.Time{}, nil)
	}
	return running, evs, nil
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
