//go:build wasmer

package wasmer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"path"

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

func fdAdvise(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	if byte(p[3]) > 5 {
		return errnoInval, nil
	}
	return errnoSuccess, nil
}

func fdAllocate(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	tail := int64(p[1] + p[2])
	if tail < 0 {
		return errnoInval, nil
	}
	if tail <= 0 { // a stdio file's size is 0: nothing to allocate
		return errnoSuccess, nil
	}
	return errnoNosys, nil // Truncate is unimplemented
}

func fdClose(w *wasiCtx, p []uint64) (uint32, error) {
	fd := int32(p[0])
	if !w.open(fd) {
		return errnoBadf, nil
	}
	w.closed[fd] = true
	return errnoSuccess, nil
}

// fdSyncOK is fd_sync and fd_datasync: a no-op on stdio.
func fdSyncOK(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	return errnoSuccess, nil
}

func fdFdstatGet(w *wasiCtx, p []uint64) (uint32, error) {
	buf, ok := w.read(uint32(p[1]), 24)
	if !ok {
		return errnoFault, nil
	}
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	binary.LittleEndian.PutUint16(buf[0:], filetypeBlockDevice)
	binary.LittleEndian.PutUint16(buf[2:], 0) // fdflags
	binary.LittleEndian.PutUint32(buf[4:], 0)
	binary.LittleEndian.PutUint64(buf[8:], fileRightsBase)
	binary.LittleEndian.PutUint64(buf[16:], 0)
	return errnoSuccess, nil
}

func fdFdstatSetFlags(w *wasiCtx, p []uint64) (uint32, error) {
	flags := uint16(p[1])
	if flags&(fdflagDsync|fdflagRsync|fdflagSync) != 0 {
		return errnoInval, nil
	}
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	if flags&fdflagNonblock != 0 {
		return errnoNosys, nil
	}
	return errnoSuccess, nil
}

func fdFilestatGet(w *wasiCtx, p []uint64) (uint32, error) {
	buf, ok := w.read(uint32(p[1]), 64)
	if !ok {
		return errnoFault, nil
	}
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	clear(buf)
	binary.LittleEndian.PutUint64(buf[16:], filetypeBlockDevice)
	binary.LittleEndian.PutUint64(buf[24:], 1) // nlink
	return errnoSuccess, nil
}

func fdFilestatSetSize(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	return errnoNosys, nil
}

// toTimes is wazero's: it reads the wall clock for a *_NOW flag.
func (w *wasiCtx) toTimes(flags uint16) uint32 {
	now := false
	if set, n := flags&fstAtim != 0, flags&fstAtimNow != 0; set && n {
		return errnoInval
	} else if !set && n {
		w.walltime()
		now = true
	}
	if set, n := flags&fstMtim != 0, flags&fstMtimNow != 0; set && n {
		return errnoInval
	} else if !set && n && !now {
		w.walltime()
	}
	return errnoSuccess
}

func fdFilestatSetTimes(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	if e := w.toTimes(uint16(p[3])); e != 0 {
		return e, nil
	}
	// wazero: Utimens on a stdio file is ENOSYS, upon which it calls the
	// entry's file system, which stdio entries lack: a nil dereference.
	return 0, errWASIPanic
}

func fdPread(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	return w.readv(uint32(p[1]), uint32(p[2]), uint32(p[4]), nil), nil
}

func fdRead(w *wasiCtx, p []uint64) (uint32, error) {
	fd := int32(p[0])
	if !w.open(fd) {
		return errnoBadf, nil
	}
	var r io.Reader
	if fd == 0 {
		r = &w.stdin
	}
	return w.readv(uint32(p[1]), uint32(p[2]), uint32(p[3]), r), nil
}

