package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/internal/metrics"
	"github.com/chimera-fabric/fabric/sched"
)

// Config configures a Server. The zero value of every field but Sched is
// usable: it means the documented default.
type Config struct {
	// Sched runs the methods. Required.
	Sched *sched.Scheduler
	// Logger receives the server's logs; connections log with their id.
	Logger zerolog.Logger
	// Token, when not empty, is required on GET /rpc and GET /metrics as
	// "Authorization: Bearer <token>" (or "?token=<token>" for browsers).
	// A stdio session is trusted: whoever holds its pipes started fabricd.
	Token string
	// AllowOrigins are the host patterns of the cross-origin pages allowed to
	// open a WebSocket (coder/websocket AcceptOptions.OriginPatterns); the
	// request's own host is always allowed.
	AllowOrigins []string
	// MaxMessageBytes bounds one incoming message (a WebSocket text frame or a
	// stdio message). Default: DefaultMaxMessageBytes(sched.DefaultLimits.MaxModuleBytes),
	// so that the largest module fits in agent.register as base64.
	MaxMessageBytes int64
	// MaxInFlight bounds a connection's requests being handled at once; past
	// it a request is answered -32002 with data.retry_after_ms. Default 256.
	MaxInFlight int
	// OutboundQueue bounds a connection's messages waiting to be written.
	// A connection whose queue is full is closed (the slow-consumer policy,
	// docs/protocol.md). Default 1024.
	OutboundQueue int
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
	// Ready reports whether GET /readyz answers 200, and why not. nil means
	// ready. While the server shuts down /readyz answers 503 "draining".
	Ready func() (ready bool, why string)
	// Version is fabricd's version, shown in rpc.discover's info.
	Version string
	// MaxConnections bounds the open WebSocket connections; past it the
	// handshake is refused with HTTP 503 and a -32002 body. 0: no limit.
	MaxConnections int
	// Recorder records RPC requests, connections and slow consumers; nil
	// records nothing.
	Recorder *metrics.Metrics
	// StoreNeverWaits says that the scheduler's store answers without
	// waiting on I/O (the in-memory store). task.get and task.submit
	// (without subscribe) then run on the connection's reader, as
	// system.health, agent.get and unsubscribe always do: no goroutine and
	// no hand-off per call. Leave it false for a store that writes to disk:
	// a call waiting for its commit would hold up the connection's other
	// requests.
	StoreNeverWaits bool
}

// Defaults.
const (
	DefaultMaxInFlight   = 256
	DefaultOutboundQueue = 1024
	// RetryAfterMs is the retry_after_ms a request over the in-flight cap is
	// given.
	RetryAfterMs = 100
)

// DefaultMaxMessageBytes is the message size that fits a module of
// maxModuleBytes as base64 in agent.register, with 1 MiB to spare.
func DefaultMaxMessageBytes(maxModuleBytes int64) int64 {
	return (maxModuleBytes+2)/3*4 + 1<<20
}

// Validate reports the first field that is out of range.
func (c *Config) Validate() error {
	switch {
	case c.Sched == nil:
		return errors.New("server: Config.Sched is required")
	case c.MaxMessageBytes < 0:
		return fmt.Errorf("server: MaxMessageBytes: want >= 0 (0: default); got %d", c.MaxMessageBytes)
	case c.MaxInFlight < 0:
		return fmt.Errorf("server: MaxInFlight: want >= 0 (0: default %d); got %d", DefaultMaxInFlight, c.MaxInFlight)
	case c.OutboundQueue < 0:
		return fmt.Errorf("server: OutboundQueue: want >= 0 (0: default %d); got %d", DefaultOutboundQueue, c.OutboundQueue)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes(sched.DefaultLimits.MaxModuleBytes)
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.OutboundQueue == 0 {
		c.OutboundQueue = DefaultOutboundQueue
	}
	if c.Ready == nil {
		c.Ready = func() (bool, string) { return true, "" }
	}
	return c
}

// Server serves Fabric's JSON-RPC API over WebSocket (Handler) and stdio
// (ServeStdio). Both run the same sessions: the handler never knows which
// transport it sits on.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	methods map[string]method

	mu       sync.Mutex
	closing  bool // Shutdown has begun: no new sessions
	sessions map[*session]struct{}
	wg       sync.WaitGroup // one per session in sessions
	nextID   uint64

	wsConns atomic.Int64 // open WebSocket connections, for MaxConnections
}

// New returns a Server. It panics if cfg does not Validate: a server without
// a scheduler is a programming error, not a runtime condition.
func New(cfg Config) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return newServer(cfg, nil)
}

// newServer builds a Server; methods replaces the method table in tests of
// the JSON-RPC layer that need no scheduler.
func newServer(cfg Config, methods map[string]method) *Server {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, sessions: map[*session]struct{}{}}
	s.methods = methods
	if s.methods == nil {
		s.methods = methodTable()
	}
	return s
}

// Shutdown stops taking connections and ends every session: a session stops
// taking requests (they are answered -32007), task.wait calls return the
// task as it stands, the other requests in flight are answered, and then the
// WebSocket is closed with 1001 going away (a stdio session ends). If ctx
// ends first, the remaining sessions are closed at once. Shutdown returns
// once every session's goroutines have ended; it is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	sessions := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.goAway()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for ss := range s.sessions {
		ss.abort(endGoingAway)
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// addSession registers a session; false once Shutdown has begun.
func (s *Server) addSession(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.nextID++
	ss.id = s.nextID
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.cfg.Recorder.ConnOpened(ss.kind)
	return true
}

func (s *Server) removeSession(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.cfg.Recorder.ConnClosed(ss.kind)
	s.wg.Done()
}

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// recordRPC records an answered request. Methods outside the table count as
// "unknown", so that a client cannot grow the series without bound.
func (s *Server) recordRPC(method string, code int64, d time.Duration) {
	if s.cfg.Recorder == nil {
		return
	}
	if _, ok := s.methods[method]; !ok {
		method = "unknown"
	}
	s.cfg.Recorder.RPC(method, code, d)
}
