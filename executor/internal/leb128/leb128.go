// Package leb128 decodes and encodes the LEB128 integers of the WebAssembly
// binary format.
package leb128

import (
	"errors"
	"fmt"
)

// ErrEOF is returned when the data ends inside an integer.
var ErrEOF = errors.New("unexpected end of data")

// DecodeUint decodes an unsigned LEB128 of at most bits bits (32 or 64) from
// the start of b, returning the value and the bytes it took.
func DecodeUint(b []byte, bits uint) (uint64, int, error) {
	var v uint64
	for i, shift := 0, uint(0); ; i, shift = i+1, shift+7 {
		if i >= len(b) {
			return 0, 0, ErrEOF
		}
		c := b[i]
		if shift >= bits || (bits-shift < 7 && uint64(c&0x7f)>>(bits-shift) != 0) {
			return 0, 0, fmt.Errorf("unsigned integer does not fit in %d bits", bits)
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
}

// DecodeInt decodes a signed LEB128 of at most bits bits (32, 33 or 64).
func DecodeInt(b []byte, bits uint) (int64, int, error) {
	var v int64
	maxBytes := int((bits + 6) / 7)
	for i, shift := 0, uint(0); ; i, shift = i+1, shift+7 {
		if i >= len(b) {
			return 0, 0, ErrEOF
		}
		if i >= maxBytes {
			return 0, 0, fmt.Errorf("signed integer does not fit in %d bits", bits)
		}
		c := b[i]
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v, i + 1, nil
		}
	}
}

// AppendUint appends v's unsigned LEB128 encoding to b.
func AppendUint(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// AppendInt appends v's signed LEB128 encoding to b.
func AppendInt(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
