//go:build wasmer

package wasmer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"

	"github.com/chimera-fabric/fabric/executor"
)

// This file is the guest's wasi_snapshot_preview1, written for the worker
// because wasmer-go's WASI cannot take stdin from memory, and so that a guest
// sees exactly what the wazero engine shows it: wazero's implementation
// (imports/wasi_snapshot_preview1 v1.12) with the file table the wazero engine
// configures, namely fd 0 reading the task's input, fd 1 and fd 2 writing to
// the run, no preopened directory, no socket. Every function below follows
// wazero's order of checks, so that even a probing guest gets the same errno
// in the same case (wasi_test.go compares the two engines call by call).

// WASI errno values (wasip1).
const (
	errnoSuccess     uint32 = 0
	errnoBadf        uint32 = 8
	errnoFault       uint32 = 21
	errnoInval       uint32 = 28
	errnoNametoolong uint32 = 37
	errnoNosys       uint32 = 52
	errnoNotdir      uint32 = 54
	errnoNotsup      uint32 = 58
	errnoPerm        uint32 = 63
)

// Rights and constants that a stdio descriptor reports.
const (
	filetypeBlockDevice = 1 // wazero's stdio files have fs.ModeDevice, not ModeCharDevice
	fileRightsBase      = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 |
		1<<21 | 1<<22 | 1<<23 | 1<<27
	fdflagDsync    = 1 << 1
	fdflagNonblock = 1 << 2
	fdflagRsync    = 1 << 3
	fdflagSync     = 1 << 4
	fstAtim        = 1 << 0
	fstAtimNow     = 1 << 1
	fstMtim        = 1 << 2
	fstMtimNow     = 1 << 3
)

// errWASIExit is returned by proc_exit: the guest must stop; wasiCtx.exited
// holds the status.
var errWASIExit = errors.New("proc_exit")

// errWASIPanic stands for a host call that would make wazero's WASI panic
// (fd_filestat_set_times on a stdio descriptor); the engine reports it as
// the wazero engine does, an internal error.
var errWASIPanic = errors.New("wasi: nil file system")

// wasiCtx is one run's WASI state.
type wasiCtx struct {
	mem      func() []byte // the guest's memory as it is now (nil: none)
	args     []string
	stdin    bytes.Reader
	closed   [3]bool // stdio descriptors the guest closed
	stdout   io.Writer
	stderr   io.Writer
	walltime func() int64 // nanoseconds since the epoch
	nanotime func() int64
	sleep    func(ns int64)
	rand     io.Reader

	exited     bool
	exitStatus uint32
}

// wasiFunc implements one function: params are the call's arguments as
// wazero sees them (i32 zero-extended, i64 as is); it returns the errno, or
// an error to stop the guest.
type wasiFunc func(w *wasiCtx, p []uint64) (uint32, error)

// wasiSig is a WASI function's type.
type wasiSig struct {
	name    string
	params  []executor.ValType
	noErrno bool // proc_exit returns nothing
	fn      wasiFunc
}

const (
	i32 = executor.I32
	i64 = executor.I64
)

func vt(ts ...executor.ValType) []executor.ValType { return ts }

