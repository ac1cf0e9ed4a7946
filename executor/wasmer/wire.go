//go:build wasmer

package wasmer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The parent and a worker exchange frames over two pipes: a 4-byte
// little-endian length, then that many bytes: a message type and its
// payload. Payloads are flat sequences of fixed-size integers and
// length-prefixed byte strings, written by enc and read by dec.
//
// The conversation is strictly one request at a time: the parent sends a
// request and reads frames until its reply (msgCompiled, msgLoaded, or, for
// msgRun, the run's events ended by evDone). msgDrop has no reply.

// Message types.
const (
	// parent -> worker
	msgInit    byte = 1 // initConfig
	msgCompile byte = 2 // compileRequest
	msgLoad    byte = 3 // loadRequest
	msgDrop    byte = 4 // key: forget a loaded module
	msgRun     byte = 5 // runRequest

	// worker -> parent
	msgHello    byte = 20 // helloReply
	msgCompiled byte = 21 // compiledReply
	msgLoaded   byte = 22 // loadedReply

	// events of a run, worker -> parent
	evOutput   byte = 30 // bytes given to fabric.output_write
	evError    byte = 31 // bytes given to fabric.error_write
	evLog      byte = 32 // level, message
	evKPI      byte = 33 // name, value
	evProgress byte = 34 // permille
	evStdout   byte = 35 // bytes written to fd 1
	evStderr   byte = 36 // bytes written to fd 2
	evDone     byte = 37 // runDone
	evMemory   byte = 38 // the linear memory's size in pages, when it changed
)

// maxFrame bounds a frame; a compiled artifact is the largest.
const maxFrame = 1 << 30

// protocolVersion is checked at the handshake, so that a worker binary of
// another build is refused instead of misread.
const protocolVersion = 1

var errFrameTooLarge = errors.New("frame too large")

// writeFrame writes one frame of type t to w (not flushed).
func writeFrame(w *bufio.Writer, t byte, payload []byte) error {
	if len(payload)+1 > maxFrame {
		return errFrameTooLarge
	}
	var hdr [5]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(len(payload)+1))
	hdr[4] = t
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame; the payload is a new slice.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return 0, nil, fmt.Errorf("frame length %d: want 1..%d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// enc builds a payload.
type enc struct{ b []byte }

func (e *enc) u8(v byte) *enc { e.b = append(e.b, v); return e }
func (e *enc) bool(v bool) *enc {
	if v {
		return e.u8(1)
	}
	return e.u8(0)
}
func (e *enc) u32(v uint32) *enc { e.b = binary.LittleEndian.AppendUint32(e.b, v); return e }
func (e *enc) u64(v uint64) *enc { e.b = binary.LittleEndian.AppendUint64(e.b, v); return e }
func (e *enc) i64(v int64) *enc  { return e.u64(uint64(v)) }
func (e *enc) f64(v float64) *enc {
	return e.u64(math.Float64bits(v))
}
func (e *enc) bytes(v []byte) *enc { e.u32(uint32(len(v))); e.b = append(e.b, v...); return e }
func (e *enc) str(v string) *enc   { e.u32(uint32(len(v))); e.b = append(e.b, v...); return e }

// dec reads a payload; the first error sticks and later reads return zeros.
type dec struct {
	b   []byte
	err error
}

var errShortPayload = errors.New("payload too short")

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShortPayload
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *dec) bool() bool { return d.u8() != 0 }

func (d *dec) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *dec) i64() int64   { return int64(d.u64()) }
func (d *dec) f64() float64 { return math.Float64frombits(d.u64()) }

func (d *dec) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	return d.take(int(n))
}

func (d *dec) str() string { return string(d.bytes()) }

// done reports the first error, or one for bytes left over.
func (d *dec) done() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes left over in the payload", len(d.b))
	}
	return d.err
}

// initConfig is the first frame a worker reads.
type initConfig struct {
	Version    uint32
	DataLimit  uint64 // RLIMIT_DATA for the worker; 0 leaves it
	StackBytes uint64 // native stack of the thread that runs a guest
	Compiler   string // CompilerCranelift or CompilerSinglepass
	TestHooks  bool   // honour runRequest.Crash (tests only)
}

