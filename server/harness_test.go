package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recvTimeout bounds every wait for a message; it is a deadline, not a
// timed assertion.
const recvTimeout = 20 * time.Second

// logBuffer collects a server's logs for tests that look for a line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// client is a test's end of a connection: it sends raw messages and
// receives raw messages.
type client interface {
	Send(msg []byte) error
	Recv(timeout time.Duration) ([]byte, error)
}

// ---- stdio ----

// stdioClient talks to ServeStdio over two io.Pipes, so that the client can
// close its output (EOF for the server) and still read.
type stdioClient struct {
	framing framing
	w       *io.PipeWriter // the server's stdin
	r       *io.PipeReader // the server's stdout
	msgs    chan []byte
	errc    chan error
	done    chan struct{} // the pump ended
	serve   chan error    // ServeStdio's result
}

// startStdio runs srv.ServeStdio on pipes; cleanup closes them and waits.
func startStdio(t *testing.T, srv *Server, f framing) *stdioClient {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &stdioClient{framing: f, w: inW, r: outR, msgs: make(chan []byte, 1024), errc: make(chan error, 1),
		done: make(chan struct{}), serve: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		err := srv.ServeStdio(ctx, inR, outW)
		outW.Close()
		c.serve <- err
	}()
	go c.pump()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		outR.Close()
		<-c.done
		select {
		case <-c.serve:
		case <-time.After(recvTimeout):
			t.Errorf("ServeStdio did not return")
		}
	})
	return c
}

func (c *stdioClient) pump() {
	defer close(c.done)
	fr := newFrameReader(c.r, 1<<30)
	if c.framing == framingHeaders {
		fr.mode.Store(int32(framingHeaders))
	} else {
		fr.mode.Store(int32(framingLines))
	}
	for {
		msg, err := fr.next()
		if err != nil {
			c.errc <- err
			return
		}
		c.msgs <- msg
	}
}

func (c *stdioClient) Send(msg []byte) error {
	if c.framing == framingHeaders {
		_, err := fmt.Fprintf(c.w, "Content-Length: %d\r\n\r\n%s", len(msg), msg)
		return err
	}
	_, err := c.w.Write(append(append([]byte{}, msg...), '\n'))
	return err
}

func (c *stdioClient) Recv(timeout time.Duration) ([]byte, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	default:
	}
	select {
	case m := <-c.msgs:
		return m, nil
	case err := <-c.errc:
		c.errc <- err
		select { // the pump sends every message before its error
		case m := <-c.msgs:
			return m, nil
		default:
		}
		return nil, err
	case <-time.After(timeout):
		return nil, errors.New("timed out waiting for a message")
	}
}

// ---- net.Pipe (in memory) ----

// pipeClient talks newline-delimited JSON to ServeStdio over net.Pipe.
type pipeClient struct {
	conn  net.Conn
	r     *bufio.Reader
	serve chan error
}

func startPipe(t *testing.T, srv *Server) *pipeClient {
	t.Helper()
	a, b := net.Pipe()
	c := &pipeClient{conn: a, r: bufio.NewReader(a), serve: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.serve <- srv.ServeStdio(ctx, b, b) }()
	t.Cleanup(func() {
		cancel()
		a.Close()
		select {
		case <-c.serve:
		case <-time.After(recvTimeout):
			t.Errorf("ServeStdio did not return")
		}
	})
	return c
}

func (c *pipeClient) Send(msg []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(recvTimeout))
	_, err := c.conn.Write(append(append([]byte{}, msg...), '\n'))
	return err
}

func (c *pipeClient) Recv(timeout time.Duration) ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(line, []byte("\n")), nil
}

// ---- WebSocket ----

type wsClient struct {
	c    *websocket.Conn
	msgs chan []byte
	errc chan error
	done chan struct{}
}

// startHTTP serves srv.Handler on 127.0.0.1:0; cleanup shuts the server
// down and waits.
func startHTTP(t *testing.T, srv *Server) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return hs
}

func wsURL(hs *httptest.Server) string { return "ws" + strings.TrimPrefix(hs.URL, "http") + "/rpc" }

func dialWS(t *testing.T, url string, header http.Header) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	c.SetReadLimit(1 << 30)
	w := &wsClient{c: c, msgs: make(chan []byte, 1024), errc: make(chan error, 1), done: make(chan struct{})}
	go w.pump()
	t.Cleanup(func() {
		c.Close(websocket.StatusNormalClosure, "")
		<-w.done
	})
	return w
}

func (w *wsClient) pump() {
	defer close(w.done)
	for {
		_, msg, err := w.c.Read(context.Background())
		if err != nil {
			w.errc <- err
			return
		}
		w.msgs <- msg
	}
}

func (w *wsClient) Send(msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, msg)
}

func (w *wsClient) Recv(timeout time.Duration) ([]byte, error) {
	select {
	case m := <-w.msgs:
		return m, nil
	default:
	}
	select {
	case m := <-w.msgs:
		return m, nil
	case err := <-w.errc:
		w.errc <- err
		select { // the pump sends every message before its error
		case m := <-w.msgs:
			return m, nil
		default:
		}
		return nil, err
	case <-time.After(timeout):
		return nil, errors.New("timed out waiting for a message")
	}
}

// ---- helpers ----

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func mustSend(t *testing.T, c client, msg string) {
	t.Helper()
	if err := c.Send([]byte(msg)); err != nil {
		t.Fatalf("send %s: %v", msg, err)
	}
}

func mustRecv(t *testing.T, c client) string {
	t.Helper()
	m, err := c.Recv(recvTimeout)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return string(m)
}

var barrierSeq struct {
	sync.Mutex
	n int
}

// expectNothing checks that no message arrives before the answer to a
// barrier request sent now: the server reads a connection's messages in
// order, so anything the earlier messages caused would come first.
func expectNothing(t *testing.T, c client, barrierMethod string) {
	t.Helper()
	barrierSeq.Lock()
	barrierSeq.n++
	id := "barrier-" + strconv.Itoa(barrierSeq.n)
	barrierSeq.Unlock()
	mustSend(t, c, `{"jsonrpc":"2.0","id":"`+id+`","method":"`+barrierMethod+`"}`)
	got := mustRecv(t, c)
	var r struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal([]byte(got), &r) != nil || string(r.ID) != `"`+id+`"` {
		t.Fatalf("expected no message before the barrier's answer; got %s", got)
	}
}

// sameJSON compares two JSON texts semantically (key order aside).
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(recvTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
