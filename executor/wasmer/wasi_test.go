//go:build wasmer

package wasmer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// TestWASISignatures: the engine accepts exactly the WASI imports the wazero
// engine accepts, with the same types.
func TestWASISignatures(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	want := map[string]executor.Signature{}
	for name, def := range rt.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions() {
		var s executor.Signature
		for _, p := range def.ParamTypes() {
			s.Params = append(s.Params, executor.ValType(p))
		}
		for _, r := range def.ResultTypes() {
			s.Results = append(s.Results, executor.ValType(r))
		}
		want[name] = s
	}
	got := wasiSignatures()
	if len(got) != len(want) {
		t.Errorf("%d WASI functions; wazero has %d", len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: missing", name)
		} else if !g.Equal(w) {
			t.Errorf("%s: type %s; wazero's is %s", name, g, w)
		}
	}
}

// wasiCall is one record of the wasicalls agent's input.
type wasiCall struct {
	fn   uint32
	args [9]uint64
	poke []byte // fn 255: bytes to copy to args[0]
}

func encodeCalls(calls []wasiCall) []byte {
	var b []byte
	for _, c := range calls {
		b = binary.LittleEndian.AppendUint32(b, c.fn)
		if c.fn == 255 {
			b = binary.LittleEndian.AppendUint32(b, uint32(c.args[0]))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(c.poke)))
			b = append(b, c.poke...)
			continue
		}
		for _, a := range c.args {
			b = binary.LittleEndian.AppendUint64(b, a)
		}
	}
	return b
}

func fnIndex(t testing.TB, name string) uint32 {
	for i, f := range wasiFunctions {
		if f.name == name {
			return uint32(i)
		}
	}
	t.Fatalf("no WASI function %s", name)
	return 0
}

// randomCalls makes a script of n calls with arguments drawn from the values
// where implementations tend to differ: the edges of memory, of the stdio
// descriptors, of counts that overflow when multiplied.
func randomCalls(rng *rand.Rand, n int) []wasiCall {
	ptrs := []uint64{0, 1, 8, 16, 24, 100, 512, 1000, 4096, 30000, 36800, 65472, 65528, 65532, 65535, 65536,
		0x7fffffff, 0x80000000, 0xffffffff}
	small := []uint64{0, 1, 2, 3, 4, 5, 6, 8, 16, 24, 0x20000000, 0x40000000, 0xffffffff}
	wide := []uint64{0, 1, 2, 1 << 40, 1<<63 - 1, 1 << 63, ^uint64(0), 3600e9}
	paths := []string{"", ".", "..", "a", "etc/passwd", "/etc/passwd", "a/../../b", "a//b/", "./x", "x/", "\x00"}
	var calls []wasiCall
	for len(calls) < n {
		switch rng.IntN(5) {
		case 0: // lay out iovecs, paths, subscriptions or noise
			off := uint64(rng.IntN(36000))
			var poke []byte
			switch rng.IntN(4) {
			case 0:
				for i := 0; i < 1+rng.IntN(3); i++ {
					poke = binary.LittleEndian.AppendUint32(poke, uint32(rng.IntN(36000)))
					poke = binary.LittleEndian.AppendUint32(poke, uint32(rng.IntN(64)))
				}
			case 1:
				poke = []byte(paths[rng.IntN(len(paths))])
			case 2:
				for i := 0; i < 1+rng.IntN(3); i++ {
					sub := make([]byte, 48)
					binary.LittleEndian.PutUint64(sub, rng.Uint64())
					sub[8] = byte(rng.IntN(4))
					binary.LittleEndian.PutUint32(sub[16:], uint32(rng.IntN(5)))
					binary.LittleEndian.PutUint64(sub[24:], wide[rng.IntN(len(wide))])
					binary.LittleEndian.PutUint16(sub[40:], uint16(rng.IntN(3)))
					poke = append(poke, sub...)
				}
			default:
				poke = make([]byte, rng.IntN(64))
				for i := range poke {
					poke[i] = byte(rng.Uint32())
				}
			}
			calls = append(calls, wasiCall{fn: 255, args: [9]uint64{off}, poke: poke})
		default:
			fn := uint32(rng.IntN(len(wasiFunctions)))
			if wasiFunctions[fn].name == "proc_exit" && rng.IntN(4) != 0 {
				continue // rarely: it ends the run
			}
			var c wasiCall
			c.fn = fn
			for i, p := range wasiFunctions[fn].params {
				switch {
				case p == i64:
					c.args[i] = wide[rng.IntN(len(wide))]
				case i == 0 || rng.IntN(3) == 0:
					c.args[i] = small[rng.IntN(len(small))]
				default:
					c.args[i] = ptrs[rng.IntN(len(ptrs))]
				}
			}
			calls = append(calls, c)
		}
	}
	return calls
}

