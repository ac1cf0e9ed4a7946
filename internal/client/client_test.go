package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/chimera-fabric/fabric/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCtx bounds a test: long enough for a loaded machine, short enough that
// a hang fails instead of stalling CI.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, p *peer, opts Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), p.url(), opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCall(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	type payload struct {
		A int      `json:"a"`
		B []string `json:"b"`
	}
	var got payload
	if err := c.Call(ctx, "echo", payload{A: 7, B: []string{"x"}}, &got); err != nil {
		t.Fatalf("Call(echo): %v", err)
	}
	if want := (payload{A: 7, B: []string{"x"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("echo: got %+v, want %+v", got, want)
	}

	var raw json.RawMessage
	if err := c.Call(ctx, "echo", json.RawMessage(`{"z": [1, 2]}`), &raw); err != nil {
		t.Fatalf("Call(echo raw): %v", err)
	}
	if string(raw) != `{"z":[1,2]}` {
		t.Errorf("raw result: got %s, want {\"z\":[1,2]}", raw)
	}

	// No params: the peer echoes the absent params as null.
	raw = nil
	if err := c.Call(ctx, "echo", nil, &raw); err != nil {
		t.Fatalf("Call(echo nil): %v", err)
	}
	if string(raw) != "null" {
		t.Errorf("result of no params: got %s, want null", raw)
	}

	// A result that does not fit the type names the method and the type.
	var n int
	err := c.Call(ctx, "echo", map[string]int{"a": 1}, &n)
	if err == nil || !strings.Contains(err.Error(), "echo: decoding the result into *int") {
		t.Errorf("decoding into the wrong type: got %v", err)
	}
}

func TestCallError(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	err := c.Call(ctx, "fail", map[string]any{"code": -32001, "msg": "task t1 not found"}, nil)
	pe, ok := err.(*protocol.Error)
	if !ok {
		t.Fatalf("got %T %v, want *protocol.Error", err, err)
	}
	if pe.Code != -32001 || pe.Message != "task t1 not found" || pe.Data["reason"] != "task t1 not found" {
		t.Errorf("got %+v", pe)
	}
	if !errors.Is(err, protocol.ErrNotFound) {
		t.Errorf("errors.Is(err, ErrNotFound) = false for %v", err)
	}

	err = c.Call(ctx, "no.such", nil, nil)
	if !errors.Is(err, protocol.ErrMethodNotFound) {
		t.Errorf("unknown method: got %v, want -32601", err)
	}
}

// TestConcurrentCalls multiplexes many calls on one connection and has the
// peer answer them in the reverse order.
func TestConcurrentCalls(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	const n = 50
	var wg sync.WaitGroup
	results := make([]uint64, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Go(func() { errs[i] = c.Call(ctx, "hold", nil, &results[i]) })
	}
	p.waitHeld(t, ctx, n)
	p.release(ctx)
	wg.Wait()

	seen := map[uint64]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		// Each call's result is its own id: no two calls got the same answer.
		if results[i] == 0 || seen[results[i]] {
			t.Fatalf("call %d got result %d (seen before: %v)", i, results[i], seen[results[i]])
		}
		seen[results[i]] = true
	}
}

func TestNotifications(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	var n int
	if err := c.Call(ctx, "notify", map[string]any{"n": 5, "method": "task.event"}, &n); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		select {
		case note := <-c.Notifications():
			want := fmt.Sprintf(`{"i":%d}`, i)
			if note.Method != "task.event" || string(note.Params) != want {
				t.Errorf("notification %d: got %s %s, want task.event %s", i, note.Method, note.Params, want)
			}
		case <-ctx.Done():
			t.Fatalf("notification %d never came", i)
		}
	}
	if c.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", c.Dropped())
	}
}

