package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/protocol"
)

// transport reads and writes whole messages; a session runs over one.
type transport interface {
	// read returns the next whole message. A *frameError is answered and
	// reading goes on; io.EOF ends the session gracefully; any other error
	// ends it at once.
	read() ([]byte, error)
	// write writes one whole message.
	write(msg []byte) error
	// close ends the transport with r, unblocking read and write if it can.
	// It reports whether read and write are now sure to return; a stdio
	// reader blocked on an uncloseable file is not.
	close(r endReason) (unblocked bool)
}

// corker is a transport whose writes the reader may hold back while it
// answers requests already read, to write them together (wsTransport: see
// ws.go). Every holder of the outbox's write lock writes what is held
// before it lets the lock go.
type corker interface {
	// cork holds back the writes made until it is called with false; the
	// caller holds wmu.
	cork(on bool)
	// held is the number of bytes held back.
	held() int
	// flush writes them; the caller holds wmu.
	flush() error
	// moreBuffered says that the next message has been read from the
	// socket already (an estimate: see wsTransport.moreBuffered).
	moreBuffered() bool
	// setFlusher names what to call when held bytes must be written
	// without the reader's help: the transport is about to block in a read.
	setFlusher(func())
}

// maxHeld bounds the bytes a corker holds back.
const maxHeld = 64 << 10

// endReason says why a session ends and how.
type endReason struct {
	code websocket.StatusCode // the WebSocket close code
	text string               // the close reason (<= 123 bytes), also logged
	// graceful sessions stop taking requests, answer those in flight, flush
	// their queue and then close; the others close at once.
	graceful bool
	// hurry makes long waits (task.wait) answer early, with the task as it
	// stands. The end of stdin does not hurry them: "fabricd stdio <
	// requests" waits for every answer.
	hurry bool
}

var (
	endEOF          = endReason{code: websocket.StatusNormalClosure, text: "end of input", graceful: true}
	endGoingAway    = endReason{code: websocket.StatusGoingAway, text: "server shutting down", graceful: true, hurry: true}
	endPeerGone     = endReason{code: websocket.StatusNormalClosure, text: "peer closed the connection"}
	endSlowConsumer = endReason{code: websocket.StatusPolicyViolation, text: "slow consumer: outbound queue full"}
	endBinary       = endReason{code: websocket.StatusUnsupportedData, text: "binary frames are not supported; send JSON-RPC as text frames"}
	endCancelled    = endReason{code: websocket.StatusGoingAway, text: "session cancelled"}
	endIOError      = endReason{code: websocket.StatusInternalError, text: "i/o error"}
)

// session is one connection's JSON-RPC conversation: it reads messages,
// dispatches their requests concurrently (at most MaxInFlight at once),
// regroups batch replies, and writes every outgoing message in order through
// one bounded queue (outbox). Nothing that produces messages ever waits for
// room in the queue: when it is full the session ends (endSlowConsumer).
//
// A method that cannot wait on anything (system.health, say) runs on the
// reader itself, and an answer is written by the goroutine that has it when
// nothing is queued and nobody is writing: one call at a time then costs
// no goroutine and no hand-off. The writer goroutine writes the rest. (A
// reader whose write does not finish hands the reading to a new goroutine:
// see readerRole.)
//
// Goroutines: run's caller owns the session; run starts the reader and the
// writer (io) and one goroutine per request that may wait and per kpi
// subscription (work), and returns only once all of them have ended (except
// a stdio reader or writer blocked on a file that cannot be interrupted; see
// transport.close).
type session struct {
	srv  *Server
	t    transport
	log  zerolog.Logger
	id   uint64
	kind string

	// ctx is the requests' context, cancelled when the session ends.
	ctx    context.Context
	cancel context.CancelFunc
	// drainCtx is cancelled when the session must end soon (shutdown, or
	// an end that is not graceful): long waits (task.wait) return early.
	drainCtx    context.Context
	cancelDrain context.CancelFunc

	out     *outbox       // the outbound queue and the right to write
	outDone chan struct{} // closed when nothing more will be queued
	ended   chan struct{} // closed by the first end
	force   chan struct{} // closed by abort: stop waiting gracefully
	idle    chan struct{} // closed when inflight drops to 0 while ending

	endOnce   sync.Once
	forceOnce sync.Once
	reason    endReason // set by the first end

	mu       sync.Mutex
	inflight int
	ending   bool // no new requests or subscriptions
	subs     map[string]*subscription

	work       sync.WaitGroup // request handlers and kpi tickers
	reader     readerRole
	readerDone chan struct{} // closed when the last reader goroutine has ended
	writerDone chan struct{}
}

