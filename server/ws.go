package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

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
	hj := &corkHijacker{ResponseWriter: w}
	c, err := websocket.Accept(hj, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.AllowOrigins})
	if err != nil {
		// Accept has answered the request (bad handshake, origin refused).
		s.log.Info().Err(err).Str("remote", r.RemoteAddr).Msg("websocket handshake refused")
		return
	}
	c.SetReadLimit(s.cfg.MaxMessageBytes)
	ss := s.newSession(&wsTransport{c: c, cc: hj.conn}, "websocket")
	if !ss.serve() {
		c.Close(websocket.StatusGoingAway, endGoingAway.text)
	}
}

// wsTransport carries one JSON-RPC message or batch per text frame.
type wsTransport struct {
	c  *websocket.Conn
	cc *corkConn // the connection under c; nil when Accept did not hijack through corkHijacker
	// consumed counts the bytes of the messages read so far, frame headers
	// included, as a client writes them (one masked frame per message):
	// with cc.readN it tells whether the next message is already buffered.
	consumed int64
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
	t.consumed += frameBytes(len(t.buf))
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
	if t.cc != nil {
		// The close frame goes out at once, after what is held.
		t.cc.closing.Store(true)
	}
	t.c.Close(r.code, r.text)
	return true
}

// frameBytes is the size on the wire of a message of n bytes sent as one
// masked frame with the shortest length encoding (what clients send).
func frameBytes(n int) int64 {
	h := 2 + 4
	switch {
	case n > 65535:
		h += 8
	case n > 125:
		h += 2
	}
	return int64(h + n)
}

// The transport's writes can be held back (corked) while the reader answers
// requests that it has already read, and written together in one system
// call once it has answered the last of them: under load a connection's
// requests come several per read, and each answer was a write(2) of its
// own (a quarter of fabricd's CPU at 4 connections x 8 in flight).
// session.readerWrite corks; session.readerFlush (and any other write, and
// the writer goroutine) writes what is held.

// cork holds the writes made until uncorked; the caller holds the outbox's
// write lock (wmu).
func (t *wsTransport) cork(on bool) {
	if t.cc != nil {
		t.cc.mu.Lock()
		t.cc.corked = on
		t.cc.mu.Unlock()
	}
}

// held is how many bytes are held back.
func (t *wsTransport) held() int {
	if t.cc == nil {
		return 0
	}
	return int(t.cc.heldN.Load())
}

// flush writes what is held back; the caller holds wmu.
func (t *wsTransport) flush() error {
	if t.cc == nil {
		return nil
	}
	return t.cc.flush()
}

// moreBuffered says that the bytes read from the socket hold more than the
// messages read so far: the next message (or part of it) is in
// coder/websocket's buffer. Only an estimate: a fragmented message or a
// control frame from the peer makes it true when it is not, and then
// corkConn.Read asks for the held bytes to be written before it blocks.
func (t *wsTransport) moreBuffered() bool {
	return t.cc != nil && t.cc.readN.Load() > t.consumed
}

// setFlusher names the function corkConn.Read calls when it is about to
// read more while bytes are held back: it must have them written without
// waiting (the session wakes its writer goroutine).
func (t *wsTransport) setFlusher(f func()) {
	if t.cc != nil {
		t.cc.flushReq = f
	}
}

// corkHijacker hands coder/websocket a corkConn around the hijacked
// connection.
type corkHijacker struct {
	http.ResponseWriter
	conn *corkConn
}

func (h *corkHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the http.ResponseWriter cannot hijack its connection")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &corkConn{Conn: c}
	// What the HTTP server had read past the handshake is read first.
	h.conn.readN.Store(int64(brw.Reader.Buffered()))
	// coder/websocket writes through brw.Writer, which writes to c: give it
	// one that writes to the corkConn.
	return h.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(h.conn, brw.Writer.Size())), nil
}

// corkConn is the connection under a WebSocket: its writes are held while
// corked, and the held bytes go out with the next write or flush.
type corkConn struct {
	net.Conn
	readN    atomic.Int64 // bytes read from the connection
	heldN    atomic.Int64 // len(held), read without mu
	closing  atomic.Bool  // the WebSocket is closing: nothing is held any more
	flushReq func()       // see wsTransport.setFlusher

	// mu guards corked and held; it is held during a write of held bytes,
	// so Read never takes it (a write may block on the peer).
	mu     sync.Mutex
	corked bool
	held   []byte
}

func (c *corkConn) Read(p []byte) (int, error) {
	if c.heldN.Load() > 0 && c.flushReq != nil {
		c.flushReq()
	}
	n, err := c.Conn.Read(p)
	c.readN.Add(int64(n))
	return n, err
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked && !c.closing.Load() {
		c.held = append(c.held, p...)
		c.heldN.Store(int64(len(c.held)))
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	bufs := net.Buffers{c.held, p}
	_, err := bufs.WriteTo(c.Conn) // one writev
	c.release()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *corkConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.release()
	return err
}

// release empties held (mu held), letting a large buffer go.
func (c *corkConn) release() {
	if cap(c.held) > keepReadBuf {
		c.held = nil
	} else {
		c.held = c.held[:0]
	}
	c.heldN.Store(0)
}