// TestNotificationOverflow: a full buffer drops (and counts) what does not
// fit, and responses still arrive.
func TestNotificationOverflow(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{NotificationBuffer: 3})
	ctx := testCtx(t)

	// The notifications are sent before the response on one connection, so
	// all ten have been dispatched when Call returns.
	if err := c.Call(ctx, "notify", map[string]any{"n": 10, "method": "kpi.report"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := c.Dropped(); got != 7 {
		t.Errorf("Dropped() = %d, want 7", got)
	}
	for i := 0; i < 3; i++ {
		note := <-c.Notifications()
		if want := fmt.Sprintf(`{"i":%d}`, i); string(note.Params) != want {
			t.Errorf("kept notification %d: got %s, want %s (the first ones are kept)", i, note.Params, want)
		}
	}
}

func TestBatch(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	var a, b map[string]int
	calls := []BatchCall{
		{Method: "echo", Params: map[string]int{"a": 1}, Result: &a},
		{Method: "fail", Params: map[string]any{"code": -32006, "msg": "name taken"}},
		{Method: "echo", Notify: true, Params: map[string]int{"ignored": 1}},
		{Method: "echo", Params: map[string]int{"b": 2}, Result: &b},
	}
	if err := c.Batch(ctx, calls); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if calls[0].Error != nil || a["a"] != 1 {
		t.Errorf("call 0: err %v, result %v", calls[0].Error, a)
	}
	if !errors.Is(calls[1].Error, protocol.ErrConflict) {
		t.Errorf("call 1: got %v, want -32006", calls[1].Error)
	}
	if calls[2].Error != nil {
		t.Errorf("notification: got error %v", calls[2].Error)
	}
	if calls[3].Error != nil || b["b"] != 2 {
		t.Errorf("call 3: err %v, result %v", calls[3].Error, b)
	}

	// Notifications only: nothing comes back, Batch returns once sent.
	if err := c.Batch(ctx, []BatchCall{{Method: "echo", Notify: true}}); err != nil {
		t.Errorf("notifications-only batch: %v", err)
	}
	if err := c.Batch(ctx, nil); err == nil || !strings.Contains(err.Error(), "empty batch") {
		t.Errorf("empty batch: got %v", err)
	}
	// The connection still works after all of that.
	if err := c.Call(ctx, "echo", nil, nil); err != nil {
		t.Errorf("Call after batches: %v", err)
	}
}

// TestCallContext: a call given up on leaves the connection usable, and its
// late response goes nowhere.
func TestCallContext(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Call(cctx, "hold", nil, nil) }()
	p.waitHeld(t, ctx, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "hold") {
		t.Errorf("cancelled call: got %v, want hold: context canceled", err)
	}
	p.release(ctx) // the late answer
	var got map[string]int
	if err := c.Call(ctx, "echo", map[string]int{"after": 1}, &got); err != nil || got["after"] != 1 {
		t.Errorf("call after a cancelled one: %v %v", got, err)
	}
	c.mu.Lock()
	left := len(c.pending)
	c.mu.Unlock()
	if left != 0 {
		t.Errorf("%d calls still pending", left)
	}
}

func TestServerCloses(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	errc := make(chan error, 1)
	go func() { errc <- c.Call(ctx, "hold", nil, nil) }()
	p.waitHeld(t, ctx, 1)
	if err := c.Call(ctx, "close", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("the call that closed it: got %v, want ErrClosed", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "peer going away") {
		t.Errorf("waiting call: got %v, want ErrClosed with the reason", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("Done never closed")
	}
	if _, ok := <-c.Notifications(); ok {
		t.Error("Notifications is still open after the connection ended")
	}
	if err := c.Call(ctx, "echo", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after the end: got %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after the server closed: %v", err)
	}
}

func TestGarbageFromServer(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	err := c.Call(testCtx(t), "garbage", nil, nil)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "undecodable message") {
		t.Errorf("got %v, want ErrClosed naming the undecodable message", err)
	}
}

func TestClose(t *testing.T) {
	p := newPeer(t, "")
	c := dial(t, p, Options{})
	ctx := testCtx(t)

	errc := make(chan error, 1)
	go func() { errc <- c.Call(ctx, "hold", nil, nil) }()
	p.waitHeld(t, ctx, 1)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("call waiting at Close: got %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Call(ctx, "echo", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close: got %v, want ErrClosed", err)
	}
	if err := c.Notify(ctx, "echo", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Notify after Close: got %v, want ErrClosed", err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", c.Err())
	}
}

func TestDialToken(t *testing.T) {
	p := newPeer(t, "s3cret")
	ctx := testCtx(t)

	_, err := Dial(ctx, p.url(), Options{Token: "wrong"})
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != -32004 {
		t.Fatalf("wrong token: got %v, want a -32004 *protocol.Error", err)
	}
	if !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), p.url()) {
		t.Errorf("wrong token: %q should name the URL and HTTP 401", err)
	}

	c, err := Dial(ctx, p.url(), Options{Token: "s3cret", Header: map[string][]string{"X-Trace": {"abc"}}})
	if err != nil {
		t.Fatalf("right token: %v", err)
	}
	defer c.Close()
	if err := c.Call(ctx, "echo", nil, nil); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	h := p.headers
	p.mu.Unlock()
	if h.Get("Authorization") != "Bearer s3cret" || h.Get("X-Trace") != "abc" {
		t.Errorf("handshake headers: %v", h)
	}
}

func TestDialRefused(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	url := "ws://" + addr + "/rpc"
	_, err = Dial(testCtx(t), url, Options{})
	if err == nil || !strings.Contains(err.Error(), "connecting to "+url) {
		t.Errorf("got %v, want an error naming %s", err, url)
	}
}