// readerRole says which goroutine reads the transport. The reader answers
// the quick methods and writes those answers itself when the writer is idle
// (readerWrite). A peer that sends without reading could then block the
// reader in a write while the peer blocks in its own, each waiting for the
// other: so a write of the reader that has not finished within readerGrace
// hands the role to a new goroutine, which reads on, and the old one ends
// once its write returns.
//
// The watch is a timer that is not reset for each write: resetting a timer
// wakes a thread of the runtime (to look at the new deadline), once per
// answer. It is armed by a write when it is not armed already, and when it
// fires it looks at the write in progress: stalled when it began
// readerGrace ago or more, otherwise it is armed again for the rest of that
// write's grace; with no write in progress it stays unarmed. A busy
// connection then pays about one firing per readerGrace, not one reset per
// answer.
type readerRole struct {
	mu      sync.Mutex
	gen     int         // the current reader's generation (from 1)
	writing int         // generation of a reader in a write; 0 for none
	began   time.Time   // when that write began
	live    int         // reader goroutines not ended
	timer   *time.Timer // fires watchWrite; made at the first write
	armed   bool        // the timer will fire
}

// readerGrace is how long the reader's write may take before the reading
// goes on in a new goroutine. A write to a peer that reads takes
// microseconds; the hand-off costs a goroutine.
const readerGrace = time.Millisecond