// readv is wazero's readv followed by the write of nread; a nil reader is a
// file without Read (ENOSYS, reported as EBADF).
func (w *wasiCtx) readv(iovs, count, resultNread uint32, r io.Reader) uint32 {
	stop := count << 3
	iovsBuf, ok := w.read(iovs, stop)
	if !ok {
		return errnoFault
	}
	var nread uint32
	for pos := uint32(0); pos < stop; pos += 8 {
		off := binary.LittleEndian.Uint32(iovsBuf[pos:])
		l := binary.LittleEndian.Uint32(iovsBuf[pos+4:])
		if l == 0 {
			continue
		}
		b, ok := w.read(off, l)
		if !ok {
			return errnoFault
		}
		if r == nil {
			return errnoBadf
		}
		n, _ := r.Read(b) // a bytes.Reader fails only with io.EOF, errno 0
		nread += uint32(n)
		if n < int(l) {
			break
		}
	}
	if !w.putU32(resultNread, nread) {
		return errnoFault
	}
	return errnoSuccess
}

func fdPwrite(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	return w.writev(uint32(p[1]), uint32(p[2]), uint32(p[4]), nil, true)
}

func fdWrite(w *wasiCtx, p []uint64) (uint32, error) {
	fd := int32(p[0])
	if !w.open(fd) {
		return errnoBadf, nil
	}
	var out io.Writer
	switch fd {
	case 1:
		out = w.stdout
	case 2:
		out = w.stderr
	}
	return w.writev(uint32(p[1]), uint32(p[2]), uint32(p[3]), out, false)
}

// writev is wazero's writev followed by the write of nwritten. A nil writer
// is a file without Write (ENOSYS, reported as EBADF); pwrite skips empty
// buffers before reaching the file. An error from the writer stops the guest.
func (w *wasiCtx) writev(iovs, count, resultNwritten uint32, out io.Writer, pwrite bool) (uint32, error) {
	stop := count << 3
	iovsBuf, ok := w.read(iovs, stop)
	if !ok {
		return errnoFault, nil
	}
	var nwritten uint32
	for pos := uint32(0); pos < stop; pos += 8 {
		off := binary.LittleEndian.Uint32(iovsBuf[pos:])
		l := binary.LittleEndian.Uint32(iovsBuf[pos+4:])
		b, ok := w.read(off, l)
		if !ok {
			return errnoFault, nil
		}
		if pwrite && l == 0 {
			continue
		}
		if out == nil {
			return errnoBadf, nil
		}
		n, err := out.Write(b)
		nwritten += uint32(n)
		if err != nil {
			return 0, err
		}
	}
	if !w.putU32(resultNwritten, nwritten) {
		return errnoFault, nil
	}
	return errnoSuccess, nil
}

func fdPrestatGet(w *wasiCtx, p []uint64) (uint32, error) {
	// wazero marks the stdio entries as preopens and, as they are not
	// directories, returns an empty name without an error.
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	if !w.putU64(uint32(p[1]), 0) {
		return errnoFault, nil
	}
	return errnoSuccess, nil
}

func fdPrestatDirName(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	pathPtr, pathLen := uint32(p[1]), uint32(p[2])
	if pathLen > 0 { // the name is empty
		return errnoNametoolong, nil
	}
	if _, ok := w.read(pathPtr, 0); !ok {
		return errnoFault, nil
	}
	return errnoSuccess, nil
}

func fdReaddir(w *wasiCtx, p []uint64) (uint32, error) {
	if uint32(p[2]) < 24 {
		return errnoInval, nil
	}
	return errnoBadf, nil // closed, or not a directory
}

func fdRenumber(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) || int32(p[1]) < 0 {
		return errnoBadf, nil
	}
	return errnoNotsup, nil // the stdio entries are preopens
}

func fdSeek(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[0])) {
		return errnoBadf, nil
	}
	return errnoNosys, nil
}

func fdTell(w *wasiCtx, p []uint64) (uint32, error) {
	return fdSeek(w, p)
}

// atPath is wazero's: the path is read and checked before the descriptor,
// which can only be a stdio one, never a directory.
func (w *wasiCtx) atPath(fd int32, ptr, n uint32) uint32 {
	b, ok := w.read(ptr, n)
	if !ok {
		return errnoFault
	}
	if !fs.ValidPath(path.Clean(string(b))) {
		return errnoPerm
	}
	if !w.open(fd) {
		return errnoBadf
	}
	return errnoNotdir
}

// pathAt3 serves the functions that fail at their first atPath(p0, p1, p2).
func pathAt3(w *wasiCtx, p []uint64) (uint32, error) {
	return w.atPath(int32(p[0]), uint32(p[1]), uint32(p[2])), nil
}