// wasiFunctions are the functions of wasi_snapshot_preview1, in wazero's
// order with wazero's types.
var wasiFunctions = []wasiSig{
	{name: "args_get", params: vt(i32, i32), fn: argsGet},
	{name: "args_sizes_get", params: vt(i32, i32), fn: argsSizesGet},
	{name: "environ_get", params: vt(i32, i32), fn: environGet},
	{name: "environ_sizes_get", params: vt(i32, i32), fn: environSizesGet},
	{name: "clock_res_get", params: vt(i32, i32), fn: clockResGet},
	{name: "clock_time_get", params: vt(i32, i64, i32), fn: clockTimeGet},
	{name: "fd_advise", params: vt(i32, i64, i64, i32), fn: fdAdvise},
	{name: "fd_allocate", params: vt(i32, i64, i64), fn: fdAllocate},
	{name: "fd_close", params: vt(i32), fn: fdClose},
	{name: "fd_datasync", params: vt(i32), fn: fdSyncOK},
	{name: "fd_fdstat_get", params: vt(i32, i32), fn: fdFdstatGet},
	{name: "fd_fdstat_set_flags", params: vt(i32, i32), fn: fdFdstatSetFlags},
	{name: "fd_fdstat_set_rights", params: vt(i32, i64, i64), fn: nosys},
	{name: "fd_filestat_get", params: vt(i32, i32), fn: fdFilestatGet},
	{name: "fd_filestat_set_size", params: vt(i32, i64), fn: fdFilestatSetSize},
	{name: "fd_filestat_set_times", params: vt(i32, i64, i64, i32), fn: fdFilestatSetTimes},
	{name: "fd_pread", params: vt(i32, i32, i32, i64, i32), fn: fdPread},
	{name: "fd_prestat_get", params: vt(i32, i32), fn: fdPrestatGet},
	{name: "fd_prestat_dir_name", params: vt(i32, i32, i32), fn: fdPrestatDirName},
	{name: "fd_pwrite", params: vt(i32, i32, i32, i64, i32), fn: fdPwrite},
	{name: "fd_read", params: vt(i32, i32, i32, i32), fn: fdRead},
	{name: "fd_readdir", params: vt(i32, i32, i32, i64, i32), fn: fdReaddir},
	{name: "fd_renumber", params: vt(i32, i32), fn: fdRenumber},
	{name: "fd_seek", params: vt(i32, i64, i32, i32), fn: fdSeek},
	{name: "fd_sync", params: vt(i32), fn: fdSyncOK},
	{name: "fd_tell", params: vt(i32, i32), fn: fdTell},
	{name: "fd_write", params: vt(i32, i32, i32, i32), fn: fdWrite},
	{name: "path_create_directory", params: vt(i32, i32, i32), fn: pathAt3},
	{name: "path_filestat_get", params: vt(i32, i32, i32, i32, i32), fn: pathFilestatGet},
	{name: "path_filestat_set_times", params: vt(i32, i32, i32, i32, i64, i64, i32), fn: pathFilestatSetTimes},
	{name: "path_link", params: vt(i32, i32, i32, i32, i32, i32, i32), fn: pathLink},
	{name: "path_open", params: vt(i32, i32, i32, i32, i32, i64, i64, i32, i32), fn: pathOpen},
	{name: "path_readlink", params: vt(i32, i32, i32, i32, i32, i32), fn: pathReadlink},
	{name: "path_remove_directory", params: vt(i32, i32, i32), fn: pathAt3},
	{name: "path_rename", params: vt(i32, i32, i32, i32, i32, i32), fn: pathAt3},
	{name: "path_symlink", params: vt(i32, i32, i32, i32, i32), fn: pathSymlink},
	{name: "path_unlink_file", params: vt(i32, i32, i32), fn: pathAt3},
	{name: "poll_oneoff", params: vt(i32, i32, i32, i32), fn: pollOneoff},
	{name: "proc_exit", params: vt(i32), noErrno: true, fn: procExit},
	{name: "proc_raise", params: vt(i32), fn: nosys},
	{name: "sched_yield", params: nil, fn: ok},
	{name: "random_get", params: vt(i32, i32), fn: randomGet},
	{name: "sock_accept", params: vt(i32, i32, i32), fn: badf},
	{name: "sock_recv", params: vt(i32, i32, i32, i32, i32, i32), fn: badf},
	{name: "sock_send", params: vt(i32, i32, i32, i32, i32), fn: sockSend},
	{name: "sock_shutdown", params: vt(i32, i32), fn: badf},
}

// wasiSignatures are wasiFunctions' types, as executor.CheckModule wants.
func wasiSignatures() map[string]executor.Signature {
	m := make(map[string]executor.Signature, len(wasiFunctions))
	for _, f := range wasiFunctions {
		sig := executor.Signature{Params: f.params, Results: []executor.ValType{i32}}
		if f.noErrno {
			sig.Results = nil
		}
		m[f.name] = sig
	}
	return m
}

// Memory access with wazero's bounds rules: [off, off+n) must lie inside.

func (w *wasiCtx) read(off, n uint32) ([]byte, bool) {
	m := w.mem()
	if uint64(off)+uint64(n) > uint64(len(m)) {
		return nil, false
	}
	return m[off : off+n : off+n], true
}

