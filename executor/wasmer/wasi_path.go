//go:build wasmer

package wasmer

import (
	"encoding/binary"
	"io/fs"
	"path"
)

// The path_* functions and poll_oneoff of wasi_snapshot_preview1 (see
// wasi.go). With no directory open, every path function fails, in the
// order of checks wazero makes.

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
