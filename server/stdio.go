package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by ServeStdio once Shutdown has begun.
var ErrServerClosed = errors.New("server: shut down")

// ErrSlowConsumer is returned by ServeStdio when the session was closed
// because its output was not read fast enough (its outbound queue filled).
var ErrSlowConsumer = errors.New("server: slow consumer: outbound queue full")

// ServeStdio runs one session on in and out, framed as the first
// non-whitespace byte of in says (see frame.go and docs/protocol.md).
//
// It returns nil when in ends (after the requests in flight are answered)
// or when Shutdown ends the session; ctx.Err() when ctx is cancelled (the
// session is closed at once); ErrSlowConsumer when out was not read fast
// enough; and the I/O error that ended it otherwise.
//
// ServeStdio waits for every goroutine it starts, with one exception: a read
// blocked on a file that cannot be interrupted (os.Stdin is usually one) is
// left to return on its own when the session is cancelled; that goroutine
// touches nothing once the session has ended.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	t := &stdioTransport{fr: newFrameReader(in, s.cfg.MaxMessageBytes), in: in, out: out}
	ss := s.newSession(t, "stdio")
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cancelled)
		ss.abort(endCancelled)
	})
	ran := ss.serve()
	if !stop() {
		<-cancelled
	}
	switch {
	case !ran:
		return ErrServerClosed
	case ss.reason == endCancelled:
		return ctx.Err()
	case ss.reason == endSlowConsumer:
		return ErrSlowConsumer
	case ss.reason == endIOError:
		if err := t.err.Load(); err != nil {
			return fmt.Errorf("stdio: %w", *err)
		}
		return errors.New("stdio: i/o error")
	}
	return nil
}

// stdioTransport frames messages on a pair of byte streams.
type stdioTransport struct {
	fr  *frameReader
	in  io.Reader
	out io.Writer

	readEnded atomic.Bool // read has returned EOF or an error
	err       atomic.Pointer[error]
}

func (t *stdioTransport) read() ([]byte, error) {
	msg, err := t.fr.next()
	var fe *frameError
	if err != nil && !errors.As(err, &fe) {
		t.readEnded.Store(true)
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
			t.err.CompareAndSwap(nil, &err)
		}
	}
	return msg, err
}

func (t *stdioTransport) write(msg []byte) error {
	err := writeFrame(t.out, t.fr.framing(), msg)
	if err != nil {
		t.err.CompareAndSwap(nil, &err)
	}
	return err
}

// close unblocks the reader by closing in, and (unless the session ended
// gracefully, having flushed) the writer by closing out, when they can be.
// It reports whether both are sure to return.
func (t *stdioTransport) close(r endReason) bool {
	ok := true
	if !t.readEnded.Load() {
		ok = interrupt(t.in) && ok
	}
	if !r.graceful {
		ok = interrupt(t.out) && ok
	}
	return ok
}

// interrupt closes v if that is sure to unblock a Read or Write in progress,
// and reports whether it did.
func interrupt(v any) bool {
	if f, ok := v.(*os.File); ok {
		// Closing a file unblocks its pending I/O only if the runtime
		// poller manages it, which is when it accepts a deadline.
		if f.SetDeadline(time.Time{}) != nil {
			return false
		}
	}
	c, ok := v.(io.Closer)
	if !ok {
		return false
	}
	c.Close()
	return true
}
