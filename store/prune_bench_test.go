package store_test

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
	"github.com/chimera-fabric/fabric/store/storetest"
)

// What a finished task costs the in-memory store, and what a Prune to a cap
// costs. The bytes per task size --retain-max's default for :memory:
// (docs/operations.md).
//
//	go test ./store -run '^$' -bench 'FinishedTask|PruneCap' -benchtime 1x

// finishTasks creates n tasks as fabric bench submits them (input {}, a
// small JSON result) and runs each to succeeded, its FinishedAt 1ms after
// the previous one's.
func finishTasks(tb testing.TB, s store.Store, n int, t0 time.Time) {
	for i := range n {
		tr := storetest.NewTask(uuid.NewString(), "echo", protocol.Normal)
		tr.Labels, tr.Input = nil, []byte(`{}`)
		if _, _, _, err := s.CreateTask(ctx, tr); err != nil {
			tb.Fatal(err)
		}
		got, started, ok, err := s.Claim(ctx, t0)
		if err != nil || !ok {
			tb.Fatalf("Claim: %v %v", ok, err)
		}
		if _, err := started.Wait(); err != nil {
			tb.Fatal(err)
		}
		fin := t0.Add(time.Duration(i) * time.Millisecond)
		got.State, got.FinishedAt = protocol.StateSucceeded, &fin
		res := &protocol.ExecutionResult{KPIs: map[string]float64{}, Logs: []protocol.LogLine{}, DurationMs: 0.05}
		res.SetOutput([]byte(`{}`))
		got.Result = res
		if _, err := s.UpdateTask(ctx, got, protocol.StateRunning); err != nil {
			tb.Fatal(err)
		}
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func BenchmarkMemoryFinishedTaskBytes(b *testing.B) {
	const n = 100_000
	for range b.N {
		before := heapInUse()
		s := store.NewMemory()
		finishTasks(b, s, n, storetest.T0)
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "bytes/task")
		runtime.KeepAlive(s)
		s.Close()
	}
}

// BenchmarkMemoryPruneCap times one Prune of a store holding cap + cap/8
// finished tasks down to cap (what the prune loop does under load): the
// queue waits on the store's lock meanwhile.
func BenchmarkMemoryPruneCap(b *testing.B) {
	for _, cap := range []int{10_000, 100_000} {
		b.Run(fmtInt(cap), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s := store.NewMemory()
				finishTasks(b, s, cap+cap/8, storetest.T0)
				b.StartTimer()
				n, err := s.Prune(ctx, store.AnyAge, cap)
				b.StopTimer()
				if err != nil || n != cap/8 {
					b.Fatalf("Prune: %d, %v; want %d", n, err, cap/8)
				}
				s.Close()
			}
		})
	}
}

func fmtInt(n int) string { return "cap=" + strconv.Itoa(n) }
