//go:build unix

package sched_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// BenchmarkSubmitWait is a trivial task's whole life in the scheduler,
// task.submit then task.wait, with clients x GOMAXPROCS callers at once, on
// each store: the durable store's cost against the in-memory one, without
// the JSON-RPC and WebSocket layers around them.
//
//	go test ./sched -run '^$' -bench SubmitWait -benchtime 3s
func BenchmarkSubmitWait(b *testing.B) {
	for _, sc := range schedStores {
		b.Run(sc.name+"/clients=16xGOMAXPROCS", func(b *testing.B) {
			st := sc.open(b, b.TempDir())
			defer st.Close()
			f := startSched(b, st, nil)
			a, err := os.ReadFile(filepath.Join("..", "testdata", "agents", "echo.wasm"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.RegisterAgent(context.Background(), &protocol.RegisterParams{Name: "echo", Wasm: a}); err != nil {
				b.Fatal(err)
			}
			in := json.RawMessage(`{}`)
			b.SetParallelism(16)
			b.ReportAllocs()
			var ru0 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					p := protocol.SubmitParams{Agent: "echo", Input: in}
					r, _, err := f.Submit(ctx, &p, nil)
					if err != nil {
						b.Error(err)
						return
					}
					task, err := f.Wait(ctx, r.TaskID, time.Minute)
					if err != nil || task.State != protocol.StateSucceeded {
						b.Errorf("task %s: %s %v", r.TaskID, task.State, err)
						return
					}
				}
			})
			b.StopTimer()
			var ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			if sq, ok := st.(*store.SQLite); ok {
				ws := sq.WriteStats()
				b.ReportMetric(float64(ws.Writes)/float64(max(ws.Commits, 1)), "writes/commit")
				b.ReportMetric(float64(ws.Paired)/float64(max(ws.Writes, 1))*3, "paired/task")
				b.ReportMetric(float64(ws.Once)/float64(b.N), "once/task")
			}
		})
	}
}
