// Package client is a JSON-RPC 2.0 client for Fabric over a WebSocket. One
// connection carries any number of concurrent calls (each has its own id; a
// reader goroutine hands every response to its caller), batches, and the
// server's notifications, which arrive on a bounded channel.
//
// The fabric CLI, the end-to-end tests and the load generator use it. It
// speaks coder/websocket and encoding/json directly: one encode per outgoing
// message; for an incoming one, a check that it is JSON and one scan of its
// top level (internal/jsonscan), the result decoded once into what the
// caller asked for.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/chimera-fabric/fabric/protocol"
)

// ErrClosed is returned (wrapped with the cause) by calls made after Close or
// after the connection ended, and by calls still waiting when it ends.
var ErrClosed = errors.New("client: connection closed")

// Options configure Dial. The zero value is ready to use.
type Options struct {
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Header holds extra headers for the WebSocket handshake.
	Header http.Header
	// HTTPClient performs the handshake; nil means http.DefaultClient.
	HTTPClient *http.Client
	// NotificationBuffer is how many notifications wait for a reader of
	// Notifications before further ones are dropped (and counted by
	// Dropped). Default 1024.
	NotificationBuffer int
	// BlockNotifications makes a full notification buffer stop the reading
	// of the connection until there is room, instead of dropping: the
	// server's own back-pressure then slows it down (a long after_seq
	// replay arrives whole), at the cost that responses wait behind the
	// notifications. Whoever sets it must keep reading Notifications.
	BlockNotifications bool
	// ReadLimit caps one incoming message in bytes. Default 64 MiB (a task's
	// result holds up to 16 MiB of output, base64 inflates it by a third).
	ReadLimit int64
	// WriteTimeout bounds the writing of one message once it has begun;
	// a write that takes longer leaves a half-sent frame, so the connection
	// is closed. Default 30s.
	WriteTimeout time.Duration
}

func (o *Options) defaults() {
	if o.NotificationBuffer <= 0 {
		o.NotificationBuffer = 1024
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 64 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
}

// Client is one WebSocket connection to fabricd. Its methods are safe for
// concurrent use.
type Client struct {
	conn *websocket.Conn
	opts Options

	// wtimer bounds the write in progress (Options.WriteTimeout): one timer
	// for the client instead of a context per write (coder/websocket
	// registers a context.AfterFunc for each). It is not reset for each
	// write either (a reset wakes a thread of the runtime): a write arms it
	// when it is not armed, and when it fires it checks the write in
	// progress (watchWrite).
	wtimer *time.Timer
	wmeta  sync.Mutex // guards the three below
	wbegan time.Time  // when the write in progress began
	wbusy  bool       // a write is in progress
	warmed bool       // wtimer will fire

	nextID atomic.Uint64
	// wmu serialises writers so that a caller waiting its turn can give up
	// when its context ends without disturbing the connection.
	wmu chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan reply
	err     error // why the connection ended; set once, under mu

	notes   chan Notification
	dropped atomic.Uint64

	done      chan struct{} // closed when the reader goroutine has returned
	closeOnce sync.Once
	closeErr  error
}

// Dial connects to a fabricd WebSocket endpoint such as ws://127.0.0.1:7420/rpc.
// ctx bounds the handshake only. When the server refuses the handshake with a
// JSON-RPC error in the body (a wrong token, say), that *protocol.Error is
// returned, wrapped with the HTTP status.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts.defaults()
	header := http.Header{}
	for k, v := range opts.Header {
		header[k] = append([]string(nil), v...)
	}
	if opts.Token != "" {
		header.Set("Authorization", "Bearer "+opts.Token)
	}
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: opts.HTTPClient,
		HTTPHeader: header,
	})
	if err != nil {
		return nil, dialError(url, resp, err)
	}
	conn.SetReadLimit(opts.ReadLimit)
	c := &Client{
		conn:    conn,
		opts:    opts,
		wmu:     make(chan struct{}, 1),
		pending: map[uint64]chan reply{},
		notes:   make(chan Notification, opts.NotificationBuffer),
		done:    make(chan struct{}),
	}
	c.wtimer = time.AfterFunc(time.Hour, c.watchWrite)
	c.wtimer.Stop()
	go c.read()
	return c, nil
}

