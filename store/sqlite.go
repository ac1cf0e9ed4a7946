package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// File names inside the data directory.
const (
	dbName   = "fabric.db"
	lockName = "LOCK"
)

// Options configure the durable store. The zero value is valid: every field
// has a documented default.
type Options struct {
	// Logger receives the store's rare messages (a failed write batch).
	// The zero value logs nothing.
	Logger zerolog.Logger
	// MaxBatch caps how many writes share one transaction. Default 512.
	MaxBatch int
	// ReadConns is the size of the pool of read connections, which WAL lets
	// run beside the writer. Default 4.
	ReadConns int
	// OnCommit, when set, is told of every commit: how long the
	// transaction took from BEGIN to COMMIT, and how many writes it held.
	// It runs on the writer goroutine and must be quick (a metric).
	OnCommit func(d time.Duration, writes int)
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection of this process (a checkpoint, say). Default 5s.
	BusyTimeout time.Duration

	// Tests shorten these (checkpointer); zero means the defaults.
	checkpointEvery time.Duration
	restartFrames   int64
}

// Validate checks o; zero fields mean their defaults.
func (o *Options) Validate() error {
	if o.MaxBatch < 0 {
		return fmt.Errorf("store: MaxBatch: want >= 1 (or 0 for the default 512); got %d", o.MaxBatch)
	}
	if o.ReadConns < 0 {
		return fmt.Errorf("store: ReadConns: want >= 1 (or 0 for the default 4); got %d", o.ReadConns)
	}
	if o.BusyTimeout < 0 {
		return fmt.Errorf("store: BusyTimeout: want >= 0; got %v", o.BusyTimeout)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MaxBatch == 0 {
		o.MaxBatch = 512
	}
	if o.ReadConns == 0 {
		o.ReadConns = 4
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.checkpointEvery == 0 {
		o.checkpointEvery = checkpointEvery
	}
	if o.restartFrames == 0 {
		o.restartFrames = restartFrames
	}
	return o
}

// Open opens the store named by --data: ":memory:" for a Memory store,
// otherwise the SQLite store in that directory (created, mode 0700, if it
// does not exist).
func Open(ctx context.Context, data string, opts Options) (Store, error) {
	if data == ":memory:" {
		return NewMemory(), nil
	}
	return OpenSQLite(ctx, data, opts)
}

// SQLite is the durable Store: fabric.db in a data directory, in WAL mode
// with synchronous=FULL, so that a write acknowledged survives a crash or a
// power cut. One goroutine writes and commits writes in groups (see writer);
// reads run on a pool of their own connections. The process holds the
// directory exclusively (LOCK), which lets it keep the queue of waiting tasks
// in memory: a claim needs no query to find its task, only the write that
// takes it.
type SQLite struct {
	lock *dirLock
	wdb  *sql.DB // one connection: the writer's
	rdb  *sql.DB // the read pool
	cdb  *sql.DB // one connection: the checkpointer's
	w    *writer
	cp   *checkpointer

	life   sync.RWMutex // read-held by every call, held by Close
	closed bool

	getTask, getInput, getAgent, listAgents, waiting *sql.Stmt
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens, or creates, the store in dir. It fails with a clear error
// if another process holds dir, if dir holds something that is not Fabric's
// (never resetting it), or if fabric.db was written by a newer fabricd.
func OpenSQLite(ctx context.Context, dir string, opts Options) (_ *SQLite, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if dir == "" {
		return nil, errors.New("store: the data directory is empty; want a directory or :memory:")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("store: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: creating the data directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	s := &SQLite{lock: lock}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	dbPath := filepath.Join(dir, dbName)
	if err := checkDataDir(dir, dbPath); err != nil {
		return nil, err
	}

	dsn := sqliteDSN(dbPath, opts.BusyTimeout, false)
	if s.wdb, err = sql.Open("sqlite", dsn); err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", dbPath, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetConnMaxIdleTime(0)
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", dbPath, notADatabase(dbPath, err))
	}
	if err := prepareDB(ctx, conn, dbPath, opts.Logger); err != nil {
		conn.Close()
		return nil, notADatabase(dbPath, err)
	}
	if s.w, err = newWriter(ctx, conn, opts.MaxBatch, opts.Logger, opts.OnCommit); err != nil {
		conn.Close()
		return nil, err
	}

	if s.cdb, err = sql.Open("sqlite", sqliteDSN(dbPath, opts.BusyTimeout, false)); err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", dbPath, err)
	}
	s.cdb.SetMaxOpenConns(1)
	s.w.restartAt = opts.restartFrames
	s.cp = startCheckpointer(s.cdb, s.w, opts.Logger, opts.checkpointEvery)

	if s.rdb, err = sql.Open("sqlite", sqliteDSN(dbPath, opts.BusyTimeout, true)); err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", dbPath, err)
	}
	s.rdb.SetMaxOpenConns(opts.ReadConns)
	s.rdb.SetMaxIdleConns(opts.ReadConns)
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.getTask, selectTasks + ` WHERE tasks.task_id = ?`},
		{&s.getInput, `SELECT input FROM task_inputs WHERE queue_seq = ?`},
		{&s.getAgent, `SELECT name, digest, abi, entry, size, capabilities, limits, registered_at, module, reuse_instances FROM agents WHERE name = ?`},
		{&s.listAgents, `SELECT name, digest, abi, entry, size, capabilities, limits, registered_at, module, reuse_instances FROM agents ORDER BY name`},
		{&s.waiting, selectTasks + ` WHERE +tasks.agent = ? AND tasks.state IN ('queued', 'retrying') ORDER BY tasks.queue_seq`}, // + : by state, the waiting few, not by agent
	} {
		if *p.dst, err = s.rdb.PrepareContext(ctx, p.q); err != nil {
			return nil, fmt.Errorf("store: preparing %q: %w", p.q, err)
		}
	}
	return s, nil
}