func TestWire(t *testing.T) {
	for _, tc := range []struct {
		id     uint64
		method string
		params any
		want   string
	}{
		{1, "system.health", nil, `{"jsonrpc":"2.0","id":1,"method":"system.health"}`},
		{2, "task.get", protocol.TaskIDParams{TaskID: "t"}, `{"jsonrpc":"2.0","id":2,"method":"task.get","params":{"task_id":"t"}}`},
		{0, "unsubscribe", map[string]string{"subscription_id": "s"}, `{"jsonrpc":"2.0","method":"unsubscribe","params":{"subscription_id":"s"}}`},
	} {
		b, err := encodeRequest(tc.id, tc.method, tc.params)
		if err != nil || string(b) != tc.want {
			t.Errorf("encodeRequest(%d, %s): got %s %v, want %s", tc.id, tc.method, b, err, tc.want)
		}
	}
	if _, err := encodeRequest(3, "x", func() {}); err == nil || !strings.Contains(err.Error(), "x: encoding params") {
		t.Errorf("unencodable params: got %v", err)
	}

	for raw, want := range map[string]uint64{"1": 1, "18446744073709551615": 1<<64 - 1} {
		if got, ok := parseID(json.RawMessage(raw)); !ok || got != want {
			t.Errorf("parseID(%s) = %d %v", raw, got, ok)
		}
	}
	for _, raw := range []string{"", "null", `"1"`, "0", "-1", "1.5", "18446744073709551616"} {
		if _, ok := parseID(json.RawMessage(raw)); ok {
			t.Errorf("parseID(%s) accepted", raw)
		}
	}

	msgs, err := decodeMessage([]byte(` [{"jsonrpc":"2.0","id":1,"result":{"a":1}},{"jsonrpc":"2.0","method":"task.event","params":[]}]`))
	if err != nil || len(msgs) != 2 || string(msgs[0].Result) != `{"a":1}` || msgs[1].Method != "task.event" {
		t.Errorf("decodeMessage(batch): %+v %v", msgs, err)
	}
	for _, bad := range []string{"", "  ", "{", "[1]", `{"id":{}`} {
		if _, err := decodeMessage([]byte(bad)); err == nil {
			t.Errorf("decodeMessage(%q) accepted", bad)
		}
	}
}

// A write that takes longer than WriteTimeout (the server reads nothing, so
// a large message cannot all be sent) ends the connection and says why.
func TestWriteTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		<-release // never reads
	}))
	defer srv.Close()
	defer close(release)
	// A small send buffer, so that a message of 1 MiB is far more than the
	// socket buffers hold.
	small := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetWriteBuffer(4096)
		}
		return conn, err
	}}}
	c, err := Dial(testCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), Options{WriteTimeout: 50 * time.Millisecond, HTTPClient: small})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := strings.Repeat("x", 1<<20)
	err = c.Call(testCtx(t), "echo", map[string]string{"big": big}, nil)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "took longer than 50ms") {
		t.Fatalf("Call: got %v, want ErrClosed saying the write took longer than 50ms", err)
	}
	select {
	case <-c.Done():
	case <-testCtx(t).Done():
		t.Fatal("the connection did not end")
	}
	if err := c.Call(testCtx(t), "echo", nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after: got %v, want ErrClosed", err)
	}
}

// encodeRequest writes what json.Marshal of the request gives.
func TestEncodeRequestSameAsJSON(t *testing.T) {
	type odd struct {
		A string  `json:"a"`
		B *string `json:"b,omitempty"`
	}
	for _, method := range []string{"task.submit", "we<ird", "é", `q"uote`} {
		for _, params := range []any{nil, json.RawMessage(`{"agent":"echo","input":{}}`), json.RawMessage(` { "a" : 1 } `),
			json.RawMessage(`"<b>"`), json.RawMessage(nil), json.RawMessage(`{"bad":`), protocol.WaitParams{TaskID: "t-1"},
			(*protocol.WaitParams)(nil), odd{A: "x&y"}, map[string]int{"b": 2, "a": 1}, []int{1, 2}, make(chan int)} {
			for _, id := range []uint64{0, 1, 1 << 63} {
				want, wantErr := json.Marshal(request{JSONRPC: "2.0", ID: id, Method: method, Params: params})
				got, err := encodeRequest(id, method, params)
				if (err != nil) != (wantErr != nil) || err == nil && string(got) != string(want) {
					t.Fatalf("%q %#v id %d:\nencodeRequest %s %v\njson.Marshal  %s %v", method, params, id, got, err, want, wantErr)
				}
			}
		}
	}
}
