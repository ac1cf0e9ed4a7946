package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"
)

func TestOutboxQueue(t *testing.T) {
	o := newOutbox(3)
	if o.q != nil {
		t.Fatalf("a new outbox holds a queue of capacity %d; want none until something is queued", cap(o.q))
	}
	for i := range 3 {
		if !o.push([]byte{byte('a' + i)}) {
			t.Fatalf("push %d of 3 refused", i+1)
		}
	}
	if o.push([]byte("d")) {
		t.Fatal("a fourth message was queued past the bound of 3")
	}
	ok, room := o.tryPush([]byte("d"), true)
	if ok || room == nil {
		t.Fatalf("tryPush on a full queue: queued %v, room channel %v; want false and a channel", ok, room)
	}
	select {
	case <-room:
		t.Fatal("room signalled before anything left the queue")
	default:
	}
	if got := string(o.pop()); got != "a" {
		t.Fatalf("pop: got %q, want a", got)
	}
	select {
	case <-room:
	default:
		t.Fatal("room not signalled once a message left the queue")
	}
	// The freed slot is reused: the queue slides down rather than grows.
	if !o.push([]byte("d")) {
		t.Fatal("push after a pop refused")
	}
	var got string
	for msg := o.pop(); msg != nil; msg = o.pop() {
		got += string(msg)
	}
	if got != "bcd" {
		t.Fatalf("drained %q, want bcd (first in, first out)", got)
	}
	if !o.empty() {
		t.Fatal("not empty after draining")
	}
}

// A burst grows the queue up to its bound; once drained the queue lets its
// slice go, so that an idle connection holds none.
func TestOutboxShrinksAfterABurst(t *testing.T) {
	o := newOutbox(1024)
	for i := range 1024 {
		if !o.push([]byte(strconv.Itoa(i))) {
			t.Fatalf("push %d refused", i)
		}
	}
	if o.push([]byte("x")) {
		t.Fatal("queued past the bound")
	}
	for i := range 1024 {
		if got := string(o.pop()); got != strconv.Itoa(i) {
			t.Fatalf("pop %d: got %q", i, got)
		}
	}
	if o.q != nil {
		t.Fatalf("a drained queue keeps a slice of capacity %d; want it let go", cap(o.q))
	}
	// A small queue keeps its slice: one message at a time does not
	// allocate each time.
	o.push([]byte("y"))
	o.pop()
	if o.q == nil {
		t.Fatal("a drained small queue let its slice go")
	}
}

// Everything a method queued is written before its answer, which is written
// directly when the writer is idle.
func TestAnswerFollowsWhatWasQueued(t *testing.T) {
	srv := newLayerServer(t, Config{OutboundQueue: 512}, nil)
	c := startPipe(t, srv)
	for round := range 3 {
		mustSend(t, c, `{"jsonrpc":"2.0","method":"flood","params":{"n":200},"id":`+strconv.Itoa(round)+`}`)
		for i := range 200 {
			got := mustRecv(t, c)
			var n struct {
				Method string         `json:"method"`
				Params map[string]int `json:"params"`
			}
			if err := json.Unmarshal([]byte(got), &n); err != nil || n.Method != "test.note" || n.Params["i"] != i {
				t.Fatalf("round %d, message %d: got %s; want the notification i=%d", round, i, got, i)
			}
		}
		want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":200}`, round)
		if got := mustRecv(t, c); got != want {
			t.Fatalf("after the notifications: got %s, want %s", got, want)
		}
	}
}

// A request writing its answer to a peer that does not read does not hold
// up a shutdown past its deadline: the connection is closed under it. The
// writer is a request's goroutine (echo) or the reader itself (quick).
func TestShutdownFreesAWriterStuckOnThePeer(t *testing.T) {
	for _, method := range []string{"echo", "quick"} {
		t.Run(method, func(t *testing.T) {
			srv := newLayerServer(t, Config{}, nil)
			c := startPipe(t, srv)
			// net.Pipe has no buffer: with nobody reading, the answer's
			// write blocks.
			mustSend(t, c, `{"jsonrpc":"2.0","method":"`+method+`","params":{"value":1},"id":1}`)
			waitFor(t, "the answer's write to be under way", srv.writerHeld)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown: got %v, want the deadline's error (the peer never read)", err)
			}
			select {
			case <-c.serve:
			case <-time.After(recvTimeout):
				t.Fatal("ServeStdio did not return")
			}
			c.serve <- nil
		})
	}
}

// writerHeld reports whether some session's right to write is held.
func (s *Server) writerHeld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		if !ss.out.wmu.TryLock() {
			return true
		}
		ss.out.wmu.Unlock()
	}
	return false
}

// A client that sends many requests before it reads any answer, over a pipe
// with no buffer: the reader, blocked writing the first answer, hands the
// reading to a new goroutine, so that the client's sends go through, and
// every answer comes once the client reads.
func TestPipeliningClientWithoutBuffers(t *testing.T) {
	srv := newLayerServer(t, Config{}, nil)
	c := startPipe(t, srv)
	const n = 40
	for i := range n {
		method := "quick"
		if i%4 == 3 {
			method = "echo" // one on a goroutine of its own now and then
		}
		mustSend(t, c, fmt.Sprintf(`{"jsonrpc":"2.0","method":"%s","params":{"value":%d},"id":%d}`, method, i, i))
	}
	seen := map[string]bool{}
	for range n {
		seen[mustRecv(t, c)] = true
	}
	for i := range n {
		if want := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":%d}`, i, i); !seen[want] {
			t.Errorf("no answer %s", want)
		}
	}
}
