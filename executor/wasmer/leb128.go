//go:build wasmer

package wasmer

import (
	"errors"
	"fmt"

	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// wreader reads WebAssembly encodings from b[off:].
type wreader struct {
	b   []byte
	off int
}

var errTruncated = errors.New("unexpected end of data")

func (r *wreader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *wreader) skip(n int) error {
	if n < 0 || n > len(r.b)-r.off {
		return errTruncated
	}
	r.off += n
	return nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *wreader) uleb(bits uint) (uint64, error) {
	v, n, err := leb128.DecodeUint(r.b[r.off:], bits)
	if errors.Is(err, leb128.ErrEOF) {
		return 0, errTruncated
	}
	if err != nil {
		return 0, fmt.Errorf("integer at offset %d: %w", r.off, err)
	}
	r.off += n
	return v, nil
}

func (r *wreader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// sleb reads a signed LEB128 of at most bits bits (its value is not needed,
// only its extent, but its length is checked).
func (r *wreader) sleb(bits uint) (int64, error) {
	var v int64
	shift := uint(0)
	for {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift >= bits {
			return 0, fmt.Errorf("integer at offset %d does not fit in %d bits", r.off-1, bits)
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
}

func (r *wreader) skipBlockType() error {
	if r.off >= len(r.b) {
		return errTruncated
	}
	switch r.b[r.off] {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.off++
		return nil
	}
	_, err := r.sleb(33) // a type index
	return err
}

func (r *wreader) skipMemarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 {
		return errors.New("a memory index in a memarg (multi-memory) is not supported")
	}
	_, err = r.u32()
	return err
}

func (r *wreader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		return "", errTruncated
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

func (r *wreader) skipName() error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	return r.skip(int(n))
}

func appendU32(b []byte, v uint32) []byte { return leb128.AppendUint(b, uint64(v)) }

func appendS64(b []byte, v int64) []byte { return leb128.AppendInt(b, v) }

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
