package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// createdBy marks a database as Fabric's in its meta table.
const createdBy = "fabricd"

// migrations take a database from version i to i+1 (migrations[i] makes
// version i+1). The version is kept twice, in PRAGMA user_version and in
// meta.schema_version, and they must agree. A release only ever appends to
// this list: a database is never reset to match the code.
var migrations = []string{
	// 1: the first release.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value NOT NULL
) WITHOUT ROWID;

CREATE TABLE agents (
	name          TEXT PRIMARY KEY,
	digest        TEXT NOT NULL,
	abi           TEXT NOT NULL,
	entry         TEXT NOT NULL,
	size          INTEGER NOT NULL,
	capabilities  TEXT NOT NULL, -- JSON array
	limits        TEXT NOT NULL, -- JSON object
	registered_at INTEGER NOT NULL,
	module        BLOB NOT NULL
);

-- queue_seq is the rowid: FIFO order among equal priorities and the
-- newest-first order of task.list are both a walk of the table itself.
CREATE TABLE tasks (
	queue_seq       INTEGER PRIMARY KEY,
	task_id         TEXT NOT NULL UNIQUE,
	agent           TEXT NOT NULL,
	priority        INTEGER NOT NULL,
	state           TEXT NOT NULL,
	attempt         INTEGER NOT NULL,
	max_retries     INTEGER NOT NULL,
	timeout_ms      INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	started_at      INTEGER,
	finished_at     INTEGER,
	next_attempt_at INTEGER,
	ready_at        INTEGER NOT NULL DEFAULT 0,
	idempotency_key TEXT,
	params_hash     TEXT NOT NULL DEFAULT '',
	input_is_json   INTEGER NOT NULL,
	backoff         TEXT NOT NULL,
	quota           TEXT NOT NULL,
	labels          TEXT NOT NULL,
	result          TEXT,
	error           TEXT,
	attempt_errors  TEXT,
	input           BLOB, -- NULL: in task_inputs
	-- set once the task is finished: what Prune orders by
	done_at         INTEGER
);
CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Waiting tasks at open, task.list by state, Recover.
CREATE INDEX tasks_state ON tasks (state, queue_seq);
-- task.list by agent, Waiting.
CREATE INDEX tasks_agent ON tasks (agent, queue_seq);
-- Prune.
CREATE INDEX tasks_done ON tasks (done_at, queue_seq) WHERE done_at IS NOT NULL;

-- Large inputs apart: written once, never rewritten by the updates of the
-- row (SQLite rewrites a whole row on UPDATE). Small ones stay in the row.
CREATE TABLE task_inputs (
	queue_seq INTEGER PRIMARY KEY REFERENCES tasks (queue_seq) ON DELETE CASCADE,
	input     BLOB NOT NULL
);

