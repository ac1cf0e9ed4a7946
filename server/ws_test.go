package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/protocol"
)

func httpGet(t *testing.T, url string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestProbes(t *testing.T) {
	ready, why := true, ""
	srv := newLayerServer(t, Config{Ready: func() (bool, string) { return ready, why }}, nil)
	hs := startHTTP(t, srv)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/healthz", 200, "ok\n"},
		{"/readyz", 200, "ready\n"},
		{"/metrics", 404, "404 page not found\n"},
		{"/nothing", 404, "404 page not found\n"},
	} {
		if st, _, body := httpGet(t, hs.URL+tc.path, nil); st != tc.status || body != tc.body {
			t.Errorf("GET %s: %d %q; want %d %q", tc.path, st, body, tc.status, tc.body)
		}
	}
	ready, why = false, "store: recovering"
	if st, _, body := httpGet(t, hs.URL+"/readyz", nil); st != 503 || body != "store: recovering\n" {
		t.Errorf("not ready: %d %q", st, body)
	}
	ready = true
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _, body := httpGet(t, hs.URL+"/readyz", nil); st != 503 || !strings.HasPrefix(body, "draining") {
		t.Errorf("draining: %d %q", st, body)
	}
	if st, _, body := httpGet(t, hs.URL+"/healthz", nil); st != 200 || body != "ok\n" {
		t.Errorf("healthz while draining: %d %q", st, body)
	}
	// No new WebSocket once shutting down.
	st, _, body := httpGet(t, hs.URL+"/rpc", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}})
	if st != 503 || !strings.Contains(body, `"code":-32007`) {
		t.Errorf("upgrade while shutting down: %d %s", st, body)
	}
}

func TestToken(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("fabric_up 1\n")) })
	srv := newLayerServer(t, Config{Token: "s3cret", Metrics: metrics}, nil)
	hs := startHTTP(t, srv)
	unauthorized := func(why string) string {
		return `{"jsonrpc":"2.0","id":null,"error":{"code":-32004,"message":"unauthorized: ` + why + `","data":{"reason":"` + why + `"}}}` + "\n"
	}
	missing := `missing token: send \"Authorization: Bearer \u003ctoken\u003e\" or ?token=\u003ctoken\u003e`
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		status int
		body   string
	}{
		{"metrics without a token", "/metrics", nil, 401, unauthorized(missing)},
		{"metrics with a wrong token", "/metrics", http.Header{"Authorization": {"Bearer nope"}}, 401, unauthorized("wrong token")},
		{"metrics with a prefix of the token", "/metrics", http.Header{"Authorization": {"Bearer s3cre"}}, 401, unauthorized("wrong token")},
		{"metrics with another scheme", "/metrics", http.Header{"Authorization": {"Basic czNjcmV0"}}, 401, unauthorized("wrong token")},
		{"metrics with the token", "/metrics", http.Header{"Authorization": {"Bearer s3cret"}}, 200, "fabric_up 1\n"},
		{"metrics with the token in the query", "/metrics?token=s3cret", nil, 200, "fabric_up 1\n"},
		{"rpc without a token", "/rpc", nil, 401, unauthorized(missing)},
		{"probes need none", "/healthz", nil, 200, "ok\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h, body := httpGet(t, hs.URL+tc.path, tc.header)
			if st != tc.status || body != tc.body {
				t.Errorf("GET %s: %d %s\nwant %d %s", tc.path, st, body, tc.status, tc.body)
			}
			if st == 401 && h.Get("WWW-Authenticate") != `Bearer realm="fabric"` {
				t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	// The WebSocket with the token, by header and by query.
	c := dialWS(t, wsURL(hs), http.Header{"Authorization": {"Bearer s3cret"}})
	mustSend(t, c, `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"value":"in"}}`)
	if got := mustRecv(t, c); got != `{"jsonrpc":"2.0","id":1,"result":"in"}` {
		t.Errorf("got %s", got)
	}
	c2 := dialWS(t, wsURL(hs)+"?token=s3cret", nil)
	mustSend(t, c2, `{"jsonrpc":"2.0","id":2,"method":"echo"}`)
	if got := mustRecv(t, c2); got != `{"jsonrpc":"2.0","id":2,"result":null}` {
		t.Errorf("got %s", got)
	}
}

func TestOrigin(t *testing.T) {
	srv := newLayerServer(t, Config{AllowOrigins: []string{"app.example.com"}}, nil)
	hs := startHTTP(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(hs), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example.net"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a foreign origin: err %v, response %v; want 403", err, resp)
	}
	c := dialWS(t, wsURL(hs), http.Header{"Origin": {"https://app.example.com"}})
	mustSend(t, c, `{"jsonrpc":"2.0","id":1,"method":"echo"}`)
	mustRecv(t, c)
}

// wsRaw dials without the test client's pump, for tests that read close
// frames or never read.
func wsRaw(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// readUntilClose reads until the connection closes and returns how.
func readUntilClose(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read ended without a close frame: %v", err)
		}
		return ce
	}
}

