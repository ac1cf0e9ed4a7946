package server

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/fixture"
)

// rawWS is a WebSocket client over a bare TCP connection, so that a test
// decides how the bytes of its frames are split across writes.
type rawWS struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawWS {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /rpc HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return &rawWS{t: t, conn: conn, r: r}
}

// frame is one masked text frame carrying msg.
func frame(msg string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x81}
	switch n := len(msg); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 65535:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	for i := range len(msg) {
		b = append(b, msg[i]^mask[i%4])
	}
	return b
}

func (c *rawWS) write(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(recvTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one unmasked text frame from the server.
func (c *rawWS) read() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(recvTimeout))
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(c.r, l[:])
		n = int64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(c.r, l[:])
		n = int64(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return string(p)
}

// Requests that arrive together are answered together (the answers held
// back and written at once), each answered, in order; a request whose
// frame is cut in two by the network does not hold back the answers to
// the ones before it; and what the client sends after the handshake in the
// same write is read too.
func TestCorkedAnswers(t *testing.T) {
	srv, _ := newRealServer(t, fixture.Config{})
	hs := startHTTP(t, srv)
	addr := strings.TrimPrefix(hs.URL, "http://")
	health := func(id int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"system.health"}`, id)
	}
	c := dialRaw(t, addr)

	// Twenty requests in one write.
	var burst []byte
	for id := 1; id <= 20; id++ {
		burst = append(burst, frame(health(id))...)
	}
	c.write(burst)
	for id := 1; id <= 20; id++ {
		if got := c.read(); !strings.Contains(got, fmt.Sprintf(`"id":%d,`, id)) {
			t.Fatalf("answer %d: got %s", id, got)
		}
	}

	// One whole request and the first half of the next in one write: the
	// first is answered while the second waits for its other half.
	f2 := frame(health(22))
	c.write(append(frame(health(21)), f2[:len(f2)/2]...))
	if got := c.read(); !strings.Contains(got, `"id":21,`) {
		t.Fatalf("answer 21: got %s", got)
	}
	c.write(f2[len(f2)/2:])
	if got := c.read(); !strings.Contains(got, `"id":22,`) {
		t.Fatalf("answer 22: got %s", got)
	}

	// Answers written by a request's own goroutine (agent.list does not run
	// on the reader) in between held ones: every answer comes, once.
	for round := range 20 {
		var b []byte
		want := map[string]bool{}
		for k := range 6 {
			id := 100 + 10*round + k
			m := health(id)
			if k%2 == 1 {
				m = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"agent.list"}`, id)
			}
			b = append(b, frame(m)...)
			want[fmt.Sprintf(`"id":%d,`, id)] = true
		}
		c.write(b)
		for range 6 {
			got := c.read()
			found := false
			for k := range want {
				if strings.Contains(got, k) {
					delete(want, k)
					found = true
				}
			}
			if !found {
				t.Fatalf("round %d: an answer not expected or twice: %.200s", round, got)
			}
		}
	}

	// A large answer among small ones (more than a corker holds back).
	big := fmt.Sprintf(`{"jsonrpc":"2.0","id":23,"method":"no.such.method","params":{"pad":%q}}`, strings.Repeat("x", 70<<10))
	c.write(append(append(frame(health(24)), frame(big)...), frame(health(25))...))
	for _, id := range []int{24, 23, 25} {
		if got := c.read(); !strings.Contains(got, fmt.Sprintf(`"id":%d,`, id)) {
			t.Fatalf("answer %d: got %.200s", id, got)
		}
	}
}

// corkConn holds writes while corked and writes them before the next
// write, with flush, or at once when closing.
func TestCorkConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	got := make(chan string, 10)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	read := func(want string) {
		t.Helper()
		var s string
		for len(s) < len(want) {
			select {
			case p := <-got:
				s += p
			case <-time.After(recvTimeout):
				t.Fatalf("read %q; want %q", s, want)
			}
		}
		if s != want {
			t.Fatalf("read %q; want %q", s, want)
		}
	}
	c := &corkConn{Conn: a}
	c.corked = true
	c.Write([]byte("one,"))
	c.Write([]byte("two,"))
	c.corked = false
	if c.heldN.Load() != 8 {
		t.Fatalf("held %d bytes; want 8", c.heldN.Load())
	}
	c.Write([]byte("three;"))
	read("one,two,three;")
	c.corked = true
	c.Write([]byte("four;"))
	c.corked = false
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	read("four;")
	c.corked = true
	c.closing.Store(true)
	c.Write([]byte("close"))
	read("close")
	if c.heldN.Load() != 0 {
		t.Fatalf("held %d bytes after all was written", c.heldN.Load())
	}
}
