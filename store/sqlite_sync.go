package store

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// The writer commits with synchronous=NORMAL, which in WAL mode writes a
// commit's frames to the log (fabric.db-wal) without an fsync, and the
// syncer fsyncs the log after the commits, off the writer's goroutine:
// while it waits for the disk, the writer runs and commits the next batch.
// Nothing is acknowledged before the fsync that follows its commit: a
// write's caller hears of it, and a read returns what it saw (durable),
// only once the log holding it is on disk. That is synchronous=FULL's
// guarantee (FULL fsyncs the log in each commit) without the writer
// waiting for the disk. A crash loses only commits no one was told of: the
// log is replayed up to its last whole commit, and the commits of one log
// are a prefix in commit order, so a synced commit keeps every earlier one.
//
// SQLite itself still syncs where NORMAL does, at checkpoints: the log
// before it is copied into fabric.db, and fabric.db after.
type syncer struct {
	path string
	dir  string
	log  *os.File // the log, open since the first sync
	info os.FileInfo

	mu       sync.Mutex // guards the fields below
	unsynced []*writeOp // committed, not yet synced, in commit order
	spare    []*writeOp
	doneGen  int64         // commits ended (committed or not), as counted by started
	lastSeq  int64         // the writer's seq after the last of them
	err      error         // a failed fsync: nothing is acknowledged after it
	synced   chan struct{} // closed and replaced at each sync

	started  atomic.Int64 // commits begun: what a read may have seen
	syncGen  atomic.Int64 // commits synced (doneGen at the last sync)
	inFlight bool         // a sync runs, guarded by mu

	wake chan struct{}
	idle chan struct{} // told to the writer after each sync, capacity 1
	quit chan struct{}
	done chan struct{}

	// sync fsyncs the log; tests replace it.
	sync func(*os.File) error
}

func newSyncer(dbPath string) *syncer {
	return &syncer{path: dbPath + "-wal", dir: filepath.Dir(dbPath), synced: make(chan struct{}),
		wake: make(chan struct{}, 1), idle: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		sync: (*os.File).Sync}
}

// ended hands over a commit that ended: ops committed, and seq the
// writer's seq after them; or nil if the commit failed (its ops have been
// told), which still counts as begun (started).
func (y *syncer) ended(ops []*writeOp, seq int64) {
	y.mu.Lock()
	y.unsynced = append(y.unsynced, ops...)
	y.doneGen++
	if ops != nil {
		y.lastSeq = seq
	}
	y.mu.Unlock()
	select {
	case y.wake <- struct{}{}:
	default:
	}
}

func (y *syncer) loop(committed *atomic.Int64, onErr func(error)) {
	defer close(y.done)
	for {
		quit := false
		select {
		case <-y.wake:
		case <-y.quit:
			quit = true // the writer has stopped: sync what it committed
		}
		y.mu.Lock()
		ops, gen, seq, failed := y.unsynced, y.doneGen, y.lastSeq, y.err
		y.unsynced = y.spare[:0]
		y.inFlight = gen > y.syncGen.Load()
		y.mu.Unlock()
		if gen > y.syncGen.Load() {
			err := failed
			if err == nil {
				if err = y.syncLog(); err != nil {
					// After a failed fsync the kernel may have dropped the
					// pages it could not write: no later fsync can vouch
					// for them. Stop acknowledging anything.
					err = fmt.Errorf("store: syncing %s failed; fabricd must be restarted, and what was not acknowledged may be lost: %w", filepath.Base(y.path), err)
					onErr(err)
				}
			}
			y.mu.Lock()
			if err != nil {
				y.err = err
			} else {
				committed.Store(seq)
			}
			y.syncGen.Store(gen)
			close(y.synced)
			y.synced = make(chan struct{})
			y.mu.Unlock()
			for i, o := range ops {
				if err != nil {
					o.err = err
				}
				o.notify()
				ops[i] = nil
			}
		}
		y.mu.Lock()
		y.spare = ops[:0]
		y.inFlight = false
		y.mu.Unlock()
		select {
		case y.idle <- struct{}{}:
		default:
		}
		if quit {
			return
		}
	}
}

// syncLog fsyncs the log, reopening it if it is not the file it had open
// (the first time, or if SQLite made a new one): a new file's directory
// entry is synced too.
func (y *syncer) syncLog() error {
	fi, err := os.Stat(y.path)
	if err != nil {
		return err
	}
	if y.log == nil || !os.SameFile(fi, y.info) {
		if y.log != nil {
			y.log.Close()
			y.log = nil
		}
		f, err := os.OpenFile(y.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		if err := syncDir(y.dir); err != nil {
			f.Close()
			return err
		}
		y.log, y.info = f, fi
	}
	return y.sync(y.log)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// durable waits until every commit a read made before it may have seen is
// synced, so that a read never returns what a crash could take back.
func (y *syncer) durable() error {
	gen := y.started.Load()
	for y.syncGen.Load() < gen {
		y.mu.Lock()
		if y.syncGen.Load() >= gen {
			y.mu.Unlock()
			break
		}
		ch, err := y.synced, y.err
		y.mu.Unlock()
		if err != nil {
			return err
		}
		<-ch
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.err
}

// busy reports whether a sync runs or a commit waits for one: the writer
// then lets its open transaction grow rather than commit.
func (y *syncer) busy() bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.inFlight || y.doneGen > y.syncGen.Load()
}

// failed returns the error of a failed fsync, if any.
func (y *syncer) failed() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.err
}

func (y *syncer) stop() {
	close(y.quit)
	<-y.done
	if y.log != nil {
		y.log.Close()
	}
}