func (s *Server) newSession(t transport, kind string) *session {
	ss := &session{
		srv:     s,
		t:       t,
		kind:    kind,
		out:     newOutbox(s.cfg.OutboundQueue),
		outDone: make(chan struct{}),
		ended:   make(chan struct{}),
		force:   make(chan struct{}),
		idle:    make(chan struct{}),
		subs:    map[string]*subscription{},

		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	ss.drainCtx, ss.cancelDrain = context.WithCancel(ss.ctx)
	return ss
}

// serve registers the session with the server and runs it to its end. It
// returns false, without running, once the server is shutting down.
func (ss *session) serve() bool {
	if !ss.srv.addSession(ss) {
		return false
	}
	defer ss.srv.removeSession(ss)
	ss.log = ss.srv.log.With().Str("transport", ss.kind).Uint64("conn", ss.id).Logger()
	ss.log.Debug().Msg("connection opened")
	r := ss.run()
	ss.log.Debug().Str("reason", r.text).Msg("connection closed")
	return true
}

// run runs the session until it ends, then tears it down.
func (ss *session) run() endReason {
	if c, ok := ss.t.(corker); ok {
		c.setFlusher(ss.out.wakeWriter)
	}
	go ss.writeLoop()
	ss.reader.gen, ss.reader.live = 1, 1
	go ss.readLoop(1)

	<-ss.ended
	r := ss.reason
	ss.mu.Lock()
	ss.ending = true
	n := ss.inflight
	ss.mu.Unlock()
	if r.hurry || !r.graceful {
		ss.cancelDrain()
	}
	if r.graceful && n > 0 {
		select {
		case <-ss.idle:
		case <-ss.force:
		}
	}
	// No request starts from here on; stop the rest.
	ss.cancel()
	ss.closeSubscriptions()
	closed, unblocked := false, true
	workDone := make(chan struct{})
	go func() {
		ss.work.Wait()
		close(workDone)
	}()
	select {
	case <-workDone:
	case <-ss.force:
		// Cut short. A request may be writing its answer to a peer that
		// does not read: closing the transport now frees it.
		r.graceful = false
		closed, unblocked = true, ss.t.close(r)
		if unblocked {
			<-workDone
		}
	}
	close(ss.outDone)
	if r.graceful {
		// Let the writer flush what the requests answered.
		select {
		case <-ss.writerDone:
		case <-ss.force:
		}
	}
	if r == endSlowConsumer {
		ss.srv.cfg.Recorder.SlowConsumer()
		ss.log.Warn().Int("queue", ss.out.max).Msg("closing a slow consumer: its outbound queue is full; it may reconnect and replay with task.subscribe {after_seq}")
	}
	select {
	case <-ss.force:
		r.graceful = false // cut short: the writer may be stuck too
	default:
	}
	if !closed {
		unblocked = ss.t.close(r)
	}
	if unblocked {
		<-ss.readerDone
		<-ss.writerDone
	}
	ss.reader.mu.Lock()
	if ss.reader.timer != nil {
		ss.reader.timer.Stop()
	}
	ss.reader.mu.Unlock()
	return ss.reason
}

// end ends the session for r; only the first reason counts.
func (ss *session) end(r endReason) {
	ss.endOnce.Do(func() {
		ss.reason = r
		close(ss.ended)
	})
}

// abort ends the session at once: a graceful end in progress stops waiting.
func (ss *session) abort(r endReason) {
	ss.end(r)
	ss.forceOnce.Do(func() { close(ss.force) })
}

// goAway starts a graceful end for server shutdown.
func (ss *session) goAway() {
	ss.end(endGoingAway)
	ss.cancelDrain() // also when the session was already ending for EOF
}

// readLoop reads and handles messages while it holds the reader role
// (generation gen).
func (ss *session) readLoop(gen int) {
	defer ss.readerEnded()
	for {
		if !ss.isReader(gen) {
			return // handed off while writing; a new reader goes on
		}
		msg, err := ss.t.read()
		if err == nil {
			ss.handleMessage(msg, gen)
			ss.answered(gen)
			continue
		}
		var fe *frameError
		switch {
		case errors.As(err, &fe):
			ss.readerWrite(encodeError(nullID, fe.e), gen)
			ss.answered(gen)
			continue
		case errors.Is(err, io.EOF):
			ss.end(endEOF)
			return
		case errors.Is(err, errBinaryFrame):
			ss.abort(endBinary)
			return
		default:
			if errors.Is(err, errPeerClosed) {
				ss.abort(endPeerGone)
			} else {
				ss.log.Debug().Err(err).Msg("read failed")
				ss.abort(endIOError)
			}
			return
		}
	}
}

func (ss *session) isReader(gen int) bool {
	ss.reader.mu.Lock()
	defer ss.reader.mu.Unlock()
	return ss.reader.gen == gen
}

// readerEnded counts a reader goroutine out; the last closes readerDone.
func (ss *session) readerEnded() {
	r := &ss.reader
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live--
	if r.live == 0 {
		close(ss.readerDone)
	}
}

// readerWrite is answer for the reader of generation gen: when the writer
// is idle it writes msg itself, held back by a corker transport (the
// reader's next step writes it: answered), or under the watch of
// watchWrite.
func (ss *session) readerWrite(msg []byte, gen int) {
	o := ss.out
	if !o.wmu.TryLock() {
		ss.send(msg)
		return
	}
	defer o.wmu.Unlock()
	if !o.empty() {
		ss.send(msg)
		return
	}
	if c, ok := ss.t.(corker); ok && c.held()+len(msg) <= maxHeld {
		// Held back: written with the answers to the requests read with
		// this one, once the last is answered (readLoop), or by the next
		// writer. No I/O, so no watch.
		c.cork(true)
		ss.write(msg)
		c.cork(false)
		return
	}
	ss.watched(gen, func() { ss.write(msg) })
}

// answered is the reader's step after a message: what its answers left
// held back is written now, unless the next message is read already (then
// its answers go out with them).
func (ss *session) answered(gen int) {
	if c, ok := ss.t.(corker); ok && c.held() > 0 && !c.moreBuffered() {
		ss.readerFlush(c, gen)
	}
}

// readerFlush writes, for the reader of generation gen, what its answers
// left held back. When another goroutine holds wmu it leaves it to that
// one, which writes what is held before it lets wmu go.
func (ss *session) readerFlush(c corker, gen int) {
	o := ss.out
	if !o.wmu.TryLock() {
		return
	}
	defer o.wmu.Unlock()
	ss.watched(gen, func() { ss.flushHeld(c) })
}

// flushHeld writes what c holds back; the caller holds wmu. A failed write
// ends the session.
func (ss *session) flushHeld(c corker) bool {
	if c.held() == 0 {
		return true
	}
	if err := c.flush(); err != nil {
		ss.log.Debug().Err(err).Msg("write failed")
		ss.abort(endIOError)
		return false
	}
	return true
}

// watched runs write, a write of the reader of generation gen, under the
// watch of watchWrite.
func (ss *session) watched(gen int, write func()) {
	r := &ss.reader
	began := time.Now()
	r.mu.Lock()
	r.writing, r.began = gen, began
	if !r.armed {
		r.armed = true
		if r.timer == nil {
			r.timer = time.AfterFunc(readerGrace, ss.watchWrite)
		} else {
			r.timer.Reset(readerGrace)
		}
	}
	r.mu.Unlock()
	write()
	r.mu.Lock()
	if r.writing == gen {
		r.writing = 0
	}
	r.mu.Unlock()
}

// watchWrite is the reader's watch (see readerRole): it hands the reader
// role to a new goroutine when the reader is still in a write begun
// readerGrace ago or more.
func (ss *session) watchWrite() {
	r := &ss.reader
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writing == 0 || r.writing != r.gen {
		r.armed = false // no write, or the role was handed off already
		return
	}
	if d := time.Since(r.began); d < readerGrace {
		r.timer.Reset(readerGrace - d)
		return
	}
	r.armed = false
	r.gen++
	r.live++
	go ss.readLoop(r.gen)
}

var (
	errBinaryFrame = errors.New("binary frame")
	errPeerClosed  = errors.New("peer closed the connection")
)

// writeLoop writes what is queued, in order, whenever something is.
func (ss *session) writeLoop() {
	defer close(ss.writerDone)
	o := ss.out
	for {
		last := false
		select {
		case <-o.wake:
		case <-ss.outDone:
			last = true
		}
		// Answers made ready with the one that woke the loop (finish)
		// are queued by their goroutines, runnable now: let them run
		// first, and write them all at once.
		runtime.Gosched()
		o.wmu.Lock()
		c, corks := ss.t.(corker)
		for msg := o.pop(); msg != nil; msg = o.pop() {
			// What is queued goes out together, up to maxHeld a write.
			hold := corks && c.held()+len(msg) <= maxHeld
			if hold {
				c.cork(true)
			}
			ok := ss.write(msg)
			if hold {
				c.cork(false)
			}
			if !ok {
				o.wmu.Unlock()
				return
			}
		}
		if corks && !ss.flushHeld(c) {
			o.wmu.Unlock()
			return
		}
		o.wmu.Unlock()
		if last {
			return
		}
	}
}

// write writes one message; the caller holds out.wmu. A failed write ends
// the session.
func (ss *session) write(msg []byte) bool {
	if err := ss.t.write(msg); err != nil {
		ss.log.Debug().Err(err).Msg("write failed")
		ss.abort(endIOError)
		return false
	}
	return true
}

// send queues msg without blocking; a full queue ends the session. The
// scheduler's goroutines and anyone holding a lock send this way.
func (ss *session) send(msg []byte) {
	if !ss.out.push(msg) {
		ss.abort(endSlowConsumer)
	}
}

// writeIdle writes msg at once, and reports true, when nobody is writing and
// nothing is queued (so that order holds). It may block on the peer: only
// the reader and a request's own goroutine call it, holding no lock.
func (ss *session) writeIdle(msg []byte) (written, ok bool) {
	o := ss.out
	if !o.wmu.TryLock() {
		return false, true
	}
	defer o.wmu.Unlock()
	if !o.empty() {
		return false, true
	}
	return true, ss.write(msg)
}

// answer writes msg directly when the writer is idle (writeIdle), and queues
// it otherwise, like send.
func (ss *session) answer(msg []byte) {
	if written, _ := ss.writeIdle(msg); !written {
		ss.send(msg)
	}
}

// sendWait writes or queues msg, waiting for room while ctx lasts. Only a
// request's own goroutine may wait: never the scheduler's.
func (ss *session) sendWait(ctx context.Context, msg []byte) error {
	if written, ok := ss.writeIdle(msg); written {
		if !ok {
			return errors.New("connection closed")
		}
		return nil
	}
	for {
		queued, room := ss.out.tryPush(msg, true)
		if queued {
			return nil
		}
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-ss.outDone:
			return errors.New("connection closed")
		}
	}
}

