package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// peer is a real WebSocket JSON-RPC 2.0 server for the client's tests. It
// knows a handful of methods that exercise the client, not Fabric's:
//
//	echo {..}          → the params
//	fail {code, msg}   → a JSON-RPC error with data {"reason": msg}
//	notify {n, method} → n notifications {"i": k}, then the result n
//	hold {}            → answered only when release is called, last held first
//	close {}           → the server closes the connection (going away)
//	garbage {}         → the server sends a message that is not JSON
//
// A batch is answered with one array, its responses in reverse order.
type peer struct {
	srv   *httptest.Server
	token string // when set, the handshake needs "Authorization: Bearer token"

	mu      sync.Mutex
	held    []heldCall
	holding chan struct{} // receives once per held call
	headers http.Header   // the last handshake's headers
}

type heldCall struct {
	conn *websocket.Conn
	id   json.RawMessage
}

type peerReq struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

func newPeer(tb testing.TB, token string) *peer {
	tb.Helper()
	p := startPeer(token)
	tb.Cleanup(p.srv.Close)
	return p
}

// startPeer starts a peer; the caller closes p.srv.
func startPeer(token string) *peer {
	p := &peer{token: token, holding: make(chan struct{}, 1000)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	return p
}

func (p *peer) url() string { return "ws" + strings.TrimPrefix(p.srv.URL, "http") + "/rpc" }

func (p *peer) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.headers = r.Header.Clone()
	p.mu.Unlock()
	if p.token != "" && r.Header.Get("Authorization") != "Bearer "+p.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32004,"message":"unauthorized: missing or wrong token"}}`))
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if data[0] == '[' {
			var reqs []peerReq
			json.Unmarshal(data, &reqs)
			var out []json.RawMessage
			for i := len(reqs) - 1; i >= 0; i-- {
				if resp := p.answer(ctx, c, reqs[i]); resp != nil {
					out = append(out, resp)
				}
			}
			if len(out) > 0 {
				b, _ := json.Marshal(out)
				c.Write(ctx, websocket.MessageText, b)
			}
			continue
		}
		var req peerReq
		json.Unmarshal(data, &req)
		if resp := p.answer(ctx, c, req); resp != nil {
			c.Write(ctx, websocket.MessageText, resp)
		}
	}
}

// answer handles one request and returns its response, or nil when there is
// none to send now.
func (p *peer) answer(ctx context.Context, c *websocket.Conn, req peerReq) json.RawMessage {
	switch req.Method {
	case "echo":
		return result(req.ID, req.Params)
	case "fail":
		var e struct {
			Code int64  `json:"code"`
			Msg  string `json:"msg"`
		}
		json.Unmarshal(req.Params, &e)
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID,
			"error": map[string]any{"code": e.Code, "message": e.Msg, "data": map[string]any{"reason": e.Msg}}})
		return b
	case "notify":
		var n struct {
			N      int    `json:"n"`
			Method string `json:"method"`
		}
		json.Unmarshal(req.Params, &n)
		for i := 0; i < n.N; i++ {
			b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": n.Method, "params": map[string]int{"i": i}})
			c.Write(ctx, websocket.MessageText, b)
		}
		return result(req.ID, json.RawMessage(jsonInt(n.N)))
	case "hold":
		p.mu.Lock()
		p.held = append(p.held, heldCall{c, req.ID})
		p.mu.Unlock()
		p.holding <- struct{}{}
		return nil
	case "close":
		c.Close(websocket.StatusGoingAway, "peer going away")
		return nil
	case "garbage":
		c.Write(ctx, websocket.MessageText, []byte("{not json"))
		return nil
	}
	if req.ID == nil {
		return nil
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID,
		"error": map[string]any{"code": -32601, "message": "method not found: " + req.Method}})
	return b
}

// release answers every held call, the last held first, with its own id as
// the result.
func (p *peer) release(ctx context.Context) {
	p.mu.Lock()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for i := len(held) - 1; i >= 0; i-- {
		held[i].conn.Write(ctx, websocket.MessageText, result(held[i].id, held[i].id))
	}
}

// waitHeld waits until n calls are held.
func (p *peer) waitHeld(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-p.holding:
		case <-ctx.Done():
			t.Fatalf("waiting for %d held calls: %v", n, ctx.Err())
		}
	}
}

func result(id, res json.RawMessage) json.RawMessage {
	if res == nil {
		res = json.RawMessage("null")
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": res})
	return b
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
