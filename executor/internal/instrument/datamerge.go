package instrument

import (
	"fmt"
	"slices"

	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// MergeData rewrites the data section of b so that nearby active data
// segments become one, and returns the module with how many segments it
// had and has. Instantiating a module applies its data segments one by one,
// and an engine pays for each (wazero evaluates its offset expression and
// copies it apart): the Go toolchain splits a module's data at every run of
// a few zero bytes, so a small Go agent has some 30,000 segments and
// applying them is most of what a fresh instance costs.
//
// The merged module has the same memory image after instantiation: the
// segments are sorted by offset, and two segments less than MaxDataGap bytes
// apart are joined, with the zero bytes between them written out. Those
// bytes belong to no segment, so a fresh memory holds zero there anyway.
//
// MergeData leaves the module as it is (merged == before) unless every
// segment qualifies, because only then is the rewrite certainly invisible:
//   - every segment is active, in memory 0, at an i32.const offset, so no
//     memory.init or data.drop can name a segment by the index that the
//     merge changes (a module with a data count section, which those
//     instructions require, is left alone too);
//   - the module defines one 32-bit memory and every segment lies inside
//     its initial size (a segment out of bounds fails instantiation, at an
//     index the merge would change);
//   - no two segments overlap (then the order they are applied in matters).
//
// The zero bytes it adds are at most the data section's own size or
// MinDataBudget, whichever is larger (a module whose segments lie far apart
// is merged where that budget allows, nearest gaps first).
func MergeData(b []byte) (out []byte, before, merged int, err error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, 0, 0, fmt.Errorf("not a WebAssembly binary")
	}
	type span struct{ start, end int } // a section's body in b
	var data, memory span
	hasData, hasMemory, hasDataCount := false, false, false
	dataStart, dataEnd := 0, 0 // the whole data section, header included
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		secStart := r.off
		id := r.byte()
		size := r.u32()
		bodyStart := r.off
		r.take(size)
		if r.err != nil {
			return nil, 0, 0, fmt.Errorf("section %d: %w", id, r.err)
		}
		switch id {
		case secMemory:
			memory, hasMemory = span{bodyStart, r.off}, true
		case secDataCount:
			hasDataCount = true
		case secData:
			data, hasData = span{bodyStart, r.off}, true
			dataStart, dataEnd = secStart, r.off
		}
	}
	if !hasData || !hasMemory || hasDataCount {
		return b, 0, 0, nil
	}

	// The memory: exactly one, 32-bit; its initial size bounds the segments.
	mr := &reader{b: b[memory.start:memory.end]}
	if mr.u32() != 1 {
		return b, 0, 0, nil
	}
	flags := mr.byte()
	if flags&^0x03 != 0 { // 64-bit, or flags this merge does not know
		return b, 0, 0, nil
	}
	minPages := mr.uleb(32)
	if mr.err != nil {
		return b, 0, 0, nil
	}
	memBytes := minPages * 65536

	type segment struct {
		off   uint64
		bytes []byte
	}
	dr := &reader{b: b[data.start:data.end]}
	n := dr.u32()
	if dr.err != nil || uint64(n) > uint64(len(dr.b)) {
		return b, 0, 0, nil
	}
	segs := make([]segment, 0, n)
	for i := uint32(0); i < n; i++ {
		switch dr.u32() {
		case 0: // active, memory 0
		case 2: // active, explicit memory index
			if dr.u32() != 0 {
				return b, 0, 0, nil
			}
		default: // passive, or not data this merge knows
			return b, 0, 0, nil
		}
		if dr.byte() != 0x41 { // i32.const
			return b, 0, 0, nil
		}
		if dr.err != nil {
			return b, 0, 0, nil
		}
		v, k, err := leb128.DecodeInt(dr.b[dr.off:], 32)
		if err != nil {
			return b, 0, 0, nil
		}
		dr.off += k
		if dr.byte() != 0x0b { // end
			return b, 0, 0, nil
		}
		bytes := dr.take(dr.u32())
		if dr.err != nil {
			return b, 0, 0, nil
		}
		off := uint64(uint32(int32(v)))
		if off+uint64(len(bytes)) > memBytes {
			return b, 0, 0, nil
		}
		if len(bytes) > 0 {
			segs = append(segs, segment{off, bytes})
		}
	}
	if dr.end() != nil {
		return b, 0, 0, nil
	}
	slices.SortStableFunc(segs, func(x, y segment) int {
		switch {
		case x.off < y.off:
			return -1
		case x.off > y.off:
			return 1
		}
		return 0
	})
	for i := 1; i < len(segs); i++ {
		if segs[i-1].off+uint64(len(segs[i-1].bytes)) > segs[i].off {
			return b, 0, 0, nil
		}
	}

	// Which gaps to fill: those under MaxDataGap, smallest first, while the
	// zero bytes added stay within the budget. join[i] joins segs[i] to
	// segs[i+1].
	join := make([]bool, max(len(segs)-1, 0))
	gaps := make([]int, 0, len(join))
	for i := range join {
		if g := segs[i+1].off - segs[i].off - uint64(len(segs[i].bytes)); g < MaxDataGap {
			gaps = append(gaps, i)
		}
	}
	gapOf := func(i int) uint64 { return segs[i+1].off - segs[i].off - uint64(len(segs[i].bytes)) }
	slices.SortStableFunc(gaps, func(x, y int) int {
		gx, gy := gapOf(x), gapOf(y)
		switch {
		case gx < gy:
			return -1
		case gx > gy:
			return 1
		}
		return 0
	})
	budget := max(uint64(data.end-data.start), MinDataBudget)
	for _, i := range gaps {
		g := gapOf(i)
		if g > budget {
			break
		}
		budget -= g
		join[i] = true
	}

	body := make([]byte, 0, data.end-data.start+5)
	count := 0
	var run []byte
	for i := 0; i < len(segs); {
		start := i
		for i < len(join) && join[i] {
			i++
		}
		// segs[start..i] become one segment.
		first, last := segs[start], segs[i]
		size := last.off + uint64(len(last.bytes)) - first.off
		body = append(body, 0x00, 0x41)
		body = leb128.AppendInt(body, int64(int32(uint32(first.off))))
		body = append(body, 0x0b)
		body = leb128.AppendUint(body, size)
		if start == i {
			body = append(body, first.bytes...)
		} else {
			run = slices.Grow(run[:0], int(size))[:size]
			clear(run)
			for _, s := range segs[start : i+1] {
				copy(run[s.off-first.off:], s.bytes)
			}
			body = append(body, run...)
		}
		count++
		i++
	}
	if count >= int(n) {
		return b, int(n), int(n), nil
	}

	sec := leb128.AppendUint(nil, uint64(count))
	out = make([]byte, 0, len(b)-(dataEnd-dataStart)+len(body)+16)
	out = append(out, b[:dataStart]...)
	out = append(out, secData)
	out = leb128.AppendUint(out, uint64(len(sec)+len(body)))
	out = append(out, sec...)
	out = append(out, body...)
	out = append(out, b[dataEnd:]...)
	return out, int(n), count, nil
}

// Sections MergeData reads, beside those of Interrupts.
const (
	secMemory    = 5
	secData      = 11
	secDataCount = 12
)

// MaxDataGap is the widest run of zero bytes MergeData writes out to join
// two data segments: copying that many bytes costs an engine less than
// applying one more segment.
const MaxDataGap = 1024

// MinDataBudget is the zero bytes MergeData may always write out, however
// small the data section.
const MinDataBudget = 64 << 10
