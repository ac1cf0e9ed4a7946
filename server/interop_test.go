package server

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"strings"
	"testing"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/chimera-fabric/fabric/internal/fixture"
	"github.com/chimera-fabric/fabric/protocol"
)

// pipeRWC joins the client's ends of the two stdio pipes.
type pipeRWC struct {
	io.Reader
	io.Writer
	closers []io.Closer
}

func (p pipeRWC) Close() error {
	for _, c := range p.closers {
		c.Close()
	}
	return nil
}

// TestInteropSourcegraphClient drives the server with a third-party JSON-RPC
// 2.0 implementation, sourcegraph/jsonrpc2, over both stdio framings: its
// VSCodeObjectCodec is the LSP's Content-Length framing, its plain stream
// newline-delimited JSON. This is where the library serves Fabric: as an
// independent client (the server side does not use it; see doc.go).
func TestInteropSourcegraphClient(t *testing.T) {
	wasm := readAgent(t, "echo")
	for _, headers := range []bool{false, true} {
		name := "lines"
		if headers {
			name = "headers"
		}
		t.Run(name, func(t *testing.T) {
			srv, _ := newRealServer(t, fixture.Config{})
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			served := make(chan error, 1)
			go func() {
				err := srv.ServeStdio(context.Background(), inR, outW)
				outW.Close()
				served <- err
			}()
			rwc := pipeRWC{Reader: outR, Writer: inW, closers: []io.Closer{inW, outR}}
			var stream jsonrpc2.ObjectStream
			if headers {
				stream = jsonrpc2.NewBufferedStream(rwc, jsonrpc2.VSCodeObjectCodec{})
			} else {
				stream = jsonrpc2.NewPlainObjectStream(rwc)
			}
			events := make(chan protocol.TaskEvent, 64)
			handler := jsonrpc2.HandlerWithError(func(_ context.Context, _ *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
				if req.Notif && req.Method == protocol.NotifyTaskEvent && req.Params != nil {
					var ev protocol.TaskEvent
					if err := json.Unmarshal(*req.Params, &ev); err == nil {
						events <- ev
					}
				}
				return nil, nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
			defer cancel()
			conn := jsonrpc2.NewConn(ctx, stream, handler, jsonrpc2.SetLogger(log.New(io.Discard, "", 0)))

			var health protocol.Health
			if err := conn.Call(ctx, protocol.MethodSystemHealth, nil, &health); err != nil || health.Status != protocol.HealthOK {
				t.Fatalf("system.health: %+v, %v", health, err)
			}
			var agent protocol.Agent
			if err := conn.Call(ctx, protocol.MethodAgentRegister, protocol.RegisterParams{Name: "echo", Wasm: wasm}, &agent); err != nil || agent.ABI != protocol.ABIFabricV1 {
				t.Fatalf("agent.register: %+v, %v", agent, err)
			}
			var sub protocol.SubmitResult
			if err := conn.Call(ctx, protocol.MethodTaskSubmit, map[string]any{"agent": "echo", "input": map[string]int{"n": 1}, "subscribe": true}, &sub); err != nil || sub.SubscriptionID == "" {
				t.Fatalf("task.submit: %+v, %v", sub, err)
			}
			for {
				select {
				case ev := <-events:
					if ev.SubscriptionID != sub.SubscriptionID || ev.TaskID != sub.TaskID {
						t.Fatalf("event of another subscription: %+v", ev)
					}
					if !ev.State.Terminal() {
						continue
					}
					if ev.State != protocol.StateSucceeded || string(ev.Result.Output) != `{"n":1}` {
						t.Fatalf("final event: %+v", ev)
					}
				case <-ctx.Done():
					t.Fatal("no terminal event")
				}
				break
			}
			// The library's own errors come back as *jsonrpc2.Error with our codes.
			err := conn.Call(ctx, protocol.MethodTaskGet, map[string]string{"task_id": "nope"}, nil)
			if e, ok := err.(*jsonrpc2.Error); !ok || e.Code != protocol.ErrNotFound.Code || !strings.Contains(e.Message, "nope") {
				t.Fatalf("task.get of nothing: %v", err)
			}
			// String ids, as the library sends them.
			if err := conn.Call(ctx, protocol.MethodAgentList, nil, new(protocol.AgentList), jsonrpc2.PickID(jsonrpc2.ID{Str: "s-1", IsString: true})); err != nil {
				t.Fatalf("agent.list with a string id: %v", err)
			}
			conn.Close()
			<-conn.DisconnectNotify()
			if err := <-served; err != nil {
				t.Fatalf("ServeStdio: %v", err)
			}
		})
	}
}