// sameOutcome fails unless two engines' outcomes agree: the code (and an
// exit_status's message, built the same way by both), the output, the logs,
// the KPIs.
func sameOutcome(t testing.TB, what string, got, want executor.Outcome) {
	t.Helper()
	switch {
	case (got.Err == nil) != (want.Err == nil):
		t.Errorf("%s: wasmer %v; wazero %v", what, got.Err, want.Err)
		return
	case got.Err != nil && got.Err.Code != want.Err.Code:
		t.Errorf("%s: wasmer %s: %s; wazero %s: %s", what, got.Err.Code, got.Err.Message, want.Err.Code, want.Err.Message)
		return
	case got.Err != nil && got.Err.Code == protocol.CodeExitStatus && got.Err.Message != want.Err.Message:
		t.Errorf("%s: wasmer's message %q; wazero's %q", what, got.Err.Message, want.Err.Message)
	case got.Err != nil && got.Err.Code == protocol.CodeAgentError && got.Err.Message != want.Err.Message:
		t.Errorf("%s: wasmer's message %q; wazero's %q", what, got.Err.Message, want.Err.Message)
	}
	if !bytes.Equal(got.Output, want.Output) {
		i := 0
		for i < len(got.Output) && i < len(want.Output) && got.Output[i] == want.Output[i] {
			i++
		}
		t.Errorf("%s: outputs of %d and %d bytes differ from byte %d", what, len(got.Output), len(want.Output), i)
	}
	if g, w := logText(got.Logs), logText(want.Logs); g != w {
		t.Errorf("%s: logs differ:\nwasmer:\n%.2000s\nwazero:\n%.2000s", what, g, w)
	}
	if got.LogsTruncated != want.LogsTruncated {
		t.Errorf("%s: logs truncated %v; wazero %v", what, got.LogsTruncated, want.LogsTruncated)
	}
	if !reflect.DeepEqual(got.KPIs, want.KPIs) {
		t.Errorf("%s: kpis %v; wazero %v", what, got.KPIs, want.KPIs)
	}
}

func logText(logs []protocol.LogLine) string {
	var b bytes.Buffer
	for _, l := range logs {
		fmt.Fprintf(&b, "%s %q\n", l.Level, l.Msg)
	}
	return b.String()
}

// pair is the same module compiled by both engines.
type pair struct{ wasmer, wazero executor.Module }

func newWazero(t testing.TB) *executor.Wazero {
	t.Helper()
	z, err := executor.NewWazero(executor.WazeroOptions{MaxMemoryBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = z.Close(context.Background()) })
	return z
}

func compileBoth(t testing.TB, e *Engine, z *executor.Wazero, spec executor.ModuleSpec) pair {
	t.Helper()
	ctx := context.Background()
	a, err := e.Compile(ctx, spec)
	if err != nil {
		t.Fatalf("wasmer Compile(%s): %v", spec.Name, err)
	}
	b, err := z.Compile(ctx, spec)
	if err != nil {
		t.Fatalf("wazero Compile(%s): %v", spec.Name, err)
	}
	t.Cleanup(func() {
		_ = a.Close(ctx)
		_ = b.Close(ctx)
	})
	return pair{a, b}
}

func (p pair) run(in executor.Invocation) (got, want executor.Outcome) {
	ctx := context.Background()
	return p.wasmer.Run(ctx, in), p.wazero.Run(ctx, in)
}

func testInvocation(input []byte) executor.Invocation {
	return executor.Invocation{
		TaskID:           "t",
		Input:            input,
		Timeout:          20 * time.Second,
		MemoryLimitBytes: 64 << 20,
		OutputLimitBytes: 1 << 20,
		LogLimitBytes:    1 << 20,
		Seed:             42,
	}
}

