package store

import (
	"fmt"
	"strings"

	"github.com/chimera-fabric/fabric/protocol"
)

// A new task's row is inserted when its transaction is about to commit, not
// when its creation runs: until then it waits in the writer's row buffer.
// A short task is created, claimed and finished within one transaction
// (its claim and outcome are handed over while the writer runs the batch
// that creates it), and then its claim and finish change the buffered row
// in memory: the task costs one insert of its final row, with one entry in
// each index, instead of an insert, an update that reads the row back and
// rewrites it, and the churn of its state and done indexes. Rows go in
// several to a statement (rowChunks), as events do.
//
// What reads or changes a buffered row otherwise sees the file: any write
// that names no task of its own, and any write of a buffered task other
// than its claim from a kept record (claimKnown), its progress (which reads
// the row: runState) and the finish merged with that claim, first inserts
// every buffered row (flushRows); so does a creation with an idempotency
// key, before it looks the key up. A failure
// to insert them aborts the transaction, as any write that fails after
// others built on it.

// rowCols is a buffered row's width: insertArgs' columns and done_at.
const rowCols = 24

// The buffered row's columns that a claim or a finish changes, by index in
// insertArgs' order (taskColNames), and done_at last.
const (
	colQueueSeq    = 0
	colTaskID      = 1
	colAgent       = 2
	colPriority    = 3
	colState       = 4
	colAttempt     = 5
	colMaxRetries  = 6
	colTimeout     = 7
	colStarted     = 9
	colFinished    = 10
	colNext        = 11
	colReadyAt     = 12
	colLabels      = 18
	colResult      = 19
	colError       = 20
	colAttemptErrs = 21
	colDoneAt      = 23
)

// rowChunks are the row counts of the prepared buffered-row inserts,
// largest first (eventChunks says why).
var rowChunks = [...]int{32, 8, 1}

func insertRowsSQL(n int) string {
	one := "(?" + strings.Repeat(", ?", rowCols-1) + ")"
	return "INSERT INTO tasks (" + taskCols + ", done_at) VALUES " + one + strings.Repeat(", "+one, n-1)
}

// bufferRow buffers the row insertArgs made (args[0] is its QueueSeq), as
// the transaction's next.
func (w *writer) bufferRow(args []any) {
	if w.rowAt == nil {
		w.rowAt = map[string]int{}
	}
	w.rowAt[args[colTaskID].(string)] = len(w.rowArgs) / rowCols
	w.open++
	w.rowArgs = append(w.rowArgs, args...)
	w.rowArgs = append(w.rowArgs, nil) // done_at: a new task is not done
}

// buffered returns the buffered row of task id, nil if it has none.
func (w *writer) buffered(id string) []any {
	i, ok := w.rowAt[id]
	if !ok {
		return nil
	}
	return w.rowArgs[i*rowCols : (i+1)*rowCols : (i+1)*rowCols]
}

// needsRows tells whether o must see the file with the buffered rows in.
func (w *writer) needsRows(o *writeOp) bool {
	if len(w.rowAt) == 0 {
		return false
	}
	if o.task == "" {
		return true
	}
	if _, ok := w.rowAt[o.task]; !ok {
		return false
	}
	return !(o.kind == opClaim || o.kind == opProgress || o.merge)
}

// flushRows inserts the buffered rows.
func (w *writer) flushRows() error {
	if err := w.insertRows(w.rowArgs); err != nil {
		return err
	}
	w.dropRows()
	return nil
}

// insertRows inserts rows, rowCols values each.
func (w *writer) insertRows(rows []any) error {
	for len(rows) > 0 {
		i := 0
		for rowChunks[i]*rowCols > len(rows) {
			i++
		}
		n := rowChunks[i] * rowCols
		if _, err := w.stmts.insertRows[i].Exec(rows[:n]...); err != nil {
			if isConstraint(err) {
				err = fmt.Errorf("%w (or another of the %d rows inserted with it)", taskExists(rows[colTaskID].(string)), rowChunks[i]-1)
			}
			return abort(fmt.Errorf("inserting task %s and %d more: %w", rows[colTaskID], rowChunks[i]-1, err))
		}
		rows = rows[n:]
	}
	return nil
}

