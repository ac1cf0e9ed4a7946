//go:build wasmer

package wasmer

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

// roundTrip encodes and decodes every message with values in every field.
func TestWireRoundTrip(t *testing.T) {
	type codec interface {
		encode() []byte
		decode([]byte) error
	}
	for _, c := range []struct{ in, out codec }{
		{&initConfig{Version: 1, DataLimit: 2, StackBytes: 3, Compiler: "c", TestHooks: true}, &initConfig{}},
		{&helloReply{Version: 1, PID: -2, Metering: true, Err: "e"}, &helloReply{}},
		{&compileRequest{Key: "k", Metered: true, WantArtifact: true, Wasm: []byte{1, 2}, Validate: []byte{3}}, &compileRequest{}},
		{&compiledReply{Err: "e", Artifact: []byte{9}}, &compiledReply{}},
		{&loadRequest{Key: "k", Metered: true, Artifact: []byte{1}, Validate: []byte{2}}, &loadRequest{}},
		{&loadedReply{Invalid: "i", Err: "e"}, &loadedReply{}},
		{&runRequest{Key: "k", Metered: true, ABI: "a", Entry: "e", Initialize: true, HasStart: true, HasMemory: true,
			GrowGuarded: true, Args: []string{"x", ""}, Clock: true, Random: true, Input: []byte("in"), OutputLimit: -1,
			LogLimit: 5, QuotaPages: 6, Fuel: 7, Seed: -8, Crash: crashHostFn}, &runRequest{}},
		{&runDone{End: endExit, Return: -3, ExitStatus: 4, Code: "c", Message: "m", StopCode: "s", StopMessage: "sm",
			MemoryRefused: true, CPUNanos: 5, PeakBytes: 6, Metered: true, FuelConsumed: 7}, &runDone{}},
	} {
		b := c.in.encode()
		if err := c.out.decode(b); err != nil {
			t.Fatalf("%T: %v", c.in, err)
		}
		if !reflect.DeepEqual(c.in, c.out) {
			t.Errorf("%T: decoded %+v; want %+v", c.in, c.out, c.in)
		}
		if len(b) > 0 {
			if err := c.out.decode(b[:len(b)-1]); err == nil {
				t.Errorf("%T: a truncated payload decoded", c.in)
			}
		}
		if err := c.out.decode(append(b, 0)); err == nil {
			t.Errorf("%T: a payload with a byte left over decoded", c.in)
		}
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	for i, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 100000)} {
		if err := writeFrame(w, byte(i+1), p); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	r := bufio.NewReader(&buf)
	for i, want := range []int{0, 1, 100000} {
		typ, p, err := readFrame(r)
		if err != nil || typ != byte(i+1) || len(p) != want {
			t.Fatalf("frame %d: type %d, %d bytes, %v", i, typ, len(p), err)
		}
	}
	for _, bad := range [][]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {5, 0, 0, 0, 1}} {
		if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(bad))); err == nil {
			t.Errorf("readFrame(%x): no error", bad)
		}
	}
}

// FuzzDecode: no payload makes a decoder panic or allocate past its input.
func FuzzDecode(f *testing.F) {
	f.Add((&runRequest{Key: "k", Args: []string{"a"}, Input: []byte("x")}).encode())
	f.Add((&runDone{Code: "trap", Message: "m"}).encode())
	f.Add((&compileRequest{Key: "k", Wasm: []byte{0, 1}}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = (&initConfig{}).decode(b)
		_ = (&helloReply{}).decode(b)
		_ = (&compileRequest{}).decode(b)
		_ = (&compiledReply{}).decode(b)
		_ = (&loadRequest{}).decode(b)
		_ = (&loadedReply{}).decode(b)
		_ = (&runRequest{}).decode(b)
		_ = (&runDone{}).decode(b)
		_, _, _ = readFrame(bufio.NewReader(bytes.NewReader(b)))
	})
}
