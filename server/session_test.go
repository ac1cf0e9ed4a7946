package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/protocol"
)

// The JSON-RPC layer is tested with a method table of its own, so that it
// needs no scheduler.

type echoParams struct {
	Value json.RawMessage `json:"value"`
}

type blockParams struct {
	Gate string `json:"gate"`
}

type floodParams struct {
	N int `json:"n"`
}

// gates lets a test release "block" requests by name.
type gates struct {
	ch map[string]chan struct{}
}

func (g *gates) gate(name string) chan struct{} {
	c, ok := g.ch[name]
	if !ok {
		panic("no gate " + name)
	}
	return c
}

func layerMethods(g *gates) map[string]method {
	return map[string]method{
		"echo": bind(func(_ context.Context, _ *session, p *echoParams) (json.RawMessage, error) {
			if p.Value == nil {
				return json.RawMessage("null"), nil
			}
			return p.Value, nil
		}),
		"fail": bind(func(_ context.Context, _ *session, _ *protocol.Empty) (protocol.Empty, error) {
			return protocol.Empty{}, fmt.Errorf("looking up the thing: %w", protocol.Errorf(protocol.ErrNotFound, "no thing %q", "x"))
		}),
		"crash": bind(func(_ context.Context, _ *session, _ *protocol.Empty) (protocol.Empty, error) {
			panic("boom")
		}),
		"plain": bind(func(_ context.Context, _ *session, _ *protocol.Empty) (protocol.Empty, error) {
			return protocol.Empty{}, errors.New("disk on fire")
		}),
		// block waits for its gate, or for the session to start closing
		// (then it answers "drained", as task.wait does).
		"block": bind(func(ctx context.Context, ss *session, p *blockParams) (string, error) {
			select {
			case <-g.gate(p.Gate):
				return "released", nil
			case <-ss.drainCtx.Done():
				return "drained", nil
			}
		}),
		// quick echoes on the reader, like system.health; quickcrash
		// panics there.
		"quick": bind(func(_ context.Context, _ *session, p *echoParams) (json.RawMessage, error) {
			if p.Value == nil {
				return json.RawMessage("null"), nil
			}
			return p.Value, nil
		}).quick(),
		"quickcrash": bind(func(_ context.Context, _ *session, _ *protocol.Empty) (protocol.Empty, error) {
			panic("boom on the reader")
		}).quick(),
		// sub makes a subscription with nothing behind it, for unsubscribe
		// (the real method) to end.
		"sub": bind(func(_ context.Context, ss *session, p *protocol.UnsubscribeParams) (protocol.Empty, error) {
			ss.addSubscription(&subscription{id: p.SubscriptionID, stop: make(chan struct{})})
			return protocol.Empty{}, nil
		}),
		protocol.MethodUnsubscribe: methodTable()[protocol.MethodUnsubscribe],
		// flood sends n notifications without waiting, until the session
		// ends.
		"flood": bind(func(ctx context.Context, ss *session, p *floodParams) (int, error) {
			for i := 0; i < p.N && ctx.Err() == nil; i++ {
				ss.notify("test.note", map[string]int{"i": i})
			}
			return p.N, nil
		}),
	}
}

func newLayerServer(t *testing.T, cfg Config, g *gates) *Server {
	cfg.Logger = testLogger(t)
	if g == nil {
		g = &gates{}
	}
	return newServer(cfg, layerMethods(g))
}