// batchReply collects a batch's responses into one array reply.
type batchReply struct {
	mu      sync.Mutex
	pending int // responses still to come
	parts   [][]byte
}

func (b *batchReply) add(msg []byte) (done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parts = append(b.parts, msg)
	b.pending--
	return b.pending == 0
}

// reply answers one request, alone or as part of its batch: written by the
// reader of generation reader (readerWrite), or by a request's goroutine
// (reader 0: answer).
func (ss *session) reply(b *batchReply, msg []byte, reader int) {
	if b != nil {
		if !b.add(msg) {
			return
		}
		msg = joinBatch(b.parts)
	}
	if reader != 0 {
		ss.readerWrite(msg, reader)
	} else {
		ss.answer(msg)
	}
}

// handleMessage handles one message on the reader of generation gen.
func (ss *session) handleMessage(msg []byte, gen int) {
	in := parseMessage(msg)
	if in.reject != nil {
		ss.readerWrite(encodeError(nullID, in.reject), gen)
		return
	}
	var b *batchReply
	if in.batch {
		b = &batchReply{}
		for _, it := range in.items {
			if it.err != nil || !it.req.notification() {
				b.pending++
			}
		}
		if b.pending == 0 {
			b = nil // all notifications: nothing to answer
		}
	}
	for _, it := range in.items {
		if it.err != nil {
			ss.reply(b, encodeError(it.req.ID, it.err), gen)
			continue
		}
		ss.dispatch(it.req, b, gen)
	}
}

