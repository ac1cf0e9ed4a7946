package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/chimera-fabric/fabric/protocol"
)

// Stdio framing (PROTOCOL.md "Transports"). The framing is detected from the
// first non-whitespace byte of the stream: '{' or '[' selects newline-delimited
// JSON (one message or batch per line), 'C' (or 'c') selects Content-Length
// headers as in the Language Server Protocol. Responses use the same framing.
//
// Before the framing is known, a message that starts with anything else is
// answered with one -32700 error (as a JSON line) and skipped up to the end of
// its line; detection starts again with the next line. Once detected, the
// framing holds for the session.

type framing int32

const (
	framingUnknown framing = iota
	framingLines
	framingHeaders
)

func (f framing) String() string {
	switch f {
	case framingLines:
		return "newline-delimited JSON"
	case framingHeaders:
		return "Content-Length headers"
	}
	return "unknown"
}

// frameError is a framing problem answered with a JSON-RPC error (id null);
// the stream stays usable.
type frameError struct{ e *protocol.Error }

func (f *frameError) Error() string { return f.e.Message }

// maxHeaderLine bounds one header line of the Content-Length framing.
const maxHeaderLine = 4096

// frameReader reads whole messages from a byte stream.
type frameReader struct {
	r    *bufio.Reader
	max  int64 // a message's size limit
	mode atomic.Int32
}

func newFrameReader(r io.Reader, max int64) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// framing returns the detected framing (framingUnknown before the first
// message).
func (f *frameReader) framing() framing { return framing(f.mode.Load()) }

// next returns the next message. A *frameError is to be answered; io.EOF
// ends the stream cleanly.
func (f *frameReader) next() ([]byte, error) {
	switch f.framing() {
	case framingLines:
		return f.nextLine()
	case framingHeaders:
		return f.nextHeaders()
	}
	c, err := f.skipSpace()
	if err != nil {
		return nil, err
	}
	switch c {
	case '{', '[':
		f.mode.Store(int32(framingLines))
		return f.nextLine()
	case 'C', 'c':
		f.mode.Store(int32(framingHeaders))
		return f.nextHeaders()
	}
	line, _, err := f.readLine(maxHeaderLine)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return nil, &frameError{protocol.Errorf(protocol.ErrParse,
		"cannot tell the framing from %q: start with '{' or '[' for one JSON message per line, or with \"Content-Length:\" headers",
		clipText(line))}
}

// skipSpace skips JSON whitespace and returns the next byte, unread.
func (f *frameReader) skipSpace() (byte, error) {
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c, f.r.UnreadByte()
	}
}

// readLine reads up to and without the next '\n' (and a '\r' before it). A
// line longer than limit is consumed and reported by tooLong.
func (f *frameReader) readLine(limit int64) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := f.r.ReadSlice('\n')
		if !tooLong {
			if int64(len(buf)+len(chunk)) > limit+2 { // +2: the "\r\n"
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (len(buf) > 0 || tooLong):
			return trimEOL(buf), tooLong, nil
		case err != nil:
			return nil, false, err
		}
		return trimEOL(buf), tooLong, nil
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func (f *frameReader) nextLine() ([]byte, error) {
	for {
		line, tooLong, err := f.readLine(f.max)
		if err != nil {
			return nil, err
		}
		if tooLong {
			return nil, &frameError{protocol.Errorf(protocol.ErrLimit,
				"message exceeds the server's limit of %d bytes; it was skipped", f.max).With("limit_bytes", f.max)}
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}

func (f *frameReader) nextHeaders() ([]byte, error) {
	length := int64(-1)
	seen := false
	for {
		line, tooLong, err := f.readLine(maxHeaderLine)
		if err != nil {
			if err == io.EOF && seen {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if tooLong {
			return nil, &frameError{protocol.Errorf(protocol.ErrParse, "header line longer than %d bytes", maxHeaderLine)}
		}
		if len(line) == 0 {
			if !seen {
				continue // blank lines between messages
			}
			break
		}
		seen = true
		name, value, ok := strings.Cut(string(line), ":")
		if !ok {
			return nil, &frameError{protocol.Errorf(protocol.ErrParse,
				"malformed header line %q: want \"Name: value\" (Content-Length framing)", clipText(line))}
		}
		if strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			if err != nil || n < 0 {
				return nil, &frameError{protocol.Errorf(protocol.ErrParse,
					"Content-Length: want a byte count; got %q", strings.TrimSpace(value))}
			}
			length = n
		}
	}
	if length < 0 {
		return nil, &frameError{protocol.Errorf(protocol.ErrParse, "missing Content-Length header")}
	}
	if length > f.max {
		if _, err := io.CopyN(io.Discard, f.r, length); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, &frameError{protocol.Errorf(protocol.ErrLimit,
			"message of %d bytes exceeds the server's limit of %d bytes; it was skipped", length, f.max).With("limit_bytes", f.max)}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(f.r, body); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	return body, nil
}

// writeFrame writes one message in the given framing (lines when unknown).
func writeFrame(w io.Writer, mode framing, msg []byte) error {
	if mode == framingHeaders {
		b := make([]byte, 0, len(msg)+32)
		b = fmt.Appendf(b, "Content-Length: %d\r\n\r\n", len(msg))
		b = append(b, msg...)
		_, err := w.Write(b)
		return err
	}
	b := make([]byte, 0, len(msg)+1)
	b = append(b, msg...)
	b = append(b, '\n')
	_, err := w.Write(b)
	return err
}

func clipText(b []byte) string {
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}