// TestWire runs single messages through a whole session (ServeStdio over
// net.Pipe) and compares the exact reply.
func TestWire(t *testing.T) {
	srv := newLayerServer(t, Config{}, nil)
	c := startPipe(t, srv)
	for _, tc := range []struct {
		name, send, want string
	}{
		{"number id", `{"jsonrpc":"2.0","method":"echo","params":{"value":19},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"result":19}`},
		{"string id", `{"jsonrpc":"2.0","method":"echo","params":{"value":"x"},"id":"abc"}`,
			`{"jsonrpc":"2.0","id":"abc","result":"x"}`},
		{"null id is a request", `{"jsonrpc":"2.0","method":"echo","params":{"value":1},"id":null}`,
			`{"jsonrpc":"2.0","id":null,"result":1}`},
		{"negative id", `{"jsonrpc":"2.0","method":"echo","id":-7}`,
			`{"jsonrpc":"2.0","id":-7,"result":null}`},
		{"fractional id", `{"jsonrpc":"2.0","method":"echo","id":1.50}`,
			`{"jsonrpc":"2.0","id":1.50,"result":null}`},
		{"large id", `{"jsonrpc":"2.0","method":"echo","id":123456789012345678901234567890}`,
			`{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":null}`},
		{"exponent id", `{"jsonrpc":"2.0","method":"echo","id":1e3}`,
			`{"jsonrpc":"2.0","id":1e3,"result":null}`},
		{"escaped string id", `{"jsonrpc":"2.0","method":"echo","id":"a\u00e9\"b"}`,
			`{"jsonrpc":"2.0","id":"a\u00e9\"b","result":null}`},
		{"id before the other members", `{"id": 2 , "params": {"value": [1, 2]}, "method": "echo", "jsonrpc": "2.0"}`,
			`{"jsonrpc":"2.0","id":2,"result":[1,2]}`},
		{"absent params", `{"jsonrpc":"2.0","method":"echo","id":3}`,
			`{"jsonrpc":"2.0","id":3,"result":null}`},
		{"parse error", `{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: invalid JSON at byte 40: invalid character 'p' after object key:value pair","data":{"reason":"invalid JSON at byte 40: invalid character 'p' after object key:value pair"}}}`},
		{"trailing data", `{"jsonrpc":"2.0","method":"echo","id":1} {}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: invalid JSON at byte 42: invalid character '{' after top-level value","data":{"reason":"invalid JSON at byte 42: invalid character '{' after top-level value"}}}`},
		{"method not a string", `{"jsonrpc": "2.0", "method": 1, "params": "bar"}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: method: want a string; got a number","data":{"reason":"method: want a string; got a number"}}}`},
		{"missing method", `{"jsonrpc":"2.0","id":4}`,
			`{"jsonrpc":"2.0","id":4,"error":{"code":-32600,"message":"invalid request: method: required; want a string","data":{"reason":"method: required; want a string"}}}`},
		{"missing jsonrpc", `{"method":"echo","id":5}`,
			`{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"invalid request: jsonrpc: required; want \"2.0\"","data":{"reason":"jsonrpc: required; want \"2.0\""}}}`},
		{"wrong jsonrpc", `{"jsonrpc":"1.0","method":"echo","id":6}`,
			`{"jsonrpc":"2.0","id":6,"error":{"code":-32600,"message":"invalid request: jsonrpc: want \"2.0\"; got \"1.0\"","data":{"reason":"jsonrpc: want \"2.0\"; got \"1.0\""}}}`},
		{"jsonrpc as a number", `{"jsonrpc":2.0,"method":"echo","id":7}`,
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"invalid request: jsonrpc: want \"2.0\"; got 2.0","data":{"reason":"jsonrpc: want \"2.0\"; got 2.0"}}}`},
		{"object id", `{"jsonrpc":"2.0","method":"echo","id":{"a":1}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: id: want a string, a number or null; got an object","data":{"reason":"id: want a string, a number or null; got an object"}}}`},
		{"boolean id", `{"jsonrpc":"2.0","method":"echo","id":true}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: id: want a string, a number or null; got a boolean","data":{"reason":"id: want a string, a number or null; got a boolean"}}}`},
		{"params a string", `{"jsonrpc":"2.0","method":"echo","params":"bar","id":8}`,
			`{"jsonrpc":"2.0","id":8,"error":{"code":-32600,"message":"invalid request: params: want an object (or an array); got a string","data":{"reason":"params: want an object (or an array); got a string"}}}`},
		{"params null", `{"jsonrpc":"2.0","method":"echo","params":null,"id":9}`,
			`{"jsonrpc":"2.0","id":9,"error":{"code":-32600,"message":"invalid request: params: want an object (or an array); got null","data":{"reason":"params: want an object (or an array); got null"}}}`},
		{"unknown member", `{"jsonrpc":"2.0","method":"echo","param":{},"id":10}`,
			`{"jsonrpc":"2.0","id":10,"error":{"code":-32600,"message":"invalid request: unknown member \"param\"; a request has only jsonrpc, method, params and id","data":{"reason":"unknown member \"param\"; a request has only jsonrpc, method, params and id"}}}`},
		{"not an object", `"hello"`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a request object; got a string","data":{"reason":"want a request object; got a string"}}}`},
		{"empty batch", `[]`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: empty batch; want at least one request in the array","data":{"reason":"empty batch; want at least one request in the array"}}}`},
		{"invalid batch of one", `[1]`,
			`[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a request object; got a number","data":{"reason":"want a request object; got a number"}}}]`},
		{"batch with invalid JSON", `[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: invalid JSON at byte 95: invalid character ']' after object key","data":{"reason":"invalid JSON at byte 95: invalid character ']' after object key"}}}`},
		{"method not found", `{"jsonrpc":"2.0","method":"foobar","id":"1"}`,
			`{"jsonrpc":"2.0","id":"1","error":{"code":-32601,"message":"method not found: no method \"foobar\"; rpc.discover lists them","data":{"reason":"no method \"foobar\"; rpc.discover lists them"}}}`},
		{"positional params", `{"jsonrpc":"2.0","method":"echo","params":[42,23],"id":11}`,
			`{"jsonrpc":"2.0","id":11,"error":{"code":-32602,"message":"invalid params: params: want an object of named parameters; got an array","data":{"reason":"params: want an object of named parameters; got an array"}}}`},
		{"unknown param", `{"jsonrpc":"2.0","method":"echo","params":{"valu":1},"id":12}`,
			`{"jsonrpc":"2.0","id":12,"error":{"code":-32602,"message":"invalid params: valu: unknown parameter","data":{"reason":"valu: unknown parameter"}}}`},
		{"wrapped application error", `{"jsonrpc":"2.0","method":"fail","id":13}`,
			`{"jsonrpc":"2.0","id":13,"error":{"code":-32001,"message":"looking up the thing: not found: no thing \"x\"","data":{"reason":"no thing \"x\""}}}`},
		{"plain error is internal", `{"jsonrpc":"2.0","method":"plain","id":14}`,
			`{"jsonrpc":"2.0","id":14,"error":{"code":-32603,"message":"internal error: disk on fire","data":{"reason":"disk on fire"}}}`},
		{"panic is internal", `{"jsonrpc":"2.0","method":"crash","id":15}`,
			`{"jsonrpc":"2.0","id":15,"error":{"code":-32603,"message":"internal error: the server failed while handling crash; the log has the cause","data":{"reason":"the server failed while handling crash; the log has the cause"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustSend(t, c, tc.send)
			if got := mustRecv(t, c); got != tc.want {
				t.Errorf("send %s\n got %s\nwant %s", tc.send, got, tc.want)
			}
		})
	}
}

// TestBatch checks batches, whose responses may come in any order.
func TestBatch(t *testing.T) {
	srv := newLayerServer(t, Config{}, nil)
	c := startPipe(t, srv)
	for _, tc := range []struct {
		name, send string
		want       []string // the elements of the reply, in any order
	}{
		{"spec example, adapted to named params",
			`[{"jsonrpc":"2.0","method":"echo","params":{"value":7},"id":"1"},` +
				`{"jsonrpc":"2.0","method":"echo","params":{"value":[1,2]}},` +
				`{"jsonrpc":"2.0","method":"echo","params":[42,23],"id":"2"},` +
				`{"foo":"boo"},` +
				`{"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},` +
				`{"jsonrpc":"2.0","method":"echo","params":{"value":"x"},"id":"9"}]`,
			[]string{
				`{"jsonrpc":"2.0","id":"1","result":7}`,
				`{"jsonrpc":"2.0","id":"2","error":{"code":-32602,"message":"invalid params: params: want an object of named parameters; got an array","data":{"reason":"params: want an object of named parameters; got an array"}}}`,
				`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: jsonrpc: required; want \"2.0\"","data":{"reason":"jsonrpc: required; want \"2.0\""}}}`,
				`{"jsonrpc":"2.0","id":"5","error":{"code":-32601,"message":"method not found: no method \"foo.get\"; rpc.discover lists them","data":{"reason":"no method \"foo.get\"; rpc.discover lists them"}}}`,
				`{"jsonrpc":"2.0","id":"9","result":"x"}`,
			}},
		{"three invalid", `[1,2,3]`, []string{
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a request object; got a number","data":{"reason":"want a request object; got a number"}}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a request object; got a number","data":{"reason":"want a request object; got a number"}}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: want a request object; got a number","data":{"reason":"want a request object; got a number"}}}`,
		}},
		{"one request and notifications", `[{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","method":"echo","params":{"value":true},"id":0},{"jsonrpc":"2.0","method":"nope"}]`,
			[]string{`{"jsonrpc":"2.0","id":0,"result":true}`}},
		{"same id twice", `[{"jsonrpc":"2.0","method":"echo","params":{"value":1},"id":1},{"jsonrpc":"2.0","method":"echo","params":{"value":2},"id":1}]`,
			[]string{`{"jsonrpc":"2.0","id":1,"result":1}`, `{"jsonrpc":"2.0","id":1,"result":2}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustSend(t, c, tc.send)
			got := mustRecv(t, c)
			var elems []json.RawMessage
			if err := json.Unmarshal([]byte(got), &elems); err != nil {
				t.Fatalf("reply is not an array: %s", got)
			}
			var g []string
			for _, e := range elems {
				g = append(g, string(e))
			}
			want := append([]string{}, tc.want...)
			sort.Strings(g)
			sort.Strings(want)
			if strings.Join(g, "\n") != strings.Join(want, "\n") {
				t.Errorf("send %s\n got %s\nwant %s", tc.send, strings.Join(g, "\n     "), strings.Join(want, "\n     "))
			}
		})
	}
}

// TestNotificationsAreNeverAnswered sends notifications that succeed, fail
// and name no method, alone and in batches.
func TestNotificationsAreNeverAnswered(t *testing.T) {
	srv := newLayerServer(t, Config{}, nil)
	c := startPipe(t, srv)
	for _, msg := range []string{
		`{"jsonrpc":"2.0","method":"echo","params":{"value":1}}`,
		`{"jsonrpc":"2.0","method":"no.such.method"}`,
		`{"jsonrpc":"2.0","method":"echo","params":[1,2]}`,
		`{"jsonrpc":"2.0","method":"echo","params":{"bogus":1}}`,
		`{"jsonrpc":"2.0","method":"fail"}`,
		`{"jsonrpc":"2.0","method":"crash"}`,
		`[{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","method":"fail"},{"jsonrpc":"2.0","method":"nope"}]`,
	} {
		mustSend(t, c, msg)
	}
	expectNothing(t, c, "echo")
}

func TestInFlightCap(t *testing.T) {
	g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}}
	srv := newLayerServer(t, Config{MaxInFlight: 2}, g)
	c := startPipe(t, srv)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"block","params":{"gate":"a"},"id":"a"}`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"block","params":{"gate":"b"},"id":"b"}`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"echo","id":"c"}`)
	want := `{"jsonrpc":"2.0","id":"c","error":{"code":-32002,"message":"overloaded: this connection has 2 requests in flight, its limit; retry later","data":{"limit":2,"reason":"this connection has 2 requests in flight, its limit; retry later","retry_after_ms":100}}}`
	if got := mustRecv(t, c); got != want {
		t.Fatalf("over the cap:\n got %s\nwant %s", got, want)
	}
	// A batch counts each of its requests.
	mustSend(t, c, `[{"jsonrpc":"2.0","method":"echo","id":"d"}]`)
	if got := mustRecv(t, c); got != "["+strings.Replace(want, `"id":"c"`, `"id":"d"`, 1)+"]" {
		t.Fatalf("batch over the cap: got %s", got)
	}
	close(g.ch["a"])
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"a","result":"released"}` {
		t.Fatalf("got %s", got)
	}
	// One slot is free again.
	mustSend(t, c, `{"jsonrpc":"2.0","method":"echo","params":{"value":1},"id":"e"}`)
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"e","result":1}` {
		t.Fatalf("got %s", got)
	}
	close(g.ch["b"])
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"b","result":"released"}` {
		t.Fatalf("got %s", got)
	}
}

// TestSlowConsumer: a client that does not read fills its queue; the session
// is closed, and the method that flooded it never blocked.
func TestSlowConsumer(t *testing.T) {
	srv := newLayerServer(t, Config{OutboundQueue: 4}, nil)
	c := startPipe(t, srv)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"flood","params":{"n":100},"id":1}`)
	// Do not read: net.Pipe has no buffer, so the writer blocks at once.
	select {
	case err := <-c.serve:
		if !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("ServeStdio: got %v, want ErrSlowConsumer", err)
		}
		c.serve <- err
	case <-time.After(recvTimeout):
		t.Fatal("the session was not closed")
	}
}

// TestStdioEOFAnswersInFlight: the end of input ends the session only after
// the requests in flight are answered.
func TestStdioEOFAnswersInFlight(t *testing.T) {
	g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{})}}
	srv := newLayerServer(t, Config{}, g)
	c := startStdio(t, srv, framingLines)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"block","params":{"gate":"a"},"id":1}`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"echo","params":{"value":2},"id":2}`)
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":2,"result":2}` {
		t.Fatalf("got %s", got)
	}
	c.w.Close() // EOF
	close(g.ch["a"])
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":1,"result":"released"}` {
		t.Fatalf("got %s", got)
	}
	if _, err := c.Recv(recvTimeout); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: got %v, want EOF", err)
	}
	if err := <-c.serve; err != nil {
		t.Fatalf("ServeStdio: %v", err)
	}
	c.serve <- nil
}