// flushDone inserts the buffered rows of the tasks that finished, and their
// events, leaving the rest buffered: the commit would insert them anyway,
// and the writer calls this when it would otherwise wait for the workers
// (fill), so that the commit, which everyone in the transaction waits for,
// has less to do.
func (w *writer) flushDone() error {
	done, kept := w.doneArgs[:0], w.rowArgs[:0]
	clear(w.doneSeqs)
	if w.doneSeqs == nil {
		w.doneSeqs = map[int64]bool{}
	}
	for i := 0; i < len(w.rowArgs); i += rowCols {
		row := w.rowArgs[i : i+rowCols]
		if s, _ := row[colState].(string); s == string(protocol.StateRunning) || waiting(protocol.State(s)) {
			kept = append(kept, row...) // kept may overwrite row only once read: it is never ahead of i
			continue
		}
		done = append(done, row...)
		w.doneSeqs[row[colQueueSeq].(int64)] = true
	}
	w.doneArgs = done
	clear(w.rowArgs[len(kept):])
	w.rowArgs = kept
	clear(w.rowAt)
	for i := 0; i < len(kept); i += rowCols {
		w.rowAt[kept[i+colTaskID].(string)] = i / rowCols
	}
	w.ripe = 0
	err := w.insertRows(done)
	clear(w.doneArgs)
	if err != nil {
		return err
	}
	// Their events, each task's still together and in order.
	evs, keptEvs := w.doneEvents[:0], w.events[:0]
	for _, e := range w.events {
		if w.doneSeqs[e.taskSeq] {
			evs = append(evs, e)
		} else {
			keptEvs = append(keptEvs, e)
		}
	}
	clear(w.events[len(keptEvs):])
	w.events, w.doneEvents = keptEvs, evs
	err = w.insertEvents(evs)
	clear(w.doneEvents)
	return err
}

// dropRows forgets the buffered rows: inserted, or rolled back.
func (w *writer) dropRows() {
	clear(w.rowArgs)
	w.rowArgs = w.rowArgs[:0]
	clear(w.rowAt)
	w.open, w.ripe = 0, 0
}

// claimBuffered makes a deferred claim's change to its task's buffered
// row: as the claimKnown statement would, under the same condition.
func claimBuffered(row []any, d deferredClaim) error {
	if !waitingText(row[colState]) || row[colAttempt] != any(d.attempt) {
		return abort(fmt.Errorf("claiming task %s: its row, created in this transaction, is %v at attempt %v; want waiting at attempt %d",
			row[colTaskID], row[colState], row[colAttempt], d.attempt))
	}
	row[colState], row[colAttempt], row[colStarted], row[colReadyAt], row[colNext] =
		string(protocol.StateRunning), d.attempt+1, d.started, int64(0), nil
	return nil
}

// finishBuffered makes the change of a finish merged with its claim
// (updateTask) to the task's buffered row, under the claimFinishKnown
// statement's condition.
func finishBuffered(row []any, t *TaskRecord, m *mutable) error {
	if !waitingText(row[colState]) || row[colAttempt] != any(t.Attempt-1) ||
		row[colAgent] != any(t.Agent) || row[colQueueSeq] != any(t.QueueSeq) && t.QueueSeq != 0 {
		return abort(fmt.Errorf("claiming and finishing task %s: its row, created in this transaction, is %v at attempt %v; want waiting at attempt %d",
			t.TaskID, row[colState], row[colAttempt], t.Attempt-1))
	}
	row[colPriority], row[colState], row[colAttempt], row[colMaxRetries], row[colTimeout] =
		int64(t.Priority), string(t.State), t.Attempt, t.MaxRetries, t.TimeoutMs
	row[colStarted], row[colFinished], row[colNext], row[colReadyAt], row[colDoneAt] =
		m.started, m.finished, m.next, m.readyAt, m.doneAt
	row[colLabels], row[colResult], row[colError], row[colAttemptErrs] = m.labels, m.result, m.terr, m.attemptErrs
	return nil
}

func waitingText(v any) bool {
	s, _ := v.(string)
	return waiting(protocol.State(s))
}