// dialError names the URL and, when the server answered over HTTP, its status
// and any JSON-RPC error it gave.
func dialError(url string, resp *http.Response, err error) error {
	if resp == nil {
		return fmt.Errorf("connecting to %s: %w", url, err)
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
	}
	if pe := bodyError(body); pe != nil {
		return fmt.Errorf("connecting to %s: HTTP %d: %w", url, resp.StatusCode, pe)
	}
	msg := string(bytes.TrimSpace(body))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return fmt.Errorf("connecting to %s: HTTP %d: %s", url, resp.StatusCode, msg)
}

// bodyError finds a JSON-RPC error in a refused handshake's body: either a
// whole response {"error": {...}} or a bare error object.
func bodyError(body []byte) *protocol.Error {
	var m struct {
		Error   *protocol.Error `json:"error"`
		Code    int64           `json:"code"`
		Message string          `json:"message"`
		Data    map[string]any  `json:"data"`
	}
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	if m.Error != nil && m.Error.Code != 0 {
		return m.Error
	}
	if m.Code != 0 {
		return &protocol.Error{Code: m.Code, Message: m.Message, Data: m.Data}
	}
	return nil
}

// Call sends a request and waits for its response. params is encoded with
// encoding/json (nil sends no params); the result is decoded into result
// unless it is nil. A JSON-RPC error comes back as a *protocol.Error, not
// wrapped. When ctx ends first, Call returns ctx's error and a late response
// is discarded; the connection stays usable.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	id := c.nextID.Add(1)
	msg, err := encodeRequest(id, method, params)
	if err != nil {
		return err
	}
	ch, err := c.register(id)
	if err != nil {
		return err
	}
	if err := c.send(ctx, msg); err != nil {
		c.unregister(id)
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		return r.decode(method, result)
	case <-ctx.Done():
		c.unregister(id)
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Notify sends a JSON-RPC notification: the server never answers it.
func (c *Client) Notify(ctx context.Context, method string, params any) error {
	msg, err := encodeRequest(0, method, params)
	if err != nil {
		return err
	}
	if err := c.send(ctx, msg); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

func (r reply) decode(method string, result any) error {
	if r.err != nil {
		var pe *protocol.Error
		if errors.As(r.err, &pe) {
			return pe
		}
		return fmt.Errorf("%s: %w", method, r.err)
	}
	if result == nil {
		return nil
	}
	if raw, ok := result.(*json.RawMessage); ok {
		*raw = r.result
		return nil
	}
	if err := json.Unmarshal(r.result, result); err != nil {
		return fmt.Errorf("%s: decoding the result into %T: %w", method, result, err)
	}
	return nil
}

// Notifications returns the server's notifications in the order they
// arrived. The channel is closed when the connection ends. It holds
// Options.NotificationBuffer of them; while it is full, new ones are dropped
// and counted by Dropped, so that a slow reader never stalls responses.
func (c *Client) Notifications() <-chan Notification { return c.notes }

// Dropped is the number of notifications dropped because the channel was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Done is closed when the connection has ended, by Close or otherwise.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended, or nil while it is up. After Close it
// wraps ErrClosed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection with a normal closure, fails the calls still
// waiting with ErrClosed, and returns when the reader goroutine has stopped.
// It is idempotent. It reports an error only when the connection was up and
// the closing handshake failed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		wasUp := c.Err() == nil
		c.fail(ErrClosed)
		// The closing handshake ends the reader's Read, or closes the
		// connection under it when the server does not answer.
		err := c.conn.Close(websocket.StatusNormalClosure, "")
		c.wtimer.Stop()
		<-c.done
		if wasUp && err != nil {
			c.closeErr = fmt.Errorf("client: closing: %w", err)
		}
	})
	return c.closeErr
}