func (w *wasiCtx) putU32(off, v uint32) bool {
	b, ok := w.read(off, 4)
	if ok {
		binary.LittleEndian.PutUint32(b, v)
	}
	return ok
}

func (w *wasiCtx) putU64(off uint32, v uint64) bool {
	b, ok := w.read(off, 8)
	if ok {
		binary.LittleEndian.PutUint64(b, v)
	}
	return ok
}

// open reports whether fd is an open descriptor: one of the stdio three the
// guest has not closed.
func (w *wasiCtx) open(fd int32) bool { return fd >= 0 && fd <= 2 && !w.closed[fd] }

func ok(*wasiCtx, []uint64) (uint32, error)    { return errnoSuccess, nil }
func nosys(*wasiCtx, []uint64) (uint32, error) { return errnoNosys, nil }
func badf(*wasiCtx, []uint64) (uint32, error)  { return errnoBadf, nil }

func argsGet(w *wasiCtx, p []uint64) (uint32, error) {
	return w.writeValues(w.args, uint32(p[0]), uint32(p[1])), nil
}

func argsSizesGet(w *wasiCtx, p []uint64) (uint32, error) {
	return w.writeSizes(w.args, uint32(p[0]), uint32(p[1])), nil
}

func environGet(w *wasiCtx, p []uint64) (uint32, error) {
	return w.writeValues(nil, uint32(p[0]), uint32(p[1])), nil
}

func environSizesGet(w *wasiCtx, p []uint64) (uint32, error) {
	return w.writeSizes(nil, uint32(p[0]), uint32(p[1])), nil
}

func valuesSize(values []string) uint32 {
	n := uint32(0)
	for _, v := range values {
		n += uint32(len(v)) + 1
	}
	return n
}

func (w *wasiCtx) writeSizes(values []string, countPtr, sizePtr uint32) uint32 {
	if !w.putU32(countPtr, uint32(len(values))) {
		return errnoFault
	}
	if !w.putU32(sizePtr, valuesSize(values)) {
		return errnoFault
	}
	return errnoSuccess
}

// writeValues is wazero's writeOffsetsAndNullTerminatedValues.
func (w *wasiCtx) writeValues(values []string, offsets, buf uint32) uint32 {
	offsetsBuf, ok := w.read(offsets, uint32(len(values)*4))
	if !ok {
		return errnoFault
	}
	bytesBuf, ok := w.read(buf, valuesSize(values))
	if !ok {
		return errnoFault
	}
	var oi, bi uint32
	for _, v := range values {
		binary.LittleEndian.PutUint32(offsetsBuf[oi:], buf+bi)
		oi += 4
		copy(bytesBuf[bi:], v)
		bi += uint32(len(v))
		bytesBuf[bi] = 0
		bi++
	}
	return errnoSuccess
}

func clockResGet(w *wasiCtx, p []uint64) (uint32, error) {
	var res uint64
	switch uint32(p[0]) {
	case 0:
		res = 1000 // wall clock: 1 µs, fake or real
	case 1:
		res = 1
	default:
		return errnoInval, nil
	}
	if !w.putU64(uint32(p[1]), res) {
		return errnoFault, nil
	}
	return errnoSuccess, nil
}

func clockTimeGet(w *wasiCtx, p []uint64) (uint32, error) {
	var v int64
	switch uint32(p[0]) {
	case 0:
		v = w.walltime()
	case 1:
		v = w.nanotime()
	default:
		return errnoInval, nil
	}
	if !w.putU64(uint32(p[2]), uint64(v)) {
		return errnoFault, nil
	}
	return errnoSuccess, nil
}

func procExit(w *wasiCtx, p []uint64) (uint32, error) {
	w.exited, w.exitStatus = true, uint32(p[0])
	return 0, errWASIExit
}

func randomGet(w *wasiCtx, p []uint64) (uint32, error) {
	b, ok := w.read(uint32(p[0]), uint32(p[1]))
	if !ok {
		return errnoFault, nil
	}
	if _, err := io.ReadFull(w.rand, b); err != nil {
		return 29, nil // EIO
	}
	return errnoSuccess, nil
}

func sockSend(w *wasiCtx, p []uint64) (uint32, error) {
	if uint32(p[3]) != 0 {
		return errnoNotsup, nil
	}
	return errnoBadf, nil
}