// dispatch runs one request: on the reader itself when its method cannot
// wait on anything (method.try), on a goroutine of its own otherwise. It
// answers at once, without running it, a request that comes while the
// session is ending or over its in-flight cap (unsubscribe excepted: it
// frees what it names).
func (ss *session) dispatch(req request, b *batchReply, gen int) {
	m, known := ss.srv.methods[req.Method]
	ss.mu.Lock()
	switch {
	case ss.ending:
		ss.mu.Unlock()
		if !req.notification() {
			ss.reply(b, encodeError(req.ID, protocol.Errorf(protocol.ErrShuttingDown,
				"this connection is closing; reconnect to go on")), gen)
		}
		return
	case ss.inflight >= ss.srv.cfg.MaxInFlight && !m.overCap:
		n := ss.inflight
		ss.mu.Unlock()
		if req.notification() {
			ss.log.Debug().Str("method", req.Method).Msg("notification dropped: over the in-flight cap")
			return
		}
		ss.reply(b, encodeError(req.ID, protocol.Overloaded(RetryAfterMs,
			"this connection has %d requests in flight, its limit; retry later", n).With("limit", ss.srv.cfg.MaxInFlight)), gen)
		return
	}
	// Counted in work too, on the reader or not: a session that ends waits
	// for its answer.
	ss.inflight++
	ss.work.Add(1)
	ss.mu.Unlock()
	began := time.Now()
	if !known {
		ss.finish(req, b, began, nil, protocol.Errorf(protocol.ErrMethodNotFound, "no method %q; rpc.discover lists them", clipText([]byte(req.Method))), gen)
		return
	}
	// Params are decoded here: a goroutine of its own would grow its stack
	// to decode them.
	p, err := ss.decode(m, req)
	if err != nil {
		ss.finish(req, b, began, nil, err, gen)
		return
	}
	if m.try != nil {
		if res, err, done := ss.call(m, req, p, true); done {
			ss.finish(req, b, began, res, err, gen)
			return
		}
	}
	ss.spawn(m, req, b, began, p)
}

// spawn runs a request on a goroutine of its own. (A function of its own, so
// that what its goroutine captures is allocated only when one starts.)
func (ss *session) spawn(m method, req request, b *batchReply, began time.Time, p any) {
	go func() {
		res, err, _ := ss.call(m, req, p, false)
		ss.finish(req, b, began, res, err, 0)
	}()
}

