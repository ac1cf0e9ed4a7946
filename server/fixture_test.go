package server

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/fixture"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/store"
)

const fixtures = "../testdata/fixtures/*.json"

// newRealServer builds a Server over a real scheduler (memory store, wazero
// engine) configured as a fixture asks, running task.get and task.submit on
// the reader as fabricd does over this store; cleanup stops everything in
// order.
func newRealServer(t *testing.T, fc fixture.Config) (*Server, *sched.Scheduler) {
	return newRealServerInline(t, fc, true)
}

// newRealServerInline is newRealServer with Config.StoreNeverWaits set to
// inline.
func newRealServerInline(t *testing.T, fc fixture.Config, inline bool) (*Server, *sched.Scheduler) {
	t.Helper()
	lim := sched.DefaultLimits
	if fc.MaxModuleBytes != 0 {
		lim.MaxModuleBytes = fc.MaxModuleBytes
	}
	if fc.MaxInputBytes != 0 {
		lim.MaxInputBytes = fc.MaxInputBytes
	}
	eng, err := executor.NewWazero(executor.WazeroOptions{MaxModuleBytes: lim.MaxModuleBytes, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	workers := fc.Workers
	if workers == 0 {
		workers = 2
	}
	sc, err := sched.New(sched.Config{
		Store: st, Engine: eng, Workers: workers, MaxQueued: fc.MaxQueued,
		Limits: lim, Logger: testLogger(t), Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fc.Draining {
		sc.Drain()
	}
	srv := New(Config{
		Sched: sc, Logger: testLogger(t), Token: fc.Token,
		MaxInFlight: fc.MaxInFlight, OutboundQueue: fc.OutboundQueue, Version: "test",
		StoreNeverWaits: inline,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server Shutdown: %v", err)
		}
		// Tasks still running (a spinning agent) are stopped at once and
		// requeued: Stop's context is already done.
		stopCtx, stop := context.WithCancel(ctx)
		stop()
		if err := sc.Stop(stopCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("sched Stop: %v", err)
		}
		if err := eng.Close(ctx); err != nil {
			t.Errorf("engine Close: %v", err)
		}
		st.Close()
	})
	return srv, sc
}

// connect opens a fixture's connection over one transport.
func connect(t *testing.T, srv *Server, f *fixture.Fixture, transport string) fixture.Conn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	switch transport {
	case fixture.Memory:
		a, b := net.Pipe()
		errc := make(chan error, 1)
		go func() { errc <- srv.ServeStdio(ctx, b, b) }()
		c := fixture.NewStreamConn(a, a, false)
		t.Cleanup(func() {
			c.Close()
			cancel()
			<-errc
		})
		return c
	case fixture.Stdio:
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			err := srv.ServeStdio(ctx, inR, outW)
			outW.Close()
			errc <- err
		}()
		c := fixture.NewStreamConn(outR, inW, true)
		t.Cleanup(func() {
			inW.Close() // EOF: the session ends once it has answered
			if err := <-errc; err != nil {
				t.Errorf("ServeStdio: %v", err)
			}
			c.Close()
			cancel()
		})
		return c
	case fixture.WebSocket:
		hs := startHTTP(t, srv)
		conn, closeConn, err := f.Dial(ctx, wsURL(hs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			closeConn()
			cancel()
		})
		return conn
	}
	t.Fatalf("unknown transport %q", transport)
	return nil
}

// TestFixtures replays every fixture conversation over every transport it
// allows: in memory, with stdio Content-Length framing, and on a real
// WebSocket; and once more in memory with task.get and task.submit on
// goroutines of their own, as over a store that writes to disk.
func TestFixtures(t *testing.T) {
	all, err := fixture.Glob(fixtures)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		for _, tr := range []string{fixture.Memory, fixture.Stdio, fixture.WebSocket} {
			if !f.On(tr) {
				continue
			}
			t.Run(f.Name+"/"+tr, func(t *testing.T) {
				srv, _ := newRealServer(t, f.Config)
				f.Run(t, connect(t, srv, f, tr))
			})
		}
		if f.On(fixture.Memory) {
			t.Run(f.Name+"/"+fixture.Memory+"/store-waits", func(t *testing.T) {
				srv, _ := newRealServerInline(t, f.Config, false)
				f.Run(t, connect(t, srv, f, fixture.Memory))
			})
		}
	}
}