// TestShutdownDrains: requests in flight are answered (a long wait returns
// early), new ones get -32007, then the session ends.
func TestShutdownDrains(t *testing.T) {
	g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{})}}
	srv := newLayerServer(t, Config{}, g)
	c := startStdio(t, srv, framingHeaders)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"block","params":{"gate":"a"},"id":1}`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"echo","id":0}`)
	mustRecv(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":1,"result":"drained"}` {
		t.Fatalf("got %s", got)
	}
	if err := <-c.serve; err != nil {
		t.Fatalf("ServeStdio: %v", err)
	}
	c.serve <- nil
	// A new session is refused.
	if err := srv.ServeStdio(context.Background(), strings.NewReader(""), io.Discard); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeStdio after Shutdown: got %v, want ErrServerClosed", err)
	}
}

// TestStdioCancel: cancelling ServeStdio's context ends the session at once.
func TestStdioCancel(t *testing.T) {
	g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{})}}
	srv := newLayerServer(t, Config{}, g)
	inR, inW := io.Pipe()
	defer inW.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	outR, outW := io.Pipe()
	go func() { errc <- srv.ServeStdio(ctx, inR, outW) }()
	go io.Copy(io.Discard, outR)
	defer outR.Close()
	if _, err := inW.Write([]byte(`{"jsonrpc":"2.0","method":"block","params":{"gate":"a"},"id":1}` + "\n")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeStdio: got %v, want context.Canceled", err)
	}
}

