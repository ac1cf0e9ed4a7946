//go:build wasmer

package wasmer

import (
	"bytes"
	"errors"
	"fmt"
)

// This file rewrites a module before wasmer compiles it, so that a worker can
// enforce what wasmer-go cannot:
//
//   - memory quota: every memory.grow in the code becomes a call to an added
//     function, $fabric_grow, that refuses (returns -1) a grow past the
//     task's quota, held in an added exported global the worker sets per
//     run, and records the refusal in a second exported global. A grow past
//     the module's own maximum is refused by memory.grow itself and is not
//     recorded, as in the wazero engine.
//   - the start function runs on the worker's guest thread, not inside
//     wasmer's instantiation: the start section is removed and the function
//     exported, and the worker calls it right after instantiating.
//   - a memory that the module does not export is still reachable by the
//     host functions: it is exported under a hidden name too.
//
// Added exports have names beginning with a NUL byte, which no toolchain
// emits; a module that already uses one is refused.

// Hidden exports of an instrumented module.
const (
	exportMemory  = "\x00fabric.memory"
	exportQuota   = "\x00fabric.quota_pages"
	exportRefused = "\x00fabric.grow_refused"
	exportStart   = "\x00fabric.start"
)

// instrumented is a module rewritten by instrument.
type instrumented struct {
	Wasm []byte
	// HasMemory says the module defines a memory, exported as exportMemory.
	HasMemory bool
	// GrowGuarded says the module grows its memory: exportQuota and
	// exportRefused exist.
	GrowGuarded bool
	// HasStart says the module had a start function, now exportStart.
	HasStart bool
	// MinPages and MaxPages are the memory's declared limits; MaxPages is
	// 65536 when it declares none.
	MinPages, MaxPages uint64
}

// maxPages32 is the number of pages of a whole 32-bit memory.
const maxPages32 = 65536

// Section ids.
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secCode     = 10
)

// sectionRank orders the known sections as a valid module must.
func sectionRank(id byte) int {
	for i, s := range []byte{1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11} {
		if s == id {
			return i
		}
	}
	return -1
}

type section struct {
	id      byte
	content []byte
}

// instrument rewrites b as described above. It expects a module that passed
// executor.InspectModule; its errors describe a malformed or unsupported
// module.
func instrument(b []byte) (*instrumented, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary")
	}
	var secs []section
	r := &wreader{b: b, off: 8}
	for r.off < len(b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if uint64(n) > uint64(len(b)-r.off) {
			return nil, fmt.Errorf("section %d runs past the end of the binary", id)
		}
		secs = append(secs, section{id: id, content: b[r.off : r.off+int(n)]})
		r.off += int(n)
	}

	m := &binModule{secs: secs}
	if err := m.read(); err != nil {
		return nil, err
	}
	return m.rewrite()
}

// binModule is a binary split into sections, with what instrument needs.
type binModule struct {
	secs          []section
	numTypes      uint32
	importedFuncs uint32
	definedFuncs  uint32
	definedGlobal uint32
	memories      uint32
	minPages      uint64
	maxPages      uint64
	start         int64 // -1: none
	exportNames   map[string]bool
}

func (m *binModule) find(id byte) int {
	for i, s := range m.secs {
		if s.id == id {
			return i
		}
	}
	return -1
}

func (m *binModule) read() error {
	m.start = -1
	m.exportNames = map[string]bool{}
	for _, s := range m.secs {
		r := &wreader{b: s.content}
		var err error
		switch s.id {
		case secType:
			m.numTypes, err = r.u32()
		case secImport:
			err = m.readImports(r)
		case secFunction:
			m.definedFuncs, err = r.u32()
		case secMemory:
			err = m.readMemories(r)
		case secGlobal:
			m.definedGlobal, err = r.u32()
		case secExport:
			err = m.readExports(r)
		case secStart:
			var idx uint32
			idx, err = r.u32()
			m.start = int64(idx)
		}
		if err != nil {
			return fmt.Errorf("section %d: %w", s.id, err)
		}
	}
	if m.memories > 1 {
		return fmt.Errorf("the module defines %d memories; a guest has at most one", m.memories)
	}
	for name := range m.exportNames {
		if len(name) > 0 && name[0] == 0 {
			return fmt.Errorf("export %q: names beginning with a NUL byte are reserved for the host", name)
		}
	}
	return nil
}

func (m *binModule) readImports(r *wreader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.skipName(); err != nil {
			return err
		}
		if err := r.skipName(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		if kind != 0 {
			// CheckModule refuses every import but functions.
			return fmt.Errorf("import %d: kind %d; a guest imports only functions", i, kind)
		}
		if _, err := r.u32(); err != nil {
			return err
		}
		m.importedFuncs++
	}
	return nil
}

func (m *binModule) readMemories(r *wreader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	m.memories += n
	if n == 0 {
		return nil
	}
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags&^1 != 0 {
		return fmt.Errorf("memory limits flags 0x%02x: shared and 64-bit memories are not supported", flags)
	}
	if m.minPages, err = r.uleb(32); err != nil {
		return err
	}
	m.maxPages = maxPages32
	if flags&1 != 0 {
		if m.maxPages, err = r.uleb(32); err != nil {
			return err
		}
	}
	return nil
}

