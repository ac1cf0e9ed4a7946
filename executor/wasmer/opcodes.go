//go:build wasmer

package wasmer

import "fmt"

// This file walks function bodies instruction by instruction: the only way
// to find every memory.grow, as the bytes of one can appear inside another
// instruction's immediates.

// rewriteCode replaces every memory.grow in the code section's bodies with a
// call to function growIdx. It returns the new section and how many it
// replaced.
func rewriteCode(sec []byte, growIdx uint32) ([]byte, int, error) {
	r := &wreader{b: sec}
	n, err := r.u32()
	if err != nil {
		return nil, 0, err
	}
	out := appendU32(make([]byte, 0, len(sec)+64), n)
	call := appendU32([]byte{0x10}, growIdx)
	grows := 0
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return nil, 0, fmt.Errorf("body %d: %w", i, err)
		}
		if uint64(size) > uint64(len(sec)-r.off) {
			return nil, 0, fmt.Errorf("body %d runs past the section's end", i)
		}
		body := sec[r.off : r.off+int(size)]
		r.off += int(size)
		nb, g, err := rewriteBody(body, call)
		if err != nil {
			return nil, 0, fmt.Errorf("body %d: %w", i, err)
		}
		grows += g
		out = appendU32(out, uint32(len(nb)))
		out = append(out, nb...)
	}
	if r.off != len(sec) {
		return nil, 0, fmt.Errorf("%d bytes after the last body", len(sec)-r.off)
	}
	return out, grows, nil
}

// rewriteBody rewrites one function body. It returns body itself when it
// holds no memory.grow.
func rewriteBody(body, call []byte) ([]byte, int, error) {
	r := &wreader{b: body}
	groups, err := r.u32()
	if err != nil {
		return nil, 0, err
	}
	for i := uint32(0); i < groups; i++ {
		if _, err := r.u32(); err != nil {
			return nil, 0, err
		}
		if _, err := r.byte(); err != nil {
			return nil, 0, err
		}
	}
	var out []byte
	copied := 0 // body[:copied] is in out already
	grows := 0
	for r.off < len(body) {
		at := r.off
		op, _ := r.byte()
		if op == 0x40 { // memory.grow 0x00
			// The memory index is a reserved byte, exactly 0x00, as the
			// wazero engine requires (multi-memory is not enabled).
			idx, err := r.byte()
			if err != nil {
				return nil, 0, err
			}
			if idx != 0 {
				return nil, 0, fmt.Errorf("memory.grow at offset %d: reserved byte 0x%02x; want 0x00", at, idx)
			}
			out = append(out, body[copied:at]...)
			out = append(out, call...)
			copied = r.off
			grows++
			continue
		}
		if err := skipImmediates(r, op); err != nil {
			return nil, 0, fmt.Errorf("instruction 0x%02x at offset %d: %w", op, at, err)
		}
	}
	if grows == 0 {
		return body, 0, nil
	}
	return append(out, body[copied:]...), grows, nil
}

// skipImmediates moves r past the immediates of the instruction op.
func skipImmediates(r *wreader, op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		return r.skipBlockType()
	case op == 0x0c || op == 0x0d: // br, br_if
		_, err := r.u32()
		return err
	case op == 0x0e: // br_table
		n, err := r.u32()
		if err != nil {
			return err
		}
		for i := uint64(0); i <= uint64(n); i++ {
			if _, err := r.u32(); err != nil {
				return err
			}
		}
		return nil
	case op == 0x10 || op == 0x12: // call, return_call
		_, err := r.u32()
		return err
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		if _, err := r.u32(); err != nil {
			return err
		}
		_, err := r.u32()
		return err
	case op == 0x1c: // select t*
		n, err := r.u32()
		if err != nil {
			return err
		}
		return r.skip(int(n))
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		_, err := r.u32()
		return err
	case op >= 0x28 && op <= 0x3e: // loads and stores
		return r.skipMemarg()
	case op == 0x3f: // memory.size
		_, err := r.u32()
		return err
	case op == 0x41:
		_, err := r.sleb(32)
		return err
	case op == 0x42:
		_, err := r.sleb(64)
		return err
	case op == 0x43:
		return r.skip(4)
	case op == 0x44:
		return r.skip(8)
	case op == 0xd0: // ref.null t
		return r.skip(1)
	case op == 0xd2: // ref.func
		_, err := r.u32()
		return err
	case op == 0xfc:
		return skipFC(r)
	case op == 0xfd:
		return skipSIMD(r)
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f ||
		op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4) || op == 0xd1:
		return nil
	}
	return fmt.Errorf("unknown or unsupported opcode")
}

// skipFC skips a 0xFC-prefixed instruction (saturating truncation, bulk
// memory, table operations).
func skipFC(r *wreader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	var n int // u32 immediates
	switch {
	case sub <= 7:
		n = 0
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		n = 2
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		n = 1
	default:
		return fmt.Errorf("unknown 0xfc instruction %d", sub)
	}
	for i := 0; i < n; i++ {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// skipSIMD skips a 0xFD-prefixed (SIMD) instruction.
func skipSIMD(r *wreader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, store, load_zero
		return r.skipMemarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		return r.skip(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		return r.skip(1)
	case sub >= 84 && sub <= 91: // load and store lane
		if err := r.skipMemarg(); err != nil {
			return err
		}
		return r.skip(1)
	case sub <= 275:
		return nil
	}
	return fmt.Errorf("unknown SIMD instruction %d", sub)
}