// Methods that run on the reader answer in the order they were sent, are
// refused over the in-flight cap like any other, survive a panic, and take
// their place in a batch.
func TestMethodsOnTheReader(t *testing.T) {
	g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}}
	srv := newLayerServer(t, Config{MaxInFlight: 2}, g)
	c := startPipe(t, srv)
	var burst strings.Builder
	for i := range 50 {
		fmt.Fprintf(&burst, `{"jsonrpc":"2.0","method":"quick","params":{"value":%d},"id":%d}`+"\n", i, i)
	}
	mustSend(t, c, strings.TrimSuffix(burst.String(), "\n"))
	for i := range 50 {
		if got, want := mustRecv(t, c), fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":%d}`, i, i); got != want {
			t.Fatalf("answer %d: got %s, want %s (in the order sent)", i, got, want)
		}
	}
	mustSend(t, c, `{"jsonrpc":"2.0","method":"quickcrash","id":"x"}`)
	if got := mustRecv(t, c); !strings.Contains(got, `"id":"x","error":{"code":-32603`) {
		t.Fatalf("a panic on the reader: got %s, want -32603", got)
	}
	mustSend(t, c, `{"jsonrpc":"2.0","method":"quick","params":{"valu":1},"id":"p"}`)
	if got := mustRecv(t, c); !strings.Contains(got, `"id":"p","error":{"code":-32602,"message":"invalid params: valu: unknown parameter"`) {
		t.Fatalf("bad params on the reader: got %s, want -32602", got)
	}
	// A batch: one element waits on a goroutine, the others run on the
	// reader; one array comes back once all are done.
	mustSend(t, c, `[{"jsonrpc":"2.0","method":"quick","params":{"value":1},"id":1},`+
		`{"jsonrpc":"2.0","method":"block","params":{"gate":"a"},"id":2},`+
		`{"jsonrpc":"2.0","method":"quick","params":{"value":3},"id":3}]`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"block","params":{"gate":"b"},"id":"b"}`)
	// Two in flight now (a and b): a call on the reader is over the cap.
	waitFor(t, "two requests in flight", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for ss := range srv.sessions {
			ss.mu.Lock()
			n := ss.inflight
			ss.mu.Unlock()
			return n == 2
		}
		return false
	})
	mustSend(t, c, `{"jsonrpc":"2.0","method":"quick","id":"over"}`)
	if got := mustRecv(t, c); !strings.Contains(got, `"id":"over","error":{"code":-32002`) {
		t.Fatalf("over the cap on the reader: got %s, want -32002", got)
	}
	close(g.ch["a"])
	got := mustRecv(t, c)
	for _, want := range []string{`{"jsonrpc":"2.0","id":1,"result":1}`, `{"jsonrpc":"2.0","id":2,"result":"released"}`, `{"jsonrpc":"2.0","id":3,"result":3}`} {
		if !strings.HasPrefix(got, "[") || !strings.Contains(got, want) {
			t.Fatalf("batch: got %s, want an array holding %s", got, want)
		}
	}
	close(g.ch["b"])
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"b","result":"released"}` {
		t.Fatalf("got %s", got)
	}
}