func (m *binModule) readExports(r *wreader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		name, err := r.name()
		if err != nil {
			return err
		}
		m.exportNames[name] = true
		if _, err := r.byte(); err != nil {
			return err
		}
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// rewrite builds the instrumented binary.
func (m *binModule) rewrite() (*instrumented, error) {
	out := &instrumented{HasMemory: m.memories == 1, MinPages: m.minPages, MaxPages: m.maxPages}
	growIdx := m.importedFuncs + m.definedFuncs
	var exports []byte // entries to append to the export section
	nExports := uint32(0)
	addExport := func(name string, kind byte, idx uint32) {
		exports = appendName(exports, name)
		exports = append(exports, kind)
		exports = appendU32(exports, idx)
		nExports++
	}

	if code := m.find(secCode); code >= 0 && out.HasMemory {
		content, grows, err := rewriteCode(m.secs[code].content, growIdx)
		if err != nil {
			return nil, fmt.Errorf("code section: %w", err)
		}
		if grows > 0 {
			out.GrowGuarded = true
			quota, refused := m.definedGlobal, m.definedGlobal+1
			typeIdx := m.numTypes
			m.appendEntries(secType, 1, []byte{0x60, 1, 0x7f, 1, 0x7f})
			m.appendEntries(secFunction, 1, appendU32(nil, typeIdx))
			body := growBody(quota, refused, m.maxPages)
			content = appendVecEntry(content, appendU32(nil, uint32(len(body))), body)
			m.secs[code].content = content
			// quota: (mut i32) = 0 until the worker sets it; refused: (mut i32) = 0.
			g := []byte{0x7f, 1, 0x41, 0, 0x0b, 0x7f, 1, 0x41, 0, 0x0b}
			m.appendEntries(secGlobal, 2, g)
			addExport(exportQuota, 3, quota)
			addExport(exportRefused, 3, refused)
		}
	}
	if out.HasMemory {
		addExport(exportMemory, 2, 0)
	}
	if m.start >= 0 {
		out.HasStart = true
		addExport(exportStart, 0, uint32(m.start))
		i := m.find(secStart)
		m.secs = append(m.secs[:i], m.secs[i+1:]...)
	}
	if nExports > 0 {
		m.appendEntries(secExport, nExports, exports)
	}

	var buf bytes.Buffer
	buf.WriteString("\x00asm\x01\x00\x00\x00")
	for _, s := range m.secs {
		buf.WriteByte(s.id)
		buf.Write(appendU32(nil, uint32(len(s.content))))
		buf.Write(s.content)
	}
	out.Wasm = buf.Bytes()
	return out, nil
}

// appendEntries appends n entries (already encoded) to the vector section id,
// creating the section in its place if the module has none.
func (m *binModule) appendEntries(id byte, n uint32, entries []byte) {
	i := m.find(id)
	if i < 0 {
		// Insert before the first known section that must follow it.
		at := len(m.secs)
		for j, s := range m.secs {
			if s.id != secCustom && sectionRank(s.id) > sectionRank(id) {
				at = j
				break
			}
		}
		m.secs = append(m.secs, section{})
		copy(m.secs[at+1:], m.secs[at:])
		m.secs[at] = section{id: id, content: []byte{0}}
		i = at
	}
	r := &wreader{b: m.secs[i].content}
	count, _ := r.u32() // read before: the section parsed
	content := appendU32(nil, count+n)
	content = append(content, m.secs[i].content[r.off:]...)
	m.secs[i].content = append(content, entries...)
}

// appendVecEntry appends one entry (prefix then body) to an encoded vector.
func appendVecEntry(vec, prefix, body []byte) []byte {
	r := &wreader{b: vec}
	count, _ := r.u32()
	out := appendU32(nil, count+1)
	out = append(out, vec[r.off:]...)
	out = append(out, prefix...)
	return append(out, body...)
}

// growBody is the code of $fabric_grow (param $delta i32) (result i32):
//
//	if delta > quota - memory.size:
//	    if delta <= max - memory.size: refused = 1   (the quota refused it)
//	    return -1
//	return memory.grow(delta)
func growBody(quota, refused uint32, maxPages uint64) []byte {
	b := []byte{0}                           // no locals
	b = append(b, 0x20, 0)                   // local.get $delta
	b = append(b, 0x23)                      // global.get $quota
	b = appendU32(b, quota)                  //
	b = append(b, 0x3f, 0, 0x6b, 0x4b)       // memory.size; i32.sub; i32.gt_u
	b = append(b, 0x04, 0x40)                // if
	b = append(b, 0x20, 0, 0x41)             //   local.get $delta; i32.const max
	b = appendS64(b, int64(maxPages))        //
	b = append(b, 0x3f, 0, 0x6b, 0x4d)       //   memory.size; i32.sub; i32.le_u
	b = append(b, 0x04, 0x40, 0x41, 1, 0x24) //   if; i32.const 1; global.set $refused
	b = appendU32(b, refused)                //
	b = append(b, 0x0b)                      //   end
	b = append(b, 0x41, 0x7f, 0x0f, 0x0b)    //   i32.const -1; return; end
	b = append(b, 0x20, 0, 0x40, 0, 0x0b)    // local.get $delta; memory.grow; end
	return b
}

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
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift >= bits || (bits-shift < 7 && uint64(c&0x7f)>>(bits-shift) != 0) {
			return 0, fmt.Errorf("integer at offset %d does not fit in %d bits", r.off-1, bits)
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
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

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