func (c *Client) register(id uint64) (chan reply, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	c.pending[id] = ch
	return ch, nil
}

func (c *Client) unregister(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// send writes one whole message. Waiting for the turn to write honours ctx;
// the write itself is bounded by WriteTimeout and Close, never by ctx, since
// abandoning it halfway would break the frame stream for every other call.
func (c *Client) send(ctx context.Context, msg []byte) error {
	select {
	case c.wmu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
	defer func() { <-c.wmu }()
	if err := c.Err(); err != nil {
		return err
	}
	began := time.Now()
	c.wmeta.Lock()
	c.wbegan, c.wbusy = began, true
	if !c.warmed {
		c.warmed = true
		c.wtimer.Reset(c.opts.WriteTimeout)
	}
	c.wmeta.Unlock()
	err := c.conn.Write(context.Background(), websocket.MessageText, msg)
	c.wmeta.Lock()
	c.wbusy = false
	c.wmeta.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: writing: %v", ErrClosed, err)
		c.fail(err)
		return c.Err() // the timeout's reason, when it was that
	}
	return nil
}

// watchWrite ends a connection whose write in progress began WriteTimeout
// ago or more: the frame stream is broken halfway. A younger write arms the
// timer again for the rest of its time; with no write, it stays unarmed
// until the next one.
func (c *Client) watchWrite() {
	c.wmeta.Lock()
	if !c.wbusy {
		c.warmed = false
		c.wmeta.Unlock()
		return
	}
	if d := time.Since(c.wbegan); d < c.opts.WriteTimeout {
		c.wtimer.Reset(c.opts.WriteTimeout - d)
		c.wmeta.Unlock()
		return
	}
	c.warmed = false
	c.wmeta.Unlock()
	c.fail(fmt.Errorf("%w: writing a message took longer than %s", ErrClosed, c.opts.WriteTimeout))
	c.conn.CloseNow()
}

// fail records why the connection ended (the first reason wins) and fails
// every waiting call with it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for id, ch := range c.pending {
		ch <- reply{err: c.err}
		delete(c.pending, id)
	}
}

// read is the reader goroutine: it owns the receiving side of the connection
// until the connection ends.
func (c *Client) read() {
	defer close(c.done)
	defer close(c.notes)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.fail(readError(err))
			return
		}
		msgs, err := decodeMessage(data)
		if err != nil {
			// A server that sends what cannot be read cannot be trusted to
			// answer the calls waiting either.
			err = fmt.Errorf("%w: the server sent an %v", ErrClosed, err)
			c.fail(err)
			c.conn.Close(websocket.StatusProtocolError, "undecodable message")
			return
		}
		for i := range msgs {
			c.dispatch(&msgs[i])
		}
	}
}

func readError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Reason != "" {
			return fmt.Errorf("%w: the server closed it (%d %s)", ErrClosed, ce.Code, ce.Reason)
		}
		return fmt.Errorf("%w: the server closed it (%d)", ErrClosed, ce.Code)
	}
	return fmt.Errorf("%w: %v", ErrClosed, err)
}

// dispatch hands one message to the call waiting for it, or to the
// notification channel. Responses nobody waits for any more (the call's
// context ended) and requests from the server (the protocol has none) are
// dropped.
func (c *Client) dispatch(m *incoming) {
	if m.ID == nil {
		if m.Method != "" {
			n := Notification{Method: m.Method, Params: m.Params}
			if c.opts.BlockNotifications {
				select {
				case c.notes <- n:
				case <-c.done:
				}
				return
			}
			select {
			case c.notes <- n:
			default:
				c.dropped.Add(1)
			}
		}
		return
	}
	if m.Method != "" {
		return
	}
	id, ok := parseID(m.ID)
	if !ok {
		return
	}
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch == nil {
		return
	}
	if m.Error != nil {
		ch <- reply{err: m.Error}
		return
	}
	res := m.Result
	if res == nil {
		res = json.RawMessage("null")
	}
	ch <- reply{result: res}
}