// checkpointEvery is how often the checkpointer copies the log, if
// anything was committed meanwhile.
const checkpointEvery = 250 * time.Millisecond

// sqliteDSN names fabric.db with the pragmas every connection needs.
func sqliteDSN(path string, busy time.Duration, readOnly bool) string {
	// A URI filename: escape what would end the path.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	// WAL is set once, persistently, after the checks (prepareDB): setting
	// it here would rewrite a foreign file before it is refused.
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// Foreign keys are not enforced on the writer: each check is a
		// lookup of the task per event row, and every row the writer
		// inserts names a task it wrote in the same transaction or before.
		// Prune deletes a task's events and input with it.
		q.Add("_pragma", "foreign_keys(0)")
		q.Add("_pragma", "synchronous(FULL)")
		// The checkpointer copies the log, not a commit (checkpointer).
		q.Add("_pragma", "wal_autocheckpoint(0)")
		// Statement journals in memory: a multi-row insert (rows,
		// events) keeps the pages it changes that the transaction had
		// changed before, to undo itself alone; in a file that was a
		// system call per page, half of the writer's writes.
		q.Add("_pragma", "temp_store(MEMORY)")
	}
	return "file:" + esc + "?" + q.Encode()
}

// prepareDB checks the database, reading only, then switches it to WAL and
// migrates it. Durability rests on WAL and synchronous=FULL, so both are
// verified, not assumed.
func prepareDB(ctx context.Context, conn *sql.Conn, dbPath string, log zerolog.Logger) error {
	version, err := checkSchema(ctx, conn, dbPath)
	if err != nil {
		return err
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("store: %s: setting WAL mode: %w", dbPath, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("store: %s: journal_mode is %q, want wal (is the file system one that supports it?)", dbPath, mode)
	}
	var sync int
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("store: opening %s: %w", dbPath, err)
	}
	if sync != 2 { // FULL
		return fmt.Errorf("store: %s: synchronous is %d, want 2 (FULL)", dbPath, sync)
	}
	if err := applyMigrations(ctx, conn, dbPath, version); err != nil {
		return err
	}
	switch {
	case version == 0:
		log.Info().Str("path", dbPath).Int("schema_version", schemaVersion).Msg("created a new Fabric database")
	case version < schemaVersion:
		log.Info().Str("path", dbPath).Int("from", version).Int("to", schemaVersion).Msg("migrated the Fabric database")
	}
	return nil
}