-- Events name their task by queue_seq, which grows, rather than by task_id,
-- which is random: index inserts land at the end of the b-tree instead of
-- dirtying a random page each.
CREATE TABLE events (
	seq      INTEGER PRIMARY KEY,
	task_seq INTEGER NOT NULL REFERENCES tasks (queue_seq) ON DELETE CASCADE,
	task_id  TEXT NOT NULL,
	agent    TEXT NOT NULL,
	payload  TEXT NOT NULL -- JSON: state, attempt, at, progress, result, error
);
CREATE INDEX events_task ON events (task_seq, seq);
`,
	// 2: an agent's reuse_instances (agent.register's opt-in instance reuse).
	`ALTER TABLE agents ADD COLUMN reuse_instances INTEGER NOT NULL DEFAULT 0;`,
	// 3: an events row may hold several consecutive events of one task: its
	// seq is the last one's and its payload the JSON array of theirs
	// (flushEvents). Nothing to convert; the version keeps a release that
	// reads one event per row from opening a database with such rows.
	`INSERT OR REPLACE INTO meta (key, value) VALUES ('events_row', 'one event, or a task''s consecutive events as an array');`,
}

// schemaVersion is the version this code writes.
var schemaVersion = len(migrations)

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// checkDataDir refuses, before SQLite touches anything, a fabric.db that is
// not a SQLite database, and a directory that holds other things but no
// fabric.db: --data pointed at the wrong place must fail, never be
// initialised over.
func checkDataDir(dir, dbPath string) error {
	f, err := os.Open(dbPath)
	switch {
	case err == nil:
		defer f.Close()
		head := make([]byte, len(sqliteHeader))
		n, err := io.ReadFull(f, head)
		if n == 0 && (err == io.EOF) {
			return nil // empty: SQLite initialises it
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return fmt.Errorf("store: reading %s: %w", dbPath, err)
		}
		if !bytes.Equal(head[:n], sqliteHeader) {
			return fmt.Errorf("store: %s is not a SQLite database (it starts with %q, want %q): "+
				"move it away, or point --data at Fabric's data directory", dbPath, head[:n], sqliteHeader)
		}
		return nil
	case !os.IsNotExist(err):
		return fmt.Errorf("store: opening %s: %w", dbPath, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: reading data directory: %w", err)
	}
	var foreign []string
	for _, e := range entries {
		switch e.Name() {
		case lockName, "compiled": // ours; compiled holds the engine's cache
		default:
			if !strings.HasPrefix(e.Name(), dbName) {
				foreign = append(foreign, e.Name())
			}
		}
	}
	if len(foreign) > 0 {
		const show = 5
		more := ""
		if len(foreign) > show {
			more = fmt.Sprintf(" and %d more", len(foreign)-show)
			foreign = foreign[:show]
		}
		return fmt.Errorf("store: %s holds no %s but other files (%s%s): "+
			"refusing to initialise Fabric's state there; use an empty or new directory",
			dir, dbName, strings.Join(foreign, ", "), more)
	}
	return nil
}

// checkSchema checks, reading only, that the database is new or Fabric's
// and not written by a newer fabricd; it returns the schema version (0 for a
// new database). Whatever it refuses is left exactly as it was.
func checkSchema(ctx context.Context, conn *sql.Conn, dbPath string) (int, error) {
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("store: reading %s: %w", dbPath, err)
	}
	tables, err := tableNames(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("store: reading %s: %w", dbPath, err)
	}
	if len(tables) == 0 && version == 0 {
		return 0, nil
	}
	if !slices.Contains(tables, "meta") {
		return 0, fmt.Errorf("store: %s is a SQLite database but not Fabric's: it has no meta table (its tables: %s); "+
			"move it away, or point --data at Fabric's data directory", dbPath, strings.Join(tables, ", "))
	}
	var by string
	if err := conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'created_by'").Scan(&by); err != nil || by != createdBy {
		if err == nil {
			err = fmt.Errorf("created_by is %q", by)
		}
		return 0, fmt.Errorf("store: %s is a SQLite database but not Fabric's (want meta.created_by %q: %v); "+
			"move it away, or point --data at Fabric's data directory", dbPath, createdBy, err)
	}
	var metaVersion int
	if err := conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'schema_version'").Scan(&metaVersion); err != nil {
		return 0, fmt.Errorf("store: %s: reading meta.schema_version: %w", dbPath, err)
	}
	if version > schemaVersion || metaVersion > schemaVersion {
		return 0, fmt.Errorf("store: %s has schema version %d; this fabricd knows up to %d: upgrade fabricd",
			filepath.Base(dbPath), max(version, metaVersion), schemaVersion)
	}
	if metaVersion != version {
		return 0, fmt.Errorf("store: %s is inconsistent: meta.schema_version is %d but PRAGMA user_version is %d; "+
			"it was changed by something other than fabricd", dbPath, metaVersion, version)
	}
	return version, nil
}

// applyMigrations brings a checked database from version from to
// schemaVersion, one transaction per version.
func applyMigrations(ctx context.Context, conn *sql.Conn, dbPath string, from int) error {
	for v := from + 1; v <= schemaVersion; v++ {
		err := inTx(ctx, conn, func() error {
			if _, err := conn.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			if v == 1 {
				_, err := conn.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES
					('created_by', ?), ('created_at', ?), ('schema_version', 1), ('last_seq', 0), ('last_queue_seq', 0)`,
					createdBy, time.Now().UTC().Format(time.RFC3339))
				if err != nil {
					return err
				}
			}
			if _, err := conn.ExecContext(ctx, "UPDATE meta SET value = ? WHERE key = 'schema_version'", v); err != nil {
				return err
			}
			_, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
			return err
		})
		if err != nil {
			return fmt.Errorf("store: %s: migrating to schema version %d: %w", dbPath, v, err)
		}
	}
	return nil
}

func inTx(ctx context.Context, conn *sql.Conn, fn func() error) error {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		conn.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	_, err := conn.ExecContext(ctx, "COMMIT")
	if err != nil {
		conn.ExecContext(context.Background(), "ROLLBACK")
	}
	return err
}

func tableNames(ctx context.Context, conn *sql.Conn) ([]string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}
