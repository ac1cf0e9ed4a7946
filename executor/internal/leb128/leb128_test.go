package leb128

import (
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1 << 32, math.MaxUint64} {
		b := AppendUint(nil, v)
		bits := uint(64)
		if v <= math.MaxUint32 {
			bits = 32
		}
		got, n, err := DecodeUint(b, bits)
		if err != nil || got != v || n != len(b) {
			t.Errorf("DecodeUint(AppendUint(%d)) = %d, %d, %v; want %d, %d", v, got, n, err, v, len(b))
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		bits uint
	}{
		{nil, 32},
		{[]byte{0x80}, 32}, // ends inside
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 32}, // six bytes
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 32},       // 2^35 - 1
	} {
		if _, _, err := DecodeUint(c.b, c.bits); err == nil {
			t.Errorf("DecodeUint(%x, %d) succeeded", c.b, c.bits)
		}
	}
	if v, n, err := DecodeInt([]byte{0x7f}, 32); err != nil || v != -1 || n != 1 {
		t.Errorf("DecodeInt(7f) = %d, %d, %v; want -1", v, n, err)
	}
	if v, _, err := DecodeInt([]byte{0x80, 0x7f}, 32); err != nil || v != -128 {
		t.Errorf("DecodeInt(807f) = %d, %v; want -128", v, err)
	}
	if _, _, err := DecodeInt([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 33); err == nil {
		t.Error("DecodeInt of six bytes for 33 bits succeeded")
	}
}