// notADatabase rewords SQLite's "file is not a database" for an operator.
func notADatabase(dbPath string, err error) error {
	if err != nil && strings.Contains(err.Error(), "not a database") {
		return fmt.Errorf("store: %s is not a SQLite database, or is damaged (%v): move it away, or point --data at Fabric's data directory", dbPath, err)
	}
	return err
}

// release frees what Open acquired; Close and a failed Open use it.
func (s *SQLite) release() error {
	var errs []error
	if s.cp != nil {
		s.cp.stop()
	}
	if s.cdb != nil {
		errs = append(errs, s.cdb.Close())
	}
	if s.w != nil {
		s.w.stop()
		errs = append(errs, s.w.conn.Close())
	}
	for _, st := range []*sql.Stmt{s.getTask, s.getInput, s.getAgent, s.listAgents, s.waiting} {
		if st != nil {
			st.Close()
		}
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.unlock())
	}
	return errors.Join(errs...)
}

// Close waits for calls in progress, stops the writer and releases the
// directory.
func (s *SQLite) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	return s.release()
}

// WriteStats count the writer's work since Open.
type WriteStats struct {
	Commits int64 // transactions committed
	Writes  int64 // writes they held: Writes/Commits is the group commit's batch size
	Paired  int64 // claims committed with the finish of their run, in one row update
	// Once counts the tasks created, claimed and finished in one
	// transaction: their row inserted once, finished (sqlite_rowbuf.go).
	Once int64
}

// WriteStats returns the writer's counters.
func (s *SQLite) WriteStats() WriteStats {
	return WriteStats{Commits: s.w.commits.Load(), Writes: s.w.writes.Load(), Paired: s.w.pairs.Load(), Once: s.w.once.Load()}
}

// OnReady sets f to be called, on the writer's goroutine, each time a
// creation puts a task in the queue, before its transaction commits: a
// worker woken then claims and runs the task while the transaction is
// still open, and the task's claim and finish can join it (its row is then
// inserted once, in its final state: sqlite_rowbuf.go). f must not block
// nor call the store.
func (s *SQLite) OnReady(f func()) { s.w.onReady.Store(&f) }

// enter starts a call; the caller must call s.life.RUnlock when done.
func (s *SQLite) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// write hands fn to the writer and waits until its batch is committed (or
// failed). Once handed over, a write is not abandoned when ctx ends: its
// outcome must be known to the caller, or a claimed task would be lost.
func (s *SQLite) write(ctx context.Context, fn func(w *writer) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	return s.send(ctx, fn)
}

// send is write for a caller that has entered already.
func (s *SQLite) send(ctx context.Context, fn func(w *writer) error) error {
	return s.sendFor(ctx, "", opOther, 0, false, fn)
}

// sendFor is send for a write of task id, of the kind pair looks for
// (started: for a finish, the start of the claim it is for). With
// take, for a write that changes a task that may be waiting, the task's
// queue entry (if any) is taken as the write is handed over, so that no
// claim ordered after the write takes the task (the write's run finds the
// entry in w.cur.took).
func (s *SQLite) sendFor(ctx context.Context, id string, kind opKind, started int64, take bool, fn func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := s.w
	o := getOp(ctx, fn)
	o.task, o.kind, o.started = id, kind, started
	w.qmu.Lock()
	if take {
		o.took = w.queue.take(id)
	}
	w.hand(o)
	w.qmu.Unlock()
	w.poke()
	return w.await(o)
}

// withInput decodes a row read from taskCols, adding its input from
// task_inputs if it is kept there: an input never changes once written, so
// the read pool serves it. The caller has entered.
func (s *SQLite) withInput(ctx context.Context, r *taskRow) (TaskRecord, error) {
	t, err := r.decode()
	if err != nil || r.input != nil {
		return t, err
	}
	err = s.getInput.QueryRowContext(ctx, r.queueSeq).Scan(&t.Input)
	if err != nil && err != sql.ErrNoRows {
		return t, fmt.Errorf("store: reading the input of task %s: %w", t.TaskID, err)
	}
	return t, nil
}