func (c *initConfig) encode() []byte {
	e := &enc{}
	e.u32(c.Version).u64(c.DataLimit).u64(c.StackBytes).str(c.Compiler).bool(c.TestHooks)
	return e.b
}

func (c *initConfig) decode(b []byte) error {
	d := &dec{b: b}
	c.Version, c.DataLimit, c.StackBytes, c.Compiler, c.TestHooks = d.u32(), d.u64(), d.u64(), d.str(), d.bool()
	return d.done()
}

// helloReply answers msgInit.
type helloReply struct {
	Version  uint32
	PID      int64
	Metering bool   // wasmer's metering middleware is available
	Err      string // the worker cannot serve (then it exits)
}

func (h *helloReply) encode() []byte {
	e := &enc{}
	e.u32(h.Version).i64(h.PID).bool(h.Metering).str(h.Err)
	return e.b
}

func (h *helloReply) decode(b []byte) error {
	d := &dec{b: b}
	h.Version, h.PID, h.Metering, h.Err = d.u32(), d.i64(), d.bool(), d.str()
	return d.done()
}

// compileRequest asks a worker to compile an (instrumented) module, keep it
// under Key and return its serialized artifact if WantArtifact. Validate,
// if not empty, is the module as the user sent it, which wasmer validates
// first: instrumenting must never turn an invalid module into a valid one.
type compileRequest struct {
	Key          string
	Metered      bool
	WantArtifact bool
	Wasm         []byte
	Validate     []byte
}

func (c *compileRequest) encode() []byte {
	e := &enc{b: make([]byte, 0, len(c.Wasm)+len(c.Validate)+len(c.Key)+16)}
	e.str(c.Key).bool(c.Metered).bool(c.WantArtifact).bytes(c.Wasm).bytes(c.Validate)
	return e.b
}

func (c *compileRequest) decode(b []byte) error {
	d := &dec{b: b}
	c.Key, c.Metered, c.WantArtifact, c.Wasm, c.Validate = d.str(), d.bool(), d.bool(), d.bytes(), d.bytes()
	return d.done()
}

// compiledReply answers msgCompile.
type compiledReply struct {
	Err      string // the compiler's refusal; empty on success
	Artifact []byte
}

func (c *compiledReply) encode() []byte {
	e := &enc{b: make([]byte, 0, len(c.Artifact)+len(c.Err)+8)}
	e.str(c.Err).bytes(c.Artifact)
	return e.b
}

func (c *compiledReply) decode(b []byte) error {
	d := &dec{b: b}
	c.Err, c.Artifact = d.str(), d.bytes()
	return d.done()
}

// loadRequest hands a worker a compiled artifact to keep under Key, after
// validating Validate (the module as sent) if it is not empty.
type loadRequest struct {
	Key      string
	Metered  bool
	Artifact []byte
	Validate []byte
}

func (l *loadRequest) encode() []byte {
	e := &enc{b: make([]byte, 0, len(l.Artifact)+len(l.Validate)+len(l.Key)+16)}
	e.str(l.Key).bool(l.Metered).bytes(l.Artifact).bytes(l.Validate)
	return e.b
}

func (l *loadRequest) decode(b []byte) error {
	d := &dec{b: b}
	l.Key, l.Metered, l.Artifact, l.Validate = d.str(), d.bool(), d.bytes(), d.bytes()
	return d.done()
}

// loadedReply answers msgLoad: Invalid is wasmer's refusal of the module as
// sent, Err a failure to load the artifact; both empty on success.
type loadedReply struct {
	Invalid string
	Err     string
}

func (l *loadedReply) encode() []byte {
	e := &enc{}
	e.str(l.Invalid).str(l.Err)
	return e.b
}

func (l *loadedReply) decode(b []byte) error {
	d := &dec{b: b}
	l.Invalid, l.Err = d.str(), d.str()
	return d.done()
}