func TestWebSocketCloseCodes(t *testing.T) {
	srv := newLayerServer(t, Config{MaxMessageBytes: 1024}, nil)
	hs := startHTTP(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()

	t.Run("binary frame: 1003", func(t *testing.T) {
		c := wsRaw(t, wsURL(hs), nil)
		if err := c.Write(ctx, websocket.MessageBinary, []byte(`{"jsonrpc":"2.0","id":1,"method":"echo"}`)); err != nil {
			t.Fatal(err)
		}
		ce := readUntilClose(t, c)
		if ce.Code != websocket.StatusUnsupportedData || ce.Reason != endBinary.text {
			t.Fatalf("closed with %v", ce)
		}
	})
	t.Run("message over the read limit: 1009", func(t *testing.T) {
		c := wsRaw(t, wsURL(hs), nil)
		big := `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"value":"` + strings.Repeat("x", 2000) + `"}}`
		if err := c.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
			t.Fatal(err)
		}
		if ce := readUntilClose(t, c); ce.Code != websocket.StatusMessageTooBig {
			t.Fatalf("closed with %v", ce)
		}
	})
	t.Run("a message within the limit", func(t *testing.T) {
		c := wsRaw(t, wsURL(hs), nil)
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":1,"method":"echo","params":{"value":1}}`)); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.Read(ctx)
		if err != nil || string(msg) != `{"jsonrpc":"2.0","id":1,"result":1}` {
			t.Fatalf("got %s, %v", msg, err)
		}
		// A normal close from the client is answered with 1000.
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
	t.Run("shutdown: 1001", func(t *testing.T) {
		g := &gates{ch: map[string]chan struct{}{"a": make(chan struct{})}}
		srv := newLayerServer(t, Config{}, g)
		hs := startHTTP(t, srv)
		c := wsRaw(t, wsURL(hs), nil)
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":1,"method":"block","params":{"gate":"a"}}`)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the request in flight", func() bool {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			for ss := range srv.sessions {
				ss.mu.Lock()
				n := ss.inflight
				ss.mu.Unlock()
				if n == 1 {
					return true
				}
			}
			return false
		})
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(ctx) }()
		// The request in flight is answered before the close.
		_, msg, err := c.Read(ctx)
		if err != nil || string(msg) != `{"jsonrpc":"2.0","id":1,"result":"drained"}` {
			t.Fatalf("got %s, %v", msg, err)
		}
		if ce := readUntilClose(t, c); ce.Code != websocket.StatusGoingAway || ce.Reason != "server shutting down" {
			t.Fatalf("closed with %v", ce)
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

// TestWebSocketSlowConsumer: a client that stops reading is disconnected
// once its queue fills, and neither the method flooding it nor another
// connection is held up.
func TestWebSocketSlowConsumer(t *testing.T) {
	logs := &logBuffer{}
	srv := newServer(Config{OutboundQueue: 8, Logger: zerolog.New(logs)}, layerMethods(&gates{}))
	hs := startHTTP(t, srv)
	// A client with a tiny receive buffer that never reads.
	slow := wsRaw(t, wsURL(hs), &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetReadBuffer(4096)
			}
			return c, err
		},
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	if err := slow.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":1,"method":"flood","params":{"n":200000}}`)); err != nil {
		t.Fatal(err)
	}
	// Another connection is served meanwhile.
	fast := dialWS(t, wsURL(hs), nil)
	mustSend(t, fast, `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"value":"still here"}}`)
	if got := mustRecv(t, fast); got != `{"jsonrpc":"2.0","id":1,"result":"still here"}` {
		t.Fatalf("got %s", got)
	}
	waitFor(t, "the slow consumer to be closed", func() bool {
		return strings.Contains(logs.String(), "closing a slow consumer")
	})
	waitFor(t, "the slow consumer's session to end", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.sessions) == 1
	})
}

// TestDispatchTableMatchesOpenRPC: the methods served are the methods
// documented, with the same params and result types.
func TestDispatchTableMatchesOpenRPC(t *testing.T) {
	table := methodTable()
	documented := map[string]bool{}
	for _, spec := range protocol.Methods {
		documented[spec.Name] = true
		m, ok := table[spec.Name]
		if !ok {
			t.Errorf("%s is documented but not served", spec.Name)
			continue
		}
		if m.params != spec.Params {
			t.Errorf("%s: serves params %v; documents %v", spec.Name, m.params, spec.Params)
		}
		res := m.result
		if res.Kind() == reflect.Pointer {
			res = res.Elem()
		}
		if res != spec.Result {
			t.Errorf("%s: serves result %v; documents %v", spec.Name, m.result, spec.Result)
		}
	}
	for name := range table {
		if !documented[name] {
			t.Errorf("%s is served but not documented", name)
		}
	}
	// And the document rpc.discover serves is that one.
	b, err := json.Marshal(protocol.OpenRPC("x"))
	if err != nil || !strings.Contains(string(b), `"name":"task.submit"`) {
		t.Fatalf("OpenRPC: %v", err)
	}
}

func TestConnectionLimit(t *testing.T) {
	srv := newLayerServer(t, Config{MaxConnections: 1}, nil)
	hs := startHTTP(t, srv)
	first := dialWS(t, wsURL(hs), nil)
	mustSend(t, first, `{"jsonrpc":"2.0","id":1,"method":"nope"}`)
	mustRecv(t, first) // the first connection is open and served

	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(hs), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection: err %v, response %v; want 503", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"code":-32002`) || !strings.Contains(string(body), `"limit":1`) {
		t.Fatalf("refusal body %s", body)
	}
}
