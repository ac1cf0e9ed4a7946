//go:build unix

package store_test

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
	"github.com/chimera-fabric/fabric/store/storetest"
)

// The durable store against the in-memory baseline. Parallel benchmarks run
// with SetParallelism: clients=N means N goroutines per GOMAXPROCS, as many
// connections submitting at once would.
//
//	go test ./store -run '^$' -bench . -benchtime 2s

var benchStores = []struct {
	name string
	open func(b *testing.B) store.Store
}{
	{"memory", func(b *testing.B) store.Store { return store.NewMemory() }},
	{"sqlite", func(b *testing.B) store.Store {
		s, err := store.OpenSQLite(ctx, b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

var benchClients = []int{1, 16, 64}

// cpuMeter reports the process's CPU time per op beside the wall time: on a
// machine shared with other work, wall time measures the neighbours too.
type cpuMeter struct{ start time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{cpuTime()} }

func (m cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(cpuTime()-m.start)/float64(b.N), "cpu-ns/op")
}

// reportBatch reports the SQLite store's mean group-commit batch size.
func reportBatch(b *testing.B, s store.Store) {
	if sq, ok := s.(*store.SQLite); ok {
		st := sq.WriteStats()
		b.ReportMetric(float64(st.Writes)/float64(max(st.Commits, 1)), "writes/commit")
	}
}

// Task ids as the scheduler makes them (random UUIDs), or time-ordered ones
// (UUIDv7), which keep the task_id index's inserts at its end.
var benchIDs = []struct {
	name string
	gen  func() string
}{
	{"uuid4", uuid.NewString},
	{"uuid7", func() string { return uuid.Must(uuid.NewV7()).String() }},
}

func BenchmarkCreateTask(b *testing.B) {
	for _, bs := range benchStores {
		for _, id := range benchIDs {
			b.Run(bs.name+"/"+id.name+"/serial", func(b *testing.B) {
				s := bs.open(b)
				defer s.Close()
				b.ReportAllocs()
				cpu := startCPU()
				for i := 0; b.Loop(); i++ {
					if _, _, _, err := s.CreateTask(ctx, benchTask(id.gen(), i)); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
			})
			for _, clients := range benchClients {
				b.Run(fmt.Sprintf("%s/%s/clients=%dxGOMAXPROCS", bs.name, id.name, clients), func(b *testing.B) {
					s := bs.open(b)
					defer s.Close()
					var n atomic.Int64
					b.ReportAllocs()
					b.SetParallelism(clients)
					b.ResetTimer()
					cpu := startCPU()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, _, _, err := s.CreateTask(ctx, benchTask(id.gen(), int(n.Add(1)))); err != nil {
								b.Error(err)
								return
							}
						}
					})
					cpu.report(b)
					reportBatch(b, s)
				})
			}
		}
	}
}

// benchTask is a task as the scheduler submits it: a small JSON input, a
// label, an even mix of priorities.
func benchTask(id string, i int) store.TaskRecord {
	tr := storetest.NewTask(id, "echo", protocol.Priority(i%5))
	tr.Input = []byte(`{"prompt":"summarise the attached report","n":42}`)
	tr.Labels = map[string]string{"batch": "nightly"}
	return tr
}

// BenchmarkClaimUpdate measures one task's run through the store: Claim,
// then UpdateTask to put it back (queued), over a standing queue of 1000.
func BenchmarkClaimUpdate(b *testing.B) {
	for _, bs := range benchStores {
		for _, clients := range benchClients {
			b.Run(fmt.Sprintf("%s/clients=%dxGOMAXPROCS", bs.name, clients), func(b *testing.B) {
				s := bs.open(b)
				defer s.Close()
				for i := 0; i < 1000; i++ {
					if _, _, _, err := s.CreateTask(ctx, benchTask(uuid.NewString(), i)); err != nil {
						b.Fatal(err)
					}
				}
				now := time.Now()
				b.ReportAllocs()
				b.SetParallelism(clients)
				b.ResetTimer()
				cpu := startCPU()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						tr, started, ok, err := s.Claim(ctx, now)
						if err != nil || !ok {
							b.Errorf("Claim: ok=%v err=%v", ok, err)
							return
						}
						// As the scheduler does: the outcome after the claim's commit.
						if _, err := started.Wait(); err != nil {
							b.Error(err)
							return
						}
						tr.State = protocol.StateQueued
						if _, err := s.UpdateTask(ctx, tr, protocol.StateRunning); err != nil {
							b.Error(err)
							return
						}
					}
				})
				cpu.report(b)
				reportBatch(b, s)
			})
		}
	}
}

// BenchmarkTaskLife is a trivial task's whole life in the store, as the
// scheduler drives it: CreateTask, Claim, the claim's commit, then the
// outcome (succeeded, with a small result), by 64 x GOMAXPROCS callers at
// once, so that the durable store's commits are large and its cost is the
// writes', not the fsync's wait.
//
//	go test ./store -run '^$' -bench TaskLife -benchtime 20000x
func BenchmarkTaskLife(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name+"/clients=64xGOMAXPROCS", func(b *testing.B) {
			s := bs.open(b)
			defer s.Close()
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(64)
			b.ResetTimer()
			cpu := startCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, _, err := s.CreateTask(ctx, benchTask(uuid.NewString(), int(n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
					tr, started, ok, err := s.Claim(ctx, time.Now())
					if err != nil || !ok {
						b.Errorf("Claim: ok=%v err=%v", ok, err)
						return
					}
					fin := time.Now().UTC()
					tr.State, tr.FinishedAt = protocol.StateSucceeded, &fin
					tr.Result = &protocol.ExecutionResult{Output: json.RawMessage(`{}`), KPIs: map[string]float64{}, Logs: []protocol.LogLine{}, DurationMs: 0.05}
					if _, err := started.Wait(); err != nil {
						b.Error(err)
						return
					}
					if _, err := s.UpdateTask(ctx, tr, protocol.StateRunning); err != nil {
						b.Error(err)
						return
					}
				}
			})
			cpu.report(b)
			reportBatch(b, s)
		})
	}
}
