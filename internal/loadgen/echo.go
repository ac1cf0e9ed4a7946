package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// EchoHandler is the floor under fabricd's JSON-RPC layer: a WebSocket
// endpoint (any path but /metrics) that writes every message it reads back,
// as it came, in order; and GET /metrics with the process's CPU time, so that
// a run in echo mode reports the server's CPU per round trip as it does
// against fabricd. It runs on the same coder/websocket library as fabricd,
// with the same read limit, and does nothing else.
func EchoHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(64 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	return mux
}

// EchoServer is EchoHandler on a listener of its own.
type EchoServer struct {
	URL string // ws://ADDR/echo
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

// StartEchoServer serves EchoHandler on addr ("127.0.0.1:0" picks a port).
func StartEchoServer(addr string) (*EchoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("echo server: %w", err)
	}
	s := &EchoServer{URL: "ws://" + ln.Addr().String() + "/echo", ln: ln,
		srv: &http.Server{Handler: EchoHandler(), ReadHeaderTimeout: 10 * time.Second}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the server and its connections.
func (s *EchoServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Shutdown does not close hijacked (WebSocket) connections: their
	// handlers end when the clients close, which a finished run has done.
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	return err
}

// echoPayload is the request echo mode sends: the bytes of a system.health
// request as the client encodes it, or a batch of them.
func echoPayload(batch int) []byte {
	const one = `{"jsonrpc":"2.0","id":1,"method":"system.health"}`
	if batch <= 1 {
		return []byte(one)
	}
	return []byte("[" + strings.TrimSuffix(strings.Repeat(one+",", batch), ",") + "]")
}

// echoConn is a bare WebSocket connection to an echo server. The server
// answers in order, so a queue of waiting workers matches the answers.
type echoConn struct {
	conn    *websocket.Conn
	payload []byte
	ctx     context.Context
	cancel  context.CancelFunc

	wmu   sync.Mutex // serialises writes and the queue's order
	mu    sync.Mutex
	queue []chan error
	gone  error
	done  chan struct{}
}

func dialEcho(ctx context.Context, url, token string, batch int) (*echoConn, error) {
	opts := &websocket.DialOptions{}
	if token != "" {
		opts.HTTPHeader = http.Header{"Authorization": []string{"Bearer " + token}}
	}
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	conn.SetReadLimit(64 << 20)
	ec := &echoConn{conn: conn, payload: echoPayload(batch), done: make(chan struct{})}
	ec.ctx, ec.cancel = context.WithCancel(context.Background())
	go ec.read()
	return ec, nil
}

func (ec *echoConn) read() {
	defer close(ec.done)
	for {
		_, msg, err := ec.conn.Read(ec.ctx)
		if err == nil && !bytes.Equal(msg, ec.payload) {
			err = fmt.Errorf("the echo server answered %d bytes that are not the %d sent", len(msg), len(ec.payload))
		}
		ec.mu.Lock()
		if err != nil {
			ec.gone = fmt.Errorf("echo connection: %w", err)
			for _, ch := range ec.queue {
				ch <- ec.gone
			}
			ec.queue = nil
			ec.mu.Unlock()
			return
		}
		var ch chan error
		if len(ec.queue) > 0 {
			ch, ec.queue = ec.queue[0], ec.queue[1:]
		}
		ec.mu.Unlock()
		if ch == nil {
			ec.conn.Close(websocket.StatusProtocolError, "unexpected message")
			continue // the next Read fails and ends the loop
		}
		ch <- nil
	}
}

func (ec *echoConn) close() {
	ec.conn.Close(websocket.StatusNormalClosure, "")
	ec.cancel()
	<-ec.done
}

// roundTrip sends the payload and waits for it to come back.
func (ec *echoConn) roundTrip(ctx context.Context) error {
	ch := make(chan error, 1)
	ec.wmu.Lock()
	ec.mu.Lock()
	if ec.gone != nil {
		ec.mu.Unlock()
		ec.wmu.Unlock()
		return ec.gone
	}
	ec.queue = append(ec.queue, ch)
	ec.mu.Unlock()
	err := ec.conn.Write(ctx, websocket.MessageText, ec.payload)
	ec.wmu.Unlock()
	if err != nil {
		// The stream is broken: end it, which fails every waiting call.
		ec.conn.Close(websocket.StatusInternalError, "write failed")
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return errors.Join(ctx.Err(), ec.conn.Close(websocket.StatusGoingAway, "run cancelled"))
	}
}

func (r *run) echoWorker(ctx context.Context, ec *echoConn) {
	for {
		n := r.claim(r.cfg.Batch)
		if n == 0 {
			return
		}
		r.inFlight.Add(int64(n))
		start := time.Now()
		err := ec.roundTrip(ctx)
		r.inFlight.Add(-int64(n))
		if err != nil {
			r.fail(err)
			continue
		}
		d := time.Since(start)
		for range n {
			r.hist.record(d)
		}
		r.ops.Add(int64(n))
	}
}
