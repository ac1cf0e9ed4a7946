package server

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// readAll reads every message of a stream, rendering each framing error as
// "ERR <code> <message>".
func readAll(t *testing.T, in string, max int64) (msgs []string, mode framing, end error) {
	t.Helper()
	fr := newFrameReader(strings.NewReader(in), max)
	for i := 0; i < 100; i++ {
		m, err := fr.next()
		var fe *frameError
		switch {
		case errors.As(err, &fe):
			msgs = append(msgs, "ERR "+strings.TrimPrefix(fe.e.Message, ""))
		case err != nil:
			return msgs, fr.framing(), err
		default:
			msgs = append(msgs, string(m))
		}
	}
	t.Fatal("no end of stream")
	return
}

func TestFrameReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int64
		want []string
		mode framing
		end  error
	}{
		{"lines", "{\"a\":1}\n[1]\n", 100, []string{`{"a":1}`, `[1]`}, framingLines, io.EOF},
		{"lines with CRLF, blank lines and leading space", "\r\n  \n {\"a\":1}\r\n\n\n{\"b\":2}\r\n", 100, []string{`{"a":1}`, `{"b":2}`}, framingLines, io.EOF},
		{"last line without a newline", "{\"a\":1}\n{\"b\":2}", 100, []string{`{"a":1}`, `{"b":2}`}, framingLines, io.EOF},
		{"a line over the limit is skipped", "{\"a\":1}\n{\"" + strings.Repeat("x", 200) + "\"}\n{\"b\":2}\n", 100,
			[]string{`{"a":1}`, "ERR request exceeds a server limit: message exceeds the server's limit of 100 bytes; it was skipped", `{"b":2}`}, framingLines, io.EOF},
		{"a line exactly at the limit", "{\"" + strings.Repeat("x", 96) + "\"}\n", 100,
			[]string{`{"` + strings.Repeat("x", 96) + `"}`}, framingLines, io.EOF},
		{"headers", "Content-Length: 7\r\n\r\n{\"a\":1}Content-Length: 3\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n[1]", 100,
			[]string{`{"a":1}`, `[1]`}, framingHeaders, io.EOF},
		{"headers, any case, bare LF, blank lines between", "content-length:7\n\n{\"a\":1}\r\n\r\nCONTENT-LENGTH: 2\r\n\r\n{}", 100,
			[]string{`{"a":1}`, `{}`}, framingHeaders, io.EOF},
		{"a body with newlines", "Content-Length: 9\r\n\r\n{\n\"a\":1\n}", 100, []string{"{\n\"a\":1\n}"}, framingHeaders, io.EOF},
		{"missing Content-Length", "Content-Type: x\r\n\r\nContent-Length: 2\r\n\r\n{}", 100,
			[]string{"ERR parse error: missing Content-Length header", `{}`}, framingHeaders, io.EOF},
		{"a bad Content-Length", "Content-Length: -4\r\n\r\n", 100,
			[]string{`ERR parse error: Content-Length: want a byte count; got "-4"`}, framingHeaders, io.EOF},
		{"a body over the limit is skipped", "Content-Length: 150\r\n\r\n" + strings.Repeat("x", 150) + "Content-Length: 2\r\n\r\n{}", 100,
			[]string{"ERR request exceeds a server limit: message of 150 bytes exceeds the server's limit of 100 bytes; it was skipped", `{}`}, framingHeaders, io.EOF},
		{"a malformed header line", "Content-Length: 2\r\nbogus\r\n\r\n", 100,
			[]string{`ERR parse error: malformed header line "bogus": want "Name: value" (Content-Length framing)`}, framingHeaders, io.EOF},
		{"the stream ends inside a body", "Content-Length: 10\r\n\r\n{}", 100, nil, framingHeaders, io.ErrUnexpectedEOF},
		{"the stream ends inside the headers", "Content-Length: 10\r\n", 100, nil, framingHeaders, io.ErrUnexpectedEOF},
		{"undetectable, then lines", "hello there\n{\"a\":1}\n", 100,
			[]string{`ERR parse error: cannot tell the framing from "hello there": start with '{' or '[' for one JSON message per line, or with "Content-Length:" headers`, `{"a":1}`}, framingLines, io.EOF},
		{"empty input", "", 100, nil, framingUnknown, io.EOF},
		{"only whitespace", " \r\n\t\n", 100, nil, framingUnknown, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, mode, end := readAll(t, tc.in, tc.max)
			if strings.Join(msgs, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("messages:\n got %q\nwant %q", msgs, tc.want)
			}
			if mode != tc.mode {
				t.Errorf("framing %v; want %v", mode, tc.mode)
			}
			if !errors.Is(end, tc.end) {
				t.Errorf("ended with %v; want %v", end, tc.end)
			}
		})
	}
}

func TestWriteFrame(t *testing.T) {
	var b bytes.Buffer
	writeFrame(&b, framingHeaders, []byte(`{"a":"é"}`))
	writeFrame(&b, framingLines, []byte(`{"b":2}`))
	writeFrame(&b, framingUnknown, []byte(`{}`))
	if want := "Content-Length: 10\r\n\r\n{\"a\":\"é\"}{\"b\":2}\n{}\n"; b.String() != want {
		t.Fatalf("got %q want %q", b.String(), want)
	}
}

// TestStdioFramingEndToEnd: a session answers in the framing its input
// used, and an undetectable start gets one -32700 and then goes on.
func TestStdioFramingEndToEnd(t *testing.T) {
	srv := newLayerServer(t, Config{MaxMessageBytes: 200}, nil)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"lines", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"value\":\"a\\nb\"}}\n",
			`{"jsonrpc":"2.0","id":1,"result":"a\nb"}` + "\n"},
		{"headers", "Content-Length: 40\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}",
			"Content-Length: 38\r\n\r\n" + `{"jsonrpc":"2.0","id":1,"result":null}`},
		{"garbage first", "garbage\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}\n",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error: cannot tell the framing from \"garbage\": start with '{' or '[' for one JSON message per line, or with \"Content-Length:\" headers","data":{"reason":"cannot tell the framing from \"garbage\": start with '{' or '[' for one JSON message per line, or with \"Content-Length:\" headers"}}}` + "\n" +
				`{"jsonrpc":"2.0","id":2,"result":null}` + "\n"},
		{"oversize line then a good one", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"value\":\"" + strings.Repeat("x", 300) + "\"}}\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\"}\n",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"request exceeds a server limit: message exceeds the server's limit of 200 bytes; it was skipped","data":{"limit_bytes":200,"reason":"message exceeds the server's limit of 200 bytes; it was skipped"}}}` + "\n" +
				`{"jsonrpc":"2.0","id":3,"result":null}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := srv.ServeStdio(t.Context(), strings.NewReader(tc.in), &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("\n got %q\nwant %q", out.String(), tc.want)
			}
		})
	}
}
