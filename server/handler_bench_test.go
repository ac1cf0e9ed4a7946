package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/server"
	"github.com/chimera-fabric/fabric/store"
)

// The whole handler, in one process: the server's session over an
// in-memory pipe (ServeStdio, newline-delimited JSON) or a loopback
// WebSocket, the scheduler, a store and the wazero engine, running the
// trivial agent of the benchmarks (bench/agents/echo.wat). The client keeps
// a fixed number of requests (or tasks) outstanding and sends the next as
// each answer comes: ns/op is the whole stack's cost of one operation, and
// cpu-ns/op the process's CPU time for it (client included; on a shared
// machine wall time measures the neighbours too).
//
//	go test ./server -run '^$' -bench Handler -benchtime 3s -cpuprofile cpu.out

// stack is a scheduler and a server over a store and an engine.
type stack struct {
	srv *server.Server
}

func newStack(b *testing.B, storeKind string) *stack {
	b.Helper()
	ctx := context.Background()
	var st store.Store
	switch storeKind {
	case "memory":
		st = store.NewMemory()
	case "sqlite":
		s, err := store.OpenSQLite(ctx, b.TempDir(), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st = s
	default:
		b.Fatalf("store %q: want memory or sqlite", storeKind)
	}
	eng, err := executor.NewWazero(executor.WazeroOptions{})
	if err != nil {
		b.Fatal(err)
	}
	sc, err := sched.New(sched.Config{Store: st, Engine: eng, Logger: zerolog.Nop(),
		// Finished tasks are pruned as fabricd would over a long run, so
		// that b.N does not decide the heap the GC scans.
		Retention: sched.Retention{MaxAge: time.Second, Keep: 1000, Interval: time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	if err := sc.Start(ctx); err != nil {
		b.Fatal(err)
	}
	wasm, err := os.ReadFile("../bench/agents/echo.wasm")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sc.RegisterAgent(ctx, &protocol.RegisterParams{Name: "echo", Wasm: wasm}); err != nil {
		b.Fatal(err)
	}
	// As fabricd: task.get and task.submit on the reader over the memory store.
	srv := server.New(server.Config{Sched: sc, Logger: zerolog.Nop(), StoreNeverWaits: storeKind == "memory"})
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		sc.Drain()
		sc.Stop(sctx)
		eng.Close(sctx)
		st.Close()
	})
	return &stack{srv: srv}
}

// pipe is a client's end of ServeStdio over two io.Pipes.
type pipe struct {
	w    *io.PipeWriter
	r    *bufio.Reader
	done chan error
}

func (s *stack) pipe(b *testing.B) *pipe {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &pipe{w: inW, r: bufio.NewReaderSize(outR, 64<<10), done: make(chan error, 1)}
	go func() {
		err := s.srv.ServeStdio(context.Background(), inR, outW)
		outW.Close()
		p.done <- err
	}()
	b.Cleanup(func() {
		inW.Close()
		go io.Copy(io.Discard, outR) // let the session flush and end
		<-p.done
	})
	return p
}

func (p *pipe) send(b *testing.B, msg string) {
	if _, err := io.WriteString(p.w, msg+"\n"); err != nil {
		b.Fatal(err)
	}
}

// answer is the part of a response the driver reads.
type answer struct {
	ID     string `json:"id"`
	Result struct {
		TaskID string         `json:"task_id"`
		State  protocol.State `json:"state"`
	} `json:"result"`
	Error *protocol.Error `json:"error"`
}

func (p *pipe) recv(b *testing.B) answer {
	line, err := p.r.ReadBytes('\n')
	if err != nil {
		b.Fatal(err)
	}
	var a answer
	if err := json.Unmarshal(line, &a); err != nil {
		b.Fatalf("%v: %s", err, line)
	}
	if a.Error != nil {
		b.Fatalf("request %s: %d %s", a.ID, a.Error.Code, a.Error.Message)
	}
	return a
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

var inflights = []int{1, 16}

// BenchmarkHandlerHealth is system.health over the pipe: the handler's
// floor (parse, dispatch, encode, the session's queue and writer).
func BenchmarkHandlerHealth(b *testing.B) {
	for _, k := range inflights {
		b.Run(fmt.Sprintf("inflight=%d", k), func(b *testing.B) {
			p := newStack(b, "memory").pipe(b)
			msg := func(i int) string {
				return `{"jsonrpc":"2.0","id":"` + strconv.Itoa(i) + `","method":"system.health"}`
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			sent := 0
			for ; sent < min(k, b.N); sent++ {
				p.send(b, msg(sent))
			}
			for done := 0; done < b.N; done++ {
				p.recv(b)
				if sent < b.N {
					p.send(b, msg(sent))
					sent++
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkHandlerSubmitWait is a trivial task's whole life over the pipe:
// task.submit, then task.wait once the submit is answered.
func BenchmarkHandlerSubmitWait(b *testing.B) {
	for _, storeKind := range []string{"memory", "sqlite"} {
		for _, k := range inflights {
			b.Run(fmt.Sprintf("%s/inflight=%d", storeKind, k), func(b *testing.B) {
				p := newStack(b, storeKind).pipe(b)
				submit := func(i int) string {
					return `{"jsonrpc":"2.0","id":"s` + strconv.Itoa(i) + `","method":"task.submit","params":{"agent":"echo","input":{"n":1}}}`
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cpuTime()
				sent := 0
				for ; sent < min(k, b.N); sent++ {
					p.send(b, submit(sent))
				}
				for done := 0; done < b.N; {
					a := p.recv(b)
					if strings.HasPrefix(a.ID, "s") {
						p.send(b, `{"jsonrpc":"2.0","id":"w`+a.ID[1:]+`","method":"task.wait","params":{"task_id":"`+a.Result.TaskID+`"}}`)
						continue
					}
					if a.Result.State != protocol.StateSucceeded {
						b.Fatalf("task %s ended %s", a.Result.TaskID, a.Result.State)
					}
					done++
					if sent < b.N {
						p.send(b, submit(sent))
						sent++
					}
				}
				reportCPU(b, cpu)
			})
		}
	}
}

// BenchmarkHandlerWS is the same over a loopback WebSocket with the
// project's client: what the transport adds to the pipe.
func BenchmarkHandlerWS(b *testing.B) {
	for _, method := range []string{"health", "submit-wait"} {
		for _, k := range inflights {
			b.Run(fmt.Sprintf("%s/inflight=%d", method, k), func(b *testing.B) {
				s := newStack(b, "memory")
				hs := httptest.NewServer(s.srv.Handler())
				defer hs.Close()
				c, err := client.Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http")+"/rpc", client.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				ctx := context.Background()
				params := json.RawMessage(`{"agent":"echo","input":{"n":1}}`)
				op := func() error {
					if method == "health" {
						return c.Call(ctx, protocol.MethodSystemHealth, nil, nil)
					}
					var res protocol.SubmitResult
					if err := c.Call(ctx, protocol.MethodTaskSubmit, params, &res); err != nil {
						return err
					}
					var t struct {
						State protocol.State `json:"state"`
					}
					if err := c.Call(ctx, protocol.MethodTaskWait, protocol.WaitParams{TaskID: res.TaskID}, &t); err != nil {
						return err
					}
					if t.State != protocol.StateSucceeded {
						return fmt.Errorf("task %s ended %s", res.TaskID, t.State)
					}
					return nil
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cpuTime()
				var wg sync.WaitGroup
				var next sync.Mutex
				left := b.N
				for range k {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							next.Lock()
							if left == 0 {
								next.Unlock()
								return
							}
							left--
							next.Unlock()
							if err := op(); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				reportCPU(b, cpu)
			})
		}
	}
}