// Crash hooks of runRequest (tests only; see initConfig.TestHooks).
const (
	crashNone   byte = 0
	crashCgo    byte = 1 // a SIGSEGV in C code when the guest reports progress
	crashHostFn byte = 2 // a Go panic in a host function
)

// runRequest runs one task in a module the worker holds under Key.
type runRequest struct {
	Key         string
	Metered     bool
	ABI         string
	Entry       string
	Initialize  bool // run _initialize before the entry
	HasStart    bool // call exportStart before anything
	HasMemory   bool
	GrowGuarded bool
	Args        []string
	Clock       bool
	Random      bool
	Input       []byte
	OutputLimit int64
	LogLimit    int64
	QuotaPages  uint64
	Fuel        uint64
	Seed        int64
	Crash       byte
}

func (q *runRequest) encode() []byte {
	e := &enc{b: make([]byte, 0, len(q.Input)+128)}
	e.str(q.Key).bool(q.Metered).str(q.ABI).str(q.Entry).bool(q.Initialize).bool(q.HasStart).
		bool(q.HasMemory).bool(q.GrowGuarded)
	e.u32(uint32(len(q.Args)))
	for _, a := range q.Args {
		e.str(a)
	}
	e.bool(q.Clock).bool(q.Random).bytes(q.Input).i64(q.OutputLimit).i64(q.LogLimit).
		u64(q.QuotaPages).u64(q.Fuel).i64(q.Seed).u8(q.Crash)
	return e.b
}

func (q *runRequest) decode(b []byte) error {
	d := &dec{b: b}
	q.Key, q.Metered, q.ABI, q.Entry = d.str(), d.bool(), d.str(), d.str()
	q.Initialize, q.HasStart, q.HasMemory, q.GrowGuarded = d.bool(), d.bool(), d.bool(), d.bool()
	n := d.u32()
	if d.err == nil && int(n) > len(d.b)/4 {
		d.err = errShortPayload
	}
	q.Args = nil
	for i := uint32(0); i < n && d.err == nil; i++ {
		q.Args = append(q.Args, d.str())
	}
	q.Clock, q.Random, q.Input = d.bool(), d.bool(), d.bytes()
	q.OutputLimit, q.LogLimit, q.QuotaPages, q.Fuel, q.Seed = d.i64(), d.i64(), d.u64(), d.u64(), d.i64()
	q.Crash = d.u8()
	return d.done()
}

// How a run ended (runDone.End).
const (
	endNormal   byte = 0 // the entry returned (wasi-command) or proc_exit(0)
	endReturned byte = 1 // a fabric-v1 entry returned Return
	endExit     byte = 2 // proc_exit with a non-zero ExitStatus
	endError    byte = 3 // Code and Message say why
)

// runDone ends a run's events.
type runDone struct {
	End        byte
	Return     int32
	ExitStatus uint32
	Code       string
	Message    string
	// Stop is the reason the host stopped the guest (RunState.Stopped), if it
	// did: output_limit, a bad pointer, a host panic.
	StopCode, StopMessage string
	MemoryRefused         bool
	CPUNanos              uint64
	PeakBytes             uint64
	Metered               bool
	FuelConsumed          uint64
}

func (r *runDone) encode() []byte {
	e := &enc{}
	e.u8(r.End).u32(uint32(r.Return)).u32(r.ExitStatus).str(r.Code).str(r.Message).
		str(r.StopCode).str(r.StopMessage).bool(r.MemoryRefused).u64(r.CPUNanos).u64(r.PeakBytes).
		bool(r.Metered).u64(r.FuelConsumed)
	return e.b
}

func (r *runDone) decode(b []byte) error {
	d := &dec{b: b}
	r.End, r.Return, r.ExitStatus = d.u8(), int32(d.u32()), d.u32()
	r.Code, r.Message, r.StopCode, r.StopMessage = d.str(), d.str(), d.str(), d.str()
	r.MemoryRefused, r.CPUNanos, r.PeakBytes = d.bool(), d.u64(), d.u64()
	r.Metered, r.FuelConsumed = d.bool(), d.u64()
	return d.done()
}