func pathFilestatGet(w *wasiCtx, p []uint64) (uint32, error) {
	return w.atPath(int32(p[0]), uint32(p[2]), uint32(p[3])), nil
}

func pathFilestatSetTimes(w *wasiCtx, p []uint64) (uint32, error) {
	if e := w.toTimes(uint16(p[6])); e != 0 {
		return e, nil
	}
	return w.atPath(int32(p[0]), uint32(p[2]), uint32(p[3])), nil
}

func pathLink(w *wasiCtx, p []uint64) (uint32, error) {
	return w.atPath(int32(p[0]), uint32(p[2]), uint32(p[3])), nil
}

func pathOpen(w *wasiCtx, p []uint64) (uint32, error) {
	return w.atPath(int32(p[0]), uint32(p[2]), uint32(p[3])), nil
}

func pathReadlink(w *wasiCtx, p []uint64) (uint32, error) {
	if uint32(p[2]) == 0 || uint32(p[4]) == 0 {
		return errnoInval, nil
	}
	return w.atPath(int32(p[0]), uint32(p[1]), uint32(p[2])), nil
}

func pathSymlink(w *wasiCtx, p []uint64) (uint32, error) {
	if !w.open(int32(p[2])) {
		return errnoBadf, nil
	}
	return errnoNotdir, nil
}

func pollOneoff(w *wasiCtx, p []uint64) (uint32, error) {
	in, out, nsubs, resultNevents := uint32(p[0]), uint32(p[1]), uint32(p[2]), uint32(p[3])
	if nsubs == 0 {
		return errnoInval, nil
	}
	inBuf, ok := w.read(in, nsubs*48)
	if !ok {
		return errnoFault, nil
	}
	outBuf, ok := w.read(out, nsubs*32)
	clear(outBuf)
	if !ok {
		return errnoFault, nil
	}
	if !w.putU32(resultNevents, nsubs) {
		return errnoFault, nil
	}
	type event struct {
		userData  []byte
		eventType byte
	}
	writeEvent := func(dst []byte, userData []byte, eventType byte, errno uint32) {
		copy(dst, userData)
		dst[8] = byte(errno)
		dst[9] = 0
		binary.LittleEndian.PutUint32(dst[10:], uint32(eventType))
	}
	var blocking []event
	timeout := int64(1<<63 - 1)
	nevents := uint32(0)
	for i := uint32(0); i < nsubs; i++ {
		sub := inBuf[i*48:]
		userData := sub[:8]
		eventType := sub[8]
		arg := sub[16:]
		outOffset := nevents * 32
		switch eventType {
		case 0: // clock
			t := int64(binary.LittleEndian.Uint64(arg[8:16]))
			switch binary.LittleEndian.Uint16(arg[24:32]) {
			case 0:
			case 1:
				return errnoNotsup, nil
			default:
				return errnoInval, nil
			}
			timeout = min(timeout, t)
			writeEvent(outBuf[outOffset:], userData, eventType, 0)
			nevents++
		case 1: // fd_read
			fd := int32(binary.LittleEndian.Uint32(arg))
			if fd < 0 {
				return errnoBadf, nil
			}
			if !w.open(fd) {
				writeEvent(outBuf[outOffset:], userData, eventType, errnoBadf)
				nevents++
			} else {
				blocking = append(blocking, event{userData, eventType})
			}
		case 2: // fd_write
			fd := int32(binary.LittleEndian.Uint32(arg))
			if fd < 0 {
				return errnoBadf, nil
			}
			errno := errnoBadf
			if w.open(fd) {
				errno = errnoNotsup
			}
			writeEvent(outBuf[outOffset:], userData, eventType, errno)
			nevents++
		default:
			return errnoInval, nil
		}
	}
	if nevents == nsubs {
		if timeout > 0 {
			w.sleep(timeout)
		}
		return errnoSuccess, nil
	}
	if !w.open(0) {
		return errnoBadf, nil
	}
	// stdin reads from memory: always ready.
	for _, e := range blocking {
		writeEvent(outBuf[nevents*32:], e.userData, e.eventType, 0)
		nevents++
	}
	if nevents != nsubs {
		if !w.putU32(resultNevents, nevents) {
			return errnoFault, nil
		}
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
