//go:build wasmer

package wasmer

import (
	"encoding/binary"
	"io"
)

// The fd_* functions of wasi_snapshot_preview1 (see wasi.go), on the stdio
// descriptors, the only ones a guest has.

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
