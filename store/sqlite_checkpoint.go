package store

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// checkpointer copies the log (fabric.db-wal) into fabric.db in the
// background, on a connection of its own. SQLite's automatic checkpoint,
// which the writer's connection has turned off, would do it inside a
// commit every 1000 pages: the copy and two fsyncs (log, then database),
// tens of milliseconds during which every waiting write waits too. A
// PASSIVE checkpoint runs beside the writer and the readers.
//
// SQLite starts the log over only when a write transaction begins with the
// log all copied, which under a steady load never happens by chance: the
// writer commits while the checkpointer copies. So once the log holds
// restartFrames, the writer itself checkpoints between two transactions
// (writer.restartLog): the checkpointer has copied most of it already, the
// writer copies the rest, and its next transaction starts the log over.
type checkpointer struct {
	db      *sql.DB
	w       *writer
	log     zerolog.Logger
	every   time.Duration
	quit    chan struct{}
	done    chan struct{}
	lastRun int64        // w.commits at the last run
	runs    atomic.Int64 // checkpoints run
}

func startCheckpointer(db *sql.DB, w *writer, log zerolog.Logger, every time.Duration) *checkpointer {
	c := &checkpointer{db: db, w: w, log: log, every: every, quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

func (c *checkpointer) loop() {
	defer close(c.done)
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
		if n := c.w.commits.Load(); n != c.lastRun {
			c.lastRun = n
			c.tick()
		}
	}
}

// tick checkpoints, and has the writer start the log over if it is long.
func (c *checkpointer) tick() {
	if c.run() >= c.w.restartAt {
		// Copy what came during that run too, then have the writer
		// copy the little left and start the log over.
		c.w.logFrames.Store(c.run())
	}
}

// run checkpoints what it can without waiting for anyone, and returns the
// log's length.
func (c *checkpointer) run() int64 {
	var busy, logFrames, copied int64
	err := c.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
	if err != nil {
		c.log.Warn().Err(err).Msg("checkpointing the store's log failed; retrying later")
		return 0
	}
	c.runs.Add(1)
	return logFrames
}

// restartFrames is the log's length (in pages) past which the writer
// checkpoints so that the log starts over: 4096 pages, 16 MiB.
const restartFrames = 4096

func (c *checkpointer) stop() {
	close(c.quit)
	<-c.done
}
