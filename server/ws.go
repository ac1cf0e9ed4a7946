package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"github.com/chimera-fabric/fabric/protocol"
)

// Handler returns the HTTP handler of the WebSocket transport:
//
//	GET /rpc      the JSON-RPC WebSocket (token required when Config.Token is set)
//	GET /healthz  200 "ok" while the process lives
//	GET /readyz   200 "ready" when ready; 503 and the reason when not, or draining
//	GET /metrics  Config.Metrics (token required when set); 404 when nil
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rpc", s.serveWebSocket)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Metrics == nil {
			http.NotFound(w, r)
			return
		}
		if !s.authorized(r) {
			s.unauthorized(w, r)
			return
		}
		s.cfg.Metrics.ServeHTTP(w, r)
	})
	return mux
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.shuttingDown() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining: the server is shutting down\n"))
		return
	}
	if ok, why := s.cfg.Ready(); !ok {
		if why == "" {
			why = "not ready"
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(why + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// authorized checks the bearer token in constant time (over hashes, so that
// not even the length leaks).
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	given := r.URL.Query().Get("token")
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		given = strings.TrimSpace(tok)
	}
	a := sha256.Sum256([]byte(given))
	b := sha256.Sum256([]byte(s.cfg.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// unauthorized answers 401 with a JSON-RPC-shaped body carrying -32004.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	why := "missing token: send \"Authorization: Bearer <token>\" or ?token=<token>"
	if r.Header.Get("Authorization") != "" || r.URL.Query().Has("token") {
		why = "wrong token"
	}
	s.log.Info().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Str("why", why).Msg("unauthorized request")
	w.Header().Set("WWW-Authenticate", `Bearer realm="fabric"`)
	httpJSONError(w, http.StatusUnauthorized, protocol.Errorf(protocol.ErrUnauthorized, "%s", why))
}

func httpJSONError(w http.ResponseWriter, status int, e *protocol.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(encodeError(nullID, e), '\n'))
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.unauthorized(w, r)
		return
	}
	if s.shuttingDown() {
		httpJSONError(w, http.StatusServiceUnavailable, protocol.Errorf(protocol.ErrShuttingDown, "the server is shutting down"))
		return
	}
	if n := s.wsConns.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
		s.wsConns.Add(-1)
		s.log.Warn().Int("limit", s.cfg.MaxConnections).Str("remote", r.RemoteAddr).Msg("connection refused: at the connection limit")
		httpJSONError(w, http.StatusServiceUnavailable, protocol.Overloaded(RetryAfterMs*10,
			"the server has %d WebSocket connections open, its limit; retry later", s.cfg.MaxConnections).With("limit", s.cfg.MaxConnections))
		return
	}
	defer s.wsConns.Add(-1)
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.AllowOrigins})
	if err != nil {
		// Accept has answered the request (bad handshake, origin refused).
		s.log.Info().Err(err).Str("remote", r.RemoteAddr).Msg("websocket handshake refused")
		return
	}
	c.SetReadLimit(s.cfg.MaxMessageBytes)
	ss := s.newSession(&wsTransport{c: c}, "websocket")
	if !ss.serve() {
		c.Close(websocket.StatusGoingAway, endGoingAway.text)
	}
}

// wsTransport carries one JSON-RPC message or batch per text frame.
type wsTransport struct {
	c *websocket.Conn
	// buf is where messages are read (by one reader at a time), then copied
	// out at their size: coder/websocket's Read reads each into a buffer
	// grown from 512 bytes, twice or more the size of a small request.
	buf []byte
}

// keepReadBuf is the largest read buffer kept between messages; a larger
// message (a module upload) is handed over as read, not copied.
const keepReadBuf = 64 << 10

// read and write use a context that is never cancelled: coder/websocket
// closes the connection without a close frame when it is. The session ends
// them with close.
func (t *wsTransport) read() ([]byte, error) {
	typ, r, err := t.c.Reader(context.Background())
	if err == nil {
		err = t.readAll(r)
	}
	if err != nil {
		if websocket.CloseStatus(err) != -1 {
			return nil, errPeerClosed
		}
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errBinaryFrame
	}
	if cap(t.buf) > keepReadBuf {
		data := t.buf
		t.buf = nil
		return data, nil
	}
	return bytes.Clone(t.buf), nil
}

// readAll reads r to its end into t.buf.
func (t *wsTransport) readAll(r io.Reader) error {
	if t.buf == nil {
		t.buf = make([]byte, 0, 1024)
	}
	b := t.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			t.buf = b
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func (t *wsTransport) write(msg []byte) error {
	return t.c.Write(context.Background(), websocket.MessageText, msg)
}

// close closes with r's code. An error means the peer is gone or did not
// answer the close frame in time; the connection is closed either way.
func (t *wsTransport) close(r endReason) bool {
	t.c.Close(r.code, r.text)
	return true
}