// finish answers a request that has run (unless it is a notification),
// records it, and frees its slot. reader is the generation of the reader it
// ran on, or 0.
func (ss *session) finish(req request, b *batchReply, began time.Time, res any, err error, reader int) {
	defer ss.work.Done()
	var msg []byte
	var code int64
	switch {
	case req.notification():
		if err != nil {
			ss.log.Debug().Str("method", req.Method).Err(err).Msg("notification failed (not answered)")
		}
	case err != nil:
		we := ss.wireError(err)
		code = we.Code
		msg = encodeError(req.ID, we)
	default:
		msg = encodeResult(req.ID, res)
	}
	ss.srv.recordRPC(req.Method, code, time.Since(began))
	// The slot is free before the answer is out, so that a client that
	// waits for an answer to send its next request finds room.
	left := ss.requestDone()
	if msg == nil {
		return
	}
	// A request that ran on its own goroutine, while others of the
	// connection are in flight, queues its answer for the writer
	// goroutine: requests that wait for the same thing (a store commit)
	// end together, and their answers then go out in one write instead
	// of one each (writeLoop). Alone, or with the queue full, it answers
	// as a request on the reader does.
	if reader == 0 && b == nil && left > 0 {
		if queued, _ := ss.out.tryPush(msg, false); queued {
			return
		}
	}
	ss.reply(b, msg, reader)
}

// requestDone frees a request's slot and returns how many requests are
// still in flight.
func (ss *session) requestDone() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.inflight--
	if ss.inflight == 0 && ss.ending {
		select {
		case <-ss.idle:
		default:
			close(ss.idle)
		}
	}
	return ss.inflight
}

// decode decodes a request's params for m, recovering a panic into an
// internal error.
func (ss *session) decode(m method, req request) (p any, err error) {
	var done bool
	defer ss.recoverPanic(req.Method, &err, &done)
	return m.decode(req.Params)
}

// call runs one request's method (m.call), or with try tries to run it
// without waiting (m.try: done is false when it would have to wait). A panic
// is recovered into an internal error, and done.
func (ss *session) call(m method, req request, p any, try bool) (res any, err error, done bool) {
	defer ss.recoverPanic(req.Method, &err, &done)
	ctx := ss.ctx
	if ss.logs(m.logs) {
		// The request's logger rides in its context: the scheduler's
		// lines about the request (a task accepted, cancelled, an agent
		// registered) carry the connection and the request id. It is
		// built only when such a line would be written.
		id := req.ID
		if id == nil {
			id = nullID // a notification
		}
		ctx = ss.log.With().RawJSON("request_id", id).Logger().WithContext(ss.ctx)
	}
	if try {
		return m.try(ctx, ss, p)
	}
	res, err = m.call(ctx, ss, p)
	return res, err, true
}

// logs reports whether the session's logger writes lines at level l.
func (ss *session) logs(l zerolog.Level) bool {
	return l >= ss.log.GetLevel() && l >= zerolog.GlobalLevel()
}

func (ss *session) recoverPanic(method string, err *error, done *bool) {
	if p := recover(); p != nil {
		*done = true
		ss.log.Error().Str("method", method).Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("panic in a method handler")
		*err = protocol.Errorf(protocol.ErrInternal, "the server failed while handling %s; the log has the cause", method)
	}
}

// wireError is the one conversion of a method's error for the wire.
func (ss *session) wireError(err error) *protocol.Error {
	if errors.Is(err, context.Canceled) && ss.ctx.Err() != nil {
		return protocol.Errorf(protocol.ErrShuttingDown, "this connection is closing")
	}
	e := protocol.AsError(err)
	if e.Code == protocol.ErrInternal.Code {
		ss.log.Warn().Err(err).Msg("internal error answered")
	}
	return e
}

// notify queues a notification; a full queue ends the session.
func (ss *session) notify(method string, params any) {
	b, err := encodeNotification(method, params)
	if err != nil {
		ss.log.Error().Err(err).Str("method", method).Msg("encoding a notification")
		return
	}
	ss.send(b)
}
