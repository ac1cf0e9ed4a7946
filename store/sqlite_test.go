//go:build unix

package store_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
	"github.com/chimera-fabric/fabric/store/storetest"
)

var ctx = context.Background()

func openSQLite(t *testing.T, dir string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(ctx, dir, store.Options{})
	if err != nil {
		t.Fatalf("OpenSQLite(%s): %v", dir, err)
	}
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openSQLite(t, t.TempDir()) })
}

func TestOpenMemory(t *testing.T) {
	s, err := store.Open(ctx, ":memory:", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*store.Memory); !ok {
		t.Fatalf("Open(:memory:) = %T, want *store.Memory", s)
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*store.SQLite); !ok {
		t.Fatalf("Open(dir) = %T, want *store.SQLite", s)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode = %v, want 0700", fi.Mode().Perm())
	}
	for _, name := range []string{"fabric.db", "LOCK"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []store.Options{{MaxBatch: -1}, {ReadConns: -2}, {BusyTimeout: -time.Second}} {
		if _, err := store.OpenSQLite(ctx, t.TempDir(), o); err == nil {
			t.Errorf("OpenSQLite with %+v: no error", o)
		}
	}
}

// TestReopen checks that everything survives a close and an open: agents with
// their modules, tasks in every state, events, the queue, and the seqs.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	agent := store.AgentRecord{
		Agent: protocol.Agent{Name: "echo", Digest: "sha256:x", ABI: protocol.ABIWasiCommand, Entry: "_start",
			SizeBytes: 9, Capabilities: []string{"clock"}, Limits: protocol.Limits{MemoryMB: 32}, RegisteredAt: storetest.T0},
		Module: []byte("\x00asm\x01\x00\x00\x00\xff"),
	}
	if err := s.PutAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	for i, p := range []protocol.Priority{protocol.Low, protocol.High, protocol.Normal, protocol.Normal} {
		tr := storetest.NewTask(fmt.Sprintf("t%d", i), "echo", p)
		tr.IdempotencyKey = fmt.Sprintf("k%d", i)
		tr.Labels = map[string]string{"i": strconv.Itoa(i)}
		if i == 0 {
			tr.Input = []byte(strings.Repeat("large input, kept apart ", 400))
		}
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	now := storetest.T0.Add(time.Second)
	running, _, _, err := s.Claim(ctx, now) // t1 (high)
	if err != nil {
		t.Fatal(err)
	}
	retry, _, _, _ := s.Claim(ctx, now) // t2
	ready := now.Add(time.Hour)
	retry.State, retry.ReadyAt, retry.NextAttemptAt = protocol.StateRetrying, ready, &ready
	retry.Error = protocol.NewTaskError(protocol.CodeTimeout, "slow")
	retry.AttemptErrors = []protocol.TaskError{*retry.Error}
	if _, err := s.UpdateTask(ctx, retry, protocol.StateRunning); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendProgress(ctx, running.TaskID, 1, 0.5, now); err != nil {
		t.Fatal(err)
	}
	beforeEvents, _ := s.Events(ctx, 0, store.EventFilter{}, 0)
	beforeTasks, _, _ := s.ListTasks(ctx, store.TaskFilter{})
	last, _ := s.LastSeq(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, dir)
	defer s.Close()
	got, err := s.GetAgent(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Module) != string(agent.Module) || got.Digest != agent.Digest || !got.RegisteredAt.Equal(agent.RegisteredAt) ||
		got.Limits != agent.Limits || len(got.Capabilities) != 1 {
		t.Errorf("agent after reopen = %+v, want %+v", got, agent)
	}
	afterTasks, _, _ := s.ListTasks(ctx, store.TaskFilter{})
	if asJSON(t, afterTasks) != asJSON(t, beforeTasks) {
		t.Errorf("tasks after reopen:\n%v\nwant\n%v", afterTasks, beforeTasks)
	}
	afterEvents, _ := s.Events(ctx, 0, store.EventFilter{}, 0)
	if asJSON(t, afterEvents) != asJSON(t, beforeEvents) {
		t.Errorf("events after reopen:\n%v\nwant\n%v", afterEvents, beforeEvents)
	}
	if n, _ := s.LastSeq(ctx); n != last {
		t.Errorf("LastSeq after reopen = %d, want %d", n, last)
	}
	d, _ := s.QueueDepth(ctx)
	if d[protocol.Normal] != 2 || d[protocol.Low] != 1 || d[protocol.High] != 0 {
		t.Errorf("QueueDepth after reopen = %v, want normal 2 (t2 retrying, t3), low 1", d)
	}
	if at, ok, _ := s.NextReadyAt(ctx, now); !ok || !at.Equal(ready) {
		t.Errorf("NextReadyAt after reopen = %v %v, want %v", at, ok, ready)
	}
	// Idempotency keys persist.
	dup := storetest.NewTask("other", "echo", protocol.Normal)
	dup.IdempotencyKey = "k0"
	if old, _, created, err := s.CreateTask(ctx, dup); err != nil || created || old.TaskID != "t0" {
		t.Errorf("CreateTask with a key from before the reopen: %s created=%v err=%v, want t0, false", old.TaskID, created, err)
	}
	// Recover the running task; seqs continue.
	rec, err := s.Recover(ctx, now)
	if err != nil || len(rec) != 1 || rec[0].TaskID != running.TaskID {
		t.Fatalf("Recover after reopen = %v, %v; want %s", rec, err, running.TaskID)
	}
	if n, _ := s.LastSeq(ctx); n != last+1 {
		t.Errorf("LastSeq after Recover = %d, want %d", n, last+1)
	}
	order := []string{}
	for {
		tr, _, ok, err := s.Claim(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		order = append(order, tr.TaskID)
	}
	if strings.Join(order, ",") != "t1,t3,t0" {
		t.Errorf("claims after reopen = %v, want t1 (recovered, high), t3, t0", order)
	}
}

// TestSeqNeverReused: pruning the newest events does not let their seqs be
// handed out again, across a reopen.
func TestSeqNeverReused(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	if _, _, _, err := s.CreateTask(ctx, storetest.NewTask("a", "echo", protocol.Normal)); err != nil {
		t.Fatal(err)
	}
	tr, _, _, _ := s.Claim(ctx, storetest.T0)
	fin := storetest.T0
	tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
	if _, err := s.UpdateTask(ctx, tr, protocol.StateRunning); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(ctx, storetest.T0.Add(time.Hour), 0); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	s.Close()
	s = openSQLite(t, dir)
	defer s.Close()
	if n, _ := s.LastSeq(ctx); n != 3 {
		t.Errorf("LastSeq after pruning everything and reopening = %d, want 3", n)
	}
	got, ev, _, err := s.CreateTask(ctx, storetest.NewTask("b", "echo", protocol.Normal))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 4 || got.QueueSeq != 2 {
		t.Errorf("after reopen: event seq %d, QueueSeq %d; want 4 and 2", ev.Seq, got.QueueSeq)
	}
}

// TestPruneLeavesNoOrphans: the writer does not enforce foreign keys, so
// Prune deletes a task's events and kept-apart input itself; SQLite's own
// check finds nothing pointing at a pruned task.
func TestPruneLeavesNoOrphans(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	for i := range 6 {
		tr := storetest.NewTask(fmt.Sprint("t", i), "echo", protocol.Normal)
		tr.Input = []byte(strings.Repeat("x", 4096*(i%2))) // every other one kept apart
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		tr, started, ok, err := s.Claim(ctx, storetest.T0)
		if err != nil || !ok {
			t.Fatalf("Claim = %v, %v", ok, err)
		}
		if _, err := started.Wait(); err != nil {
			t.Fatal(err)
		}
		fin := storetest.T0
		tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
		if _, err := s.UpdateTask(ctx, tr, protocol.StateRunning); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Prune(ctx, storetest.T0.Add(time.Hour), 1); err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3", n, err)
	}
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "fabric.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, parent string
		var rowid, fk sql.NullInt64
		rows.Scan(&table, &rowid, &parent, &fk)
		t.Errorf("after Prune: row %d of %s points at a missing %s", rowid.Int64, table, parent)
	}
	var tasks, events, inputs int
	if err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM tasks), (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM task_inputs)`).Scan(&tasks, &events, &inputs); err != nil {
		t.Fatal(err)
	}
	// Left: one finished task (3 events) and two waiting (1 event each);
	// inputs kept apart: of t1, t3 and t5, t5 is waiting; t3 the kept one.
	if tasks != 3 || events != 5 || inputs != 2 {
		t.Errorf("after Prune: %d tasks, %d events, %d inputs kept apart; want 3, 5, 2", tasks, events, inputs)
	}
}

func TestDirLock(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	_, err := store.OpenSQLite(ctx, dir, store.Options{})
	if err == nil {
		t.Fatal("second OpenSQLite on a held directory: no error")
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "another fabricd") {
		t.Errorf("error = %q; want it to name the holder's pid %d", err, os.Getpid())
	}
	// The first store is unharmed, and the lock goes with Close.
	if _, _, _, err := s.CreateTask(ctx, storetest.NewTask("a", "echo", protocol.Normal)); err != nil {
		t.Fatalf("CreateTask on the first store: %v", err)
	}
	s.Close()
	s = openSQLite(t, dir)
	s.Close()
}

func TestOpenRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"garbage fabric.db", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "fabric.db"), "this is my shopping list, not a database\n")
		}, []string{"fabric.db is not a SQLite database", "this is my shopp"}},
		{"short garbage fabric.db", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "fabric.db"), "x")
		}, []string{"is not a SQLite database"}},
		{"damaged database", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "fabric.db"), "SQLite format 3\x00"+strings.Repeat("\xee", 4096))
		}, []string{"fabric.db"}},
		{"foreign database", func(t *testing.T, dir string) {
			sqlExec(t, filepath.Join(dir, "fabric.db"), "CREATE TABLE invoices (id INTEGER); CREATE TABLE customers (name TEXT)")
		}, []string{"not Fabric's", "no meta table", "customers, invoices"}},
		{"foreign database with a meta table", func(t *testing.T, dir string) {
			sqlExec(t, filepath.Join(dir, "fabric.db"), "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('created_by', 'someone')")
		}, []string{"not Fabric's", `"someone"`}},
		{"newer schema", func(t *testing.T, dir string) {
			s := openSQLite(t, dir)
			s.Close()
			sqlExec(t, filepath.Join(dir, "fabric.db"), "UPDATE meta SET value = 7 WHERE key = 'schema_version'; PRAGMA user_version = 7")
		}, []string{"fabric.db has schema version 7; this fabricd knows up to 3: upgrade fabricd"}},
		{"tampered version", func(t *testing.T, dir string) {
			s := openSQLite(t, dir)
			s.Close()
			sqlExec(t, filepath.Join(dir, "fabric.db"), "PRAGMA user_version = 0")
		}, []string{"inconsistent", "schema_version is 3", "user_version is 0"}},
		{"non-empty directory", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "notes.txt"), "mine")
			write(t, filepath.Join(dir, "photo.jpg"), "mine")
		}, []string{"holds no fabric.db", "notes.txt, photo.jpg", "refusing"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			before := snapshot(t, dir)
			s, err := store.OpenSQLite(ctx, dir, store.Options{})
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite: no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Never a silent reset: the database file is untouched.
			if after := snapshot(t, dir); after != before {
				t.Errorf("OpenSQLite changed fabric.db")
			}
			// And the directory is free again.
			if err2 := checkUnlocked(dir); err2 != nil {
				t.Error(err2)
			}
		})
	}
}

func TestOpenEmptyFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "fabric.db"), "")
	s := openSQLite(t, dir)
	s.Close()
}

func asJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func snapshot(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "fabric.db"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func checkUnlocked(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("LOCK still held after a failed open: %v", err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// sqlExec runs statements on a database with the driver directly, as another
// program would.
func sqlExec(t *testing.T, path, stmts string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range strings.Split(stmts, ";") {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// The kill-safety test: a child process creates tasks as fast as it can and
// prints each id once CreateTask has returned; the parent kills it with
// SIGKILL mid-stream, reopens the store and finds every printed task.

const killChildEnv = "FABRIC_STORE_KILL_CHILD"

// childMain runs the kill-safety child when this binary was started as one.
func childMain() (int, bool) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		return 0, false
	}
	return killChild(dir), true
}

func killChild(dir string) int {
	s, err := store.OpenSQLite(ctx, dir, store.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				tr := storetest.NewTask(id, "echo", protocol.Priority(i%5))
				tr.Input = make([]byte, 512) // some bulk, to have pages in flight
				if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(out, id)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

func TestKillSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 1500
	var acked []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		acked = append(acked, sc.Text())
		if len(acked) == killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Keep reading: lines written before the kill landed are acks too.
		}
	}
	err = cmd.Wait()
	if len(acked) < killAfter {
		t.Fatalf("the child acknowledged %d tasks and stopped (%v); want it killed after %d", len(acked), err, killAfter)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", err)
	}

	s := openSQLite(t, dir)
	defer s.Close()
	for _, id := range acked {
		if _, err := s.GetTask(ctx, id); err != nil {
			t.Fatalf("task %s was acknowledged before the kill but is missing after it: %v", id, err)
		}
	}
	all, _ := s.Events(ctx, 0, store.EventFilter{}, 0)
	for i, ev := range all {
		if ev.Seq != int64(i+1) {
			t.Fatalf("after the kill, event %d has seq %d: want gap-free", i, ev.Seq)
		}
	}
	tasks := 0
	for cursor := ""; ; {
		page, next, err := s.ListTasks(ctx, store.TaskFilter{Limit: protocol.MaxListLimit, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		tasks += len(page)
		if cursor = next; cursor == "" {
			break
		}
	}
	if tasks != len(all) {
		t.Errorf("%d tasks but %d events after the kill: each task's creation is one event", tasks, len(all))
	}
	t.Logf("%d acknowledged, %d stored after SIGKILL", len(acked), tasks)
	var check string
	db, err := sql.Open("sqlite", filepath.Join(dir, "fabric.db")+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
}

// TestMigrateFromFirstRelease opens a database as the first release wrote it
// (schema 1: no reuse_instances column, one event per events row) and
// checks that it is migrated, with its agents and events kept, and that the
// new column is then written and read.
func TestMigrateFromFirstRelease(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, dir)
	agent := store.AgentRecord{
		Agent: protocol.Agent{Name: "echo", Digest: "sha256:x", ABI: protocol.ABIFabricV1, Entry: "run",
			SizeBytes: 9, Capabilities: []string{}, RegisteredAt: storetest.T0},
		Module: []byte("\x00asm\x01\x00\x00\x00\xff"),
	}
	if err := s.PutAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	_, created, _, err := s.CreateTask(ctx, store.TaskRecord{Task: protocol.Task{TaskID: "t", Agent: "echo", CreatedAt: storetest.T0}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := filepath.Join(dir, "fabric.db")
	sqlExec(t, db, "ALTER TABLE agents DROP COLUMN reuse_instances; DELETE FROM meta WHERE key = 'events_row'; "+
		"UPDATE meta SET value = 1 WHERE key = 'schema_version'; PRAGMA user_version = 1")

	s = openSQLite(t, dir)
	defer s.Close()
	got, err := s.GetAgent(ctx, "echo")
	if err != nil {
		t.Fatalf("GetAgent after the migration: %v", err)
	}
	if got.ReuseInstances || got.Digest != agent.Digest || string(got.Module) != string(agent.Module) {
		t.Fatalf("GetAgent after the migration = %+v", got)
	}
	if evs, err := s.Events(ctx, 0, store.EventFilter{}, 0); err != nil || len(evs) != 1 || evs[0] != created {
		t.Fatalf("Events after the migration = %+v, %v; want %+v", evs, err, created)
	}
	agent.ReuseInstances = true
	if err := s.PutAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetAgent(ctx, "echo"); err != nil || !got.ReuseInstances {
		t.Fatalf("GetAgent after putting reuse_instances: %+v, %v", got.Agent, err)
	}
	var version int
	sdb, err := sql.Open("sqlite", db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	if err := sdb.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != 3 {
		t.Fatalf("user_version after the migration = %d, %v; want 3", version, err)
	}
}
