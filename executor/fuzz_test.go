package executor_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/executor/enginetest"
	"github.com/chimera-fabric/fabric/protocol"
)

// addAgentSeeds adds every test agent's bytes to f's corpus.
func addAgentSeeds(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(enginetest.AgentsDir(), "*.wasm"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no test agents: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f"))
	f.Add([]byte("not wasm at all"))
}

var knownCodes = map[string]bool{
	protocol.CodeTrap: true, protocol.CodeTimeout: true, protocol.CodeMemoryLimit: true,
	protocol.CodeOutputLimit: true, protocol.CodeExitStatus: true, protocol.CodeAgentError: true,
	protocol.CodeCancelled: true,
}

// FuzzCompile feeds agent.register's bytes to Compile: it never panics and
// either succeeds or fails with ErrInvalidModule; a module it accepts runs
// to an outcome without an internal error.
func FuzzCompile(f *testing.F) {
	addAgentSeeds(f)
	e := newWazero(f, executor.WazeroOptions{MaxMemoryBytes: 64 << 20})
	f.Cleanup(func() { _ = e.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: "fuzz", Wasm: wasm})
		if err != nil {
			if !errors.Is(err, protocol.ErrInvalidModule) {
				t.Fatalf("Compile: %v; want ErrInvalidModule or success", err)
			}
			return
		}
		defer m.Close(context.Background())
		out := m.Run(context.Background(), executor.Invocation{
			Input:            []byte("fuzz"),
			Timeout:          100 * time.Millisecond,
			MemoryLimitBytes: 16 << 20,
			OutputLimitBytes: 1 << 16,
			LogLimitBytes:    1 << 16,
		})
		if out.Err != nil && !knownCodes[out.Err.Code] {
			t.Fatalf("an accepted module ran to %s: %s", out.Err.Code, out.Err.Message)
		}
	})
}

// FuzzHostCalls calls each fabric function through the hostabuse agent
// with arbitrary pointers and lengths: the host never reads or writes
// outside the guest's memory (the run either works as the ABI says or traps
// with an out-of-bounds message), and never fails internally.
func FuzzHostCalls(f *testing.F) {
	const page = 65536
	for _, s := range [][4]uint32{
		{0, 0, 16, 0}, {0, page - 1, 1, 0}, {0, page, 1, 0}, {0, 0xffffffff, 2, 0},
		{1, 0, 4, 0}, {2, 16, 100, 2}, {2, 0, 0x80000000, 0}, {3, 0, 4, 7},
		{4, page - 16, 0, 0}, {4, page - 15, 0, 0}, {5, 0x7fffffff, 0, 0}, {6, 0, 0, 0},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	e := newWazero(f, executor.WazeroOptions{})
	f.Cleanup(func() { _ = e.Close(context.Background()) })
	m, err := e.Compile(context.Background(), executor.ModuleSpec{Name: "hostabuse", Wasm: enginetest.Agent(f, "hostabuse")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op, a, b, c uint32) {
		var in [16]byte
		binary.LittleEndian.PutUint32(in[0:], op)
		binary.LittleEndian.PutUint32(in[4:], a)
		binary.LittleEndian.PutUint32(in[8:], b)
		binary.LittleEndian.PutUint32(in[12:], c)
		out := m.Run(context.Background(), executor.Invocation{
			Input: in[:], Timeout: 10 * time.Second, OutputLimitBytes: 1 << 20, LogLimitBytes: 1 << 20,
		})
		// The guest's memory: its input at 0, zeros after.
		mem := make([]byte, page)
		copy(mem, in[:])
		inBounds := func(ptr, n uint32) bool { return uint64(ptr)+uint64(n) <= page }
		var fits bool
		switch op {
		case 0, 1, 2, 3:
			fits = inBounds(a, b)
		case 4:
			fits = inBounds(a, 16)
		default:
			fits = true
		}
		if !fits {
			if out.Err == nil || out.Err.Code != protocol.CodeTrap || !strings.Contains(out.Err.Message, "out of bounds") {
				t.Fatalf("op %d (%d, %d): %+v; want an out-of-bounds trap", op, a, b, out.Err)
			}
			return
		}
		switch {
		case op == 0:
			if out.Err != nil || !bytes.Equal(out.Output, mem[a:a+b]) {
				t.Fatalf("output_write(%d, %d): %+v, %d bytes; want the guest's bytes", a, b, out.Err, len(out.Output))
			}
		case op == 1:
			if out.Err == nil || out.Err.Code != protocol.CodeAgentError {
				t.Fatalf("error_write(%d, %d): %+v; want agent_error", a, b, out.Err)
			}
		case out.Err != nil:
			t.Fatalf("op %d (%d, %d, %d): %s: %s; want success", op, a, b, c, out.Err.Code, out.Err.Message)
		}
	})
}

// FuzzGuestRange checks the bounds check under every host function.
func FuzzGuestRange(f *testing.F) {
	f.Add(uint32(65536), uint32(0), uint32(65536))
	f.Add(uint32(65536), uint32(65536), uint32(0))
	f.Add(uint32(0), uint32(0), uint32(0))
	f.Add(uint32(16), uint32(0xffffffff), uint32(1))
	f.Add(uint32(16), uint32(1), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, size, ptr, n uint32) {
		size %= 1 << 20
		mem := make([]byte, size)
		b, ok := executor.GuestRange(mem, ptr, n)
		want := uint64(ptr)+uint64(n) <= uint64(size)
		if ok != want {
			t.Fatalf("GuestRange(%d bytes, %d, %d) = %v; want %v", size, ptr, n, ok, want)
		}
		if ok && (len(b) != int(n) || cap(b) != int(n) || (n > 0 && &b[0] != &mem[ptr])) {
			t.Fatalf("GuestRange(%d bytes, %d, %d): len %d cap %d; want the exact range", size, ptr, n, len(b), cap(b))
		}
	})
}