// unsubscribe is served over the in-flight cap, as a request and as a
// notification: it frees what it names, and a notification cannot be
// retried.
func TestUnsubscribeOverTheCap(t *testing.T) {
	g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{})}}
	srv := newLayerServer(t, Config{MaxInFlight: 1}, g)
	c := startPipe(t, srv)
	for _, id := range []string{"s1", "s2"} {
		mustSend(t, c, `{"jsonrpc":"2.0","method":"sub","params":{"subscription_id":"`+id+`"},"id":"`+id+`"}`)
		if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"`+id+`","result":{}}` {
			t.Fatalf("sub %s: got %s", id, got)
		}
	}
	mustSend(t, c, `{"jsonrpc":"2.0","method":"block","params":{"gate":"a"},"id":"a"}`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"echo","id":"over"}`)
	if got := mustRecv(t, c); !strings.Contains(got, `"id":"over","error":{"code":-32002`) {
		t.Fatalf("over the cap: got %s, want -32002", got)
	}
	mustSend(t, c, `{"jsonrpc":"2.0","method":"unsubscribe","params":{"subscription_id":"s1"}}`)
	mustSend(t, c, `{"jsonrpc":"2.0","method":"unsubscribe","params":{"subscription_id":"s2"},"id":"u2"}`)
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"u2","result":{}}` {
		t.Fatalf("unsubscribe over the cap: got %s, want {}", got)
	}
	// The notification was handled: s1 is gone.
	mustSend(t, c, `{"jsonrpc":"2.0","method":"unsubscribe","params":{"subscription_id":"s1"},"id":"u1"}`)
	if got := mustRecv(t, c); !strings.Contains(got, `"id":"u1","error":{"code":-32001`) {
		t.Fatalf("s1 after its unsubscribe notification: got %s, want -32001 (no such subscription)", got)
	}
	srv.mu.Lock()
	for ss := range srv.sessions {
		ss.mu.Lock()
		if n := len(ss.subs); n != 0 {
			t.Errorf("%d subscriptions left; want none", n)
		}
		ss.mu.Unlock()
	}
	srv.mu.Unlock()
	close(g.ch["a"])
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":"a","result":"released"}` {
		t.Fatalf("got %s", got)
	}
}