// TestWASILikeWazero runs the same WASI calls on both engines and compares
// every errno and every byte of memory they leave.
func TestWASILikeWazero(t *testing.T) {
	e := newEngine(t, Options{})
	z := newWazero(t)
	wasm, err := os.ReadFile(filepath.Join("testdata", "wasicalls.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	p := compileBoth(t, e, z, executor.ModuleSpec{Name: "wasicalls", Wasm: wasm})

	call := func(name string, args ...uint64) wasiCall {
		c := wasiCall{fn: fnIndex(t, name)}
		copy(c.args[:], args)
		return c
	}
	poke := func(off uint64, b []byte) wasiCall { return wasiCall{fn: 255, args: [9]uint64{off}, poke: b} }
	iov := func(pairs ...uint32) []byte {
		var b []byte
		for _, v := range pairs {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
		return b
	}
	scripts := map[string][]wasiCall{
		"stdio": {
			call("fd_fdstat_get", 0, 100), call("fd_fdstat_get", 1, 200), call("fd_filestat_get", 2, 300),
			call("fd_prestat_get", 0, 400), call("fd_prestat_get", 3, 400), call("fd_prestat_dir_name", 1, 500, 0),
			call("fd_prestat_dir_name", 1, 500, 1), call("fd_seek", 0, 0, 0, 600), call("fd_tell", 1, 600),
			call("fd_renumber", 1, 7), call("fd_renumber", 9, 7), call("fd_readdir", 0, 700, 23, 0, 800),
			call("fd_readdir", 0, 700, 24, 0, 800), call("fd_advise", 1, 0, 0, 6), call("fd_allocate", 2, 0, 0),
			call("fd_allocate", 2, 1, 1), call("fd_fdstat_set_flags", 1, 4), call("fd_fdstat_set_flags", 1, 2),
			call("fd_sync", 2), call("fd_datasync", 5), call("fd_filestat_set_size", 1, 10),
		},
		"read and write": {
			poke(1000, iov(2000, 5, 2100, 0, 2200, 100)), poke(2000, []byte("hello\n")),
			call("fd_read", 0, 1000, 3, 1100), call("fd_read", 0, 1000, 3, 1104), call("fd_read", 1, 1000, 1, 1108),
			call("fd_write", 1, 1000, 1, 1112), call("fd_write", 2, 1000, 2, 1116), call("fd_write", 0, 1000, 1, 1120),
			call("fd_pwrite", 1, 1000, 1, 0, 1124), call("fd_pread", 0, 1000, 1, 0, 1128),
			call("fd_write", 1, 1000, 0x20000001, 1132), call("fd_write", 1, 65530, 1, 1136),
			call("fd_close", 1), call("fd_write", 1, 1000, 1, 1140), call("fd_close", 1), call("fd_fdstat_get", 1, 100),
		},
		"paths": {
			poke(3000, []byte("etc/passwd")), poke(3100, []byte("/etc/passwd")), poke(3200, []byte("a/../../b")),
			call("path_open", 3, 0, 3000, 10, 0, 0, 0, 0, 3300), call("path_open", 0, 0, 3000, 10, 0, 0, 0, 0, 3300),
			call("path_open", 0, 0, 3100, 11, 0, 0, 0, 0, 3300), call("path_open", 0, 0, 3200, 9, 0, 0, 0, 0, 3300),
			call("path_open", 1, 0, 65530, 10, 0, 0, 0, 0, 3300), call("path_readlink", 0, 3000, 0, 3400, 10, 3500),
			call("path_symlink", 3000, 10, 1, 3100, 11), call("path_filestat_set_times", 0, 0, 3000, 10, 0, 0, 3),
			call("path_filestat_set_times", 0, 0, 3000, 10, 0, 0, 2), call("path_rename", 2, 3000, 10, 2, 3100, 11),
			call("path_link", 9, 0, 3000, 10, 2, 3100, 11), call("path_create_directory", 3, 3000, 10),
			call("path_unlink_file", 1, 3200, 9), call("path_remove_directory", 0, 3100, 0),
		},
		"clock args random": {
			call("clock_time_get", 0, 1, 100), call("clock_time_get", 1, 1, 108), call("clock_time_get", 1, 1, 116),
			call("clock_time_get", 2, 1, 124), call("clock_res_get", 0, 132), call("clock_res_get", 1, 140),
			call("clock_res_get", 3, 148), call("args_sizes_get", 200, 204), call("args_get", 300, 400),
			call("environ_sizes_get", 500, 504), call("environ_get", 600, 700), call("args_get", 65534, 400),
			call("random_get", 800, 64), call("random_get", 65530, 64), call("sched_yield"), call("proc_raise", 9),
			call("sock_accept", 3, 0, 900), call("sock_recv", 0, 0, 0, 0, 0, 0), call("sock_send", 1, 0, 0, 1, 0),
			call("sock_send", 1, 0, 0, 0, 0), call("sock_shutdown", 2, 3),
		},
		"poll": {
			// A clock subscription (relative, 1 h), an fd_read on stdin, an
			// fd_write on stdout, an fd_read on a closed descriptor.
			poke(4000, func() []byte {
				b := make([]byte, 4*48)
				for i := range 4 {
					s := b[i*48:]
					binary.LittleEndian.PutUint64(s, uint64(0x1111*(i+1)))
					s[8] = []byte{0, 1, 2, 1}[i]
					binary.LittleEndian.PutUint32(s[16:], []uint32{1, 0, 1, 7}[i])
					if i == 0 {
						binary.LittleEndian.PutUint64(s[24:], 3600e9)
					}
				}
				return b
			}()),
			call("poll_oneoff", 4000, 5000, 4, 6000), call("poll_oneoff", 4048, 5200, 2, 6004),
			call("poll_oneoff", 4000, 5000, 0, 6008), call("poll_oneoff", 4000, 65500, 1, 6012),
			call("poll_oneoff", 4000, 5400, 0x10000000, 6016), call("fd_close", 0), call("poll_oneoff", 4048, 5600, 1, 6020),
		},
		"exit":               {call("fd_write", 2, 0, 0, 100), call("proc_exit", 3)},
		"set times on stdio": {call("fd_filestat_set_times", 1, 0, 0, 0)},
	}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		in := testInvocation(encodeCalls(scripts[name]))
		got, want := p.run(in)
		sameOutcome(t, name, got, want)
	}
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		in := testInvocation(encodeCalls(randomCalls(rng, 250)))
		got, want := p.run(in)
		sameOutcome(t, fmt.Sprintf("random script %d", seed), got, want)
	}
}
