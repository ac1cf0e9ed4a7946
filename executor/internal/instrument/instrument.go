// Package instrument rewrites a WebAssembly module so that its host can
// interrupt it from another goroutine, cheaply and wherever it runs.
//
// Interrupts adds one mutable i32 global, exported as StopGlobal, and puts
// this check at the start of every function body and of every loop body:
//
//	global.get $stop
//	if
//	  unreachable
//	end
//
// A guest can run for long only by looping or by calling functions (a
// loop-free recursion that is exponential in time, such as naive Fibonacci,
// never loops), so setting the global to 1 traps it within one loop
// iteration or one call. The check is a load and a predictable branch, a
// nanosecond or so; wazero's own WithCloseOnContextDone instead leaves the
// compiled code for Go at every loop iteration (tens of nanoseconds) and
// does not check function entries at all.
//
// The module's start function would run during instantiation, before the
// host can reach the new global, so the start section is removed and the
// function exported as StartExport instead: the host calls it right after
// instantiating, which is what instantiation would have done.
//
// Only the function bodies and the global, export and start sections are
// touched; every other section is copied, except DWARF custom sections
// (".debug_*"), whose code offsets the inserted checks would make wrong. The
// engine validates the rewritten module as it would have the original.
package instrument

import (
	"errors"
	"fmt"
	"strings"

	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// Names of the exports Interrupts adds. A module that already exports one of
// them is refused.
const (
	StopGlobal  = "fabric:stop"
	StartExport = "fabric:start"
)

// Module is an instrumented module.
type Module struct {
	Wasm []byte
	// HasStart says the module had a start function, now exported as
	// StartExport; the host must call it after instantiation.
	HasStart bool
}

// Section ids, and their order in a binary (custom sections aside).
const (
	secCustom = 0
	secGlobal = 6
	secExport = 7
	secStart  = 8
	secCode   = 10
)

var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// Interrupts instruments b; see the package documentation.
func Interrupts(b []byte) (Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return Module{}, errors.New("not a WebAssembly binary")
	}
	var secs []section
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		id := r.byte()
		size := r.u32()
		body := r.take(size)
		if r.err != nil {
			return Module{}, fmt.Errorf("section %d: %w", id, r.err)
		}
		if _, ok := sectionRank[id]; !ok && id != secCustom {
			return Module{}, fmt.Errorf("unknown section id %d", id)
		}
		secs = append(secs, section{id, body})
	}

	var importedGlobals, definedGlobals, start uint32
	hasStart := false
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case 2:
			importedGlobals = countImportedGlobals(r)
		case secGlobal:
			definedGlobals = r.u32()
		case secExport:
			for _, name := range exportNames(r) {
				if name == StopGlobal || name == StartExport {
					return Module{}, fmt.Errorf("the module exports %q, a name reserved for the host", name)
				}
			}
		case secStart:
			start, hasStart = r.u32(), true
		}
		if r.err != nil {
			return Module{}, fmt.Errorf("%s section: %w", sectionName(s.id), r.err)
		}
	}
	stop := importedGlobals + definedGlobals
	check := append(append([]byte{0x23}, leb128.AppendUint(nil, uint64(stop))...), 0x04, 0x40, 0x00, 0x0b)

	// The added global: (global (mut i32) (i32.const 0)).
	global := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
	exports := appendName(nil, StopGlobal)
	exports = append(exports, 0x03)
	exports = leb128.AppendUint(exports, uint64(stop))
	nExports := uint32(1)
	if hasStart {
		exports = appendName(exports, StartExport)
		exports = append(exports, 0x00)
		exports = leb128.AppendUint(exports, uint64(start))
		nExports++
	}

	out := make([]byte, 0, len(b)+len(b)/8+64)
	out = append(out, b[:8]...)
	globalDone, exportDone := false, false
	addGlobals := func(old []byte) {
		out = appendVecSection(out, secGlobal, old, 1, global)
		globalDone = true
	}
	addExports := func(old []byte) {
		out = appendVecSection(out, secExport, old, nExports, exports)
		exportDone = true
	}
	for _, s := range secs {
		if s.id != secCustom {
			if rank := sectionRank[s.id]; !globalDone && rank > sectionRank[secGlobal] {
				addGlobals(nil)
			}
			if rank := sectionRank[s.id]; !exportDone && rank > sectionRank[secExport] {
				addExports(nil)
			}
		}
		switch s.id {
		case secGlobal:
			addGlobals(s.body)
		case secExport:
			addExports(s.body)
		case secStart:
			// Removed: the host calls StartExport after instantiation.
		case secCode:
			code, err := instrumentCode(s.body, check)
			if err != nil {
				return Module{}, fmt.Errorf("code section: %w", err)
			}
			out = appendSection(out, secCode, code)
		case secCustom:
			if name, _ := (&reader{b: s.body}).name(); strings.HasPrefix(name, ".debug_") {
				continue
			}
			out = appendSection(out, s.id, s.body)
		default:
			out = appendSection(out, s.id, s.body)
		}
	}
	if !globalDone {
		addGlobals(nil)
	}
	if !exportDone {
		addExports(nil)
	}
	return Module{Wasm: out, HasStart: hasStart}, nil
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = leb128.AppendUint(out, uint64(len(body)))
	return append(out, body...)
}

// appendVecSection appends a vector section made of old's elements (old may
// be nil) followed by n more, encoded in extra.
func appendVecSection(out []byte, id byte, old []byte, n uint32, extra []byte) []byte {
	var count uint32
	var rest []byte
	if old != nil {
		r := &reader{b: old}
		count = r.u32()
		rest = old[r.off:]
	}
	body := leb128.AppendUint(nil, uint64(count+n))
	body = append(body, rest...)
	body = append(body, extra...)
	return appendSection(out, id, body)
}

func appendName(out []byte, name string) []byte {
	out = leb128.AppendUint(out, uint64(len(name)))
	return append(out, name...)
}

func sectionName(id byte) string {
	switch id {
	case 2:
		return "import"
	case secGlobal:
		return "global"
	case secExport:
		return "export"
	case secStart:
		return "start"
	}
	return fmt.Sprintf("section %d", id)
}

// countImportedGlobals reads an import section and counts its globals.
func countImportedGlobals(r *reader) uint32 {
	var globals uint32
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // function: type index
			r.u32()
		case 0x01: // table: reference type, limits
			r.byte()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: value type, mutability
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			r.fail(fmt.Errorf("import %d: unknown kind 0x%02x", i, kind))
		}
	}
	return globals
}

func exportNames(r *reader) []string {
	n := r.u32()
	var names []string
	for i := uint32(0); i < n && r.err == nil; i++ {
		name, _ := r.name()
		r.byte()
		r.u32()
		names = append(names, name)
	}
	return names
}

// instrumentCode puts check at the start of every function body and loop
// body of a code section.
func instrumentCode(body []byte, check []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := leb128.AppendUint(make([]byte, 0, len(body)+len(body)/8+16), uint64(n))
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fb := r.take(size)
		if r.err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, r.err)
		}
		var err error
		fn, err = instrumentFunc(fn[:0], fb, check)
		if err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = leb128.AppendUint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(body) {
		return nil, fmt.Errorf("%d bytes after the last function body", len(body)-r.off)
	}
	return out, nil
}

func instrumentFunc(out, fb, check []byte) ([]byte, error) {
	r := &reader{b: fb}
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		r.u32()  // count
		r.byte() // value type
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	out = append(out, fb[:r.off]...)
	out = append(out, check...)
	for r.off < len(fb) {
		at := r.off
		op := r.byte()
		skipImmediates(r, op)
		if r.err != nil {
			return nil, fmt.Errorf("instruction 0x%02x at offset %d: %w", op, at, r.err)
		}
		out = append(out, fb[at:r.off]...)
		if op == 0x03 { // loop
			out = append(out, check...)
		}
	}
	return out, nil
}

// skipImmediates reads the immediates of the instruction op (read already)
// of every instruction set wazero can enable: the 2.0 core (MVP, sign
// extension, non-trapping conversions, bulk memory, reference types,
// multi-value, SIMD), tail calls and threads' atomics.
func skipImmediates(r *reader, op byte) {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		r.blockType()
	case op == 0x0c || op == 0x0d: // br, br_if
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10 || op == 0x12: // call, return_call
		r.u32()
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		r.take(n)
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.sleb(32)
	case op == 0x42:
		r.sleb(64)
	case op == 0x43:
		r.take(4)
	case op == 0x44:
		r.take(8)
	case op == 0xd0: // ref.null heaptype
		r.sleb(33)
	case op == 0xd2: // ref.func
		r.u32()
	case op == 0xfc:
		skipMisc(r, r.u32())
	case op == 0xfd:
		skipSIMD(r, r.u32())
	case op == 0xfe:
		skipAtomic(r, r.u32())
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b ||
		(op >= 0x45 && op <= 0xc4) || op == 0xd1:
		// No immediates.
	default:
		r.fail(errors.New("unknown opcode"))
	}
}

func skipMisc(r *reader, sub uint32) {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data, mem
		r.u32()
		r.u32()
	case sub == 9: // data.drop
		r.u32()
	case sub == 10: // memory.copy mem, mem
		r.u32()
		r.u32()
	case sub == 11: // memory.fill mem
		r.u32()
	case sub == 12 || sub == 14: // table.init elem, table; table.copy table, table
		r.u32()
		r.u32()
	case sub == 13 || (sub >= 15 && sub <= 17): // elem.drop; table.grow/size/fill
		r.u32()
	default:
		r.fail(fmt.Errorf("unknown 0xfc instruction %d", sub))
	}
}

func skipSIMD(r *reader, sub uint32) {
	switch {
	case sub <= 0x0b || sub == 0x5c || sub == 0x5d: // loads, store, load_zero
		r.memarg()
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		r.take(16)
	case sub >= 0x15 && sub <= 0x22: // extract_lane, replace_lane
		r.byte()
	case sub >= 0x54 && sub <= 0x5b: // load_lane, store_lane
		r.memarg()
		r.byte()
	case sub <= 0x113: // no immediates (relaxed SIMD included)
	default:
		r.fail(fmt.Errorf("unknown 0xfd instruction %d", sub))
	}
}

func skipAtomic(r *reader, sub uint32) {
	switch {
	case sub == 0x03: // atomic.fence
		r.byte()
	case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e):
		r.memarg()
	default:
		r.fail(fmt.Errorf("unknown 0xfe instruction %d", sub))
	}
}

// reader reads a binary's encodings; its first error sticks, and every read
// after it returns zero values.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(leb128.ErrEOF)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) uleb(bits uint) uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := leb128.DecodeUint(r.b[r.off:], bits)
	if err != nil {
		r.fail(fmt.Errorf("at offset %d: %w", r.off, err))
		return 0
	}
	r.off += n
	return v
}

func (r *reader) u32() uint32 { return uint32(r.uleb(32)) }

func (r *reader) sleb(bits uint) {
	if r.err != nil {
		return
	}
	_, n, err := leb128.DecodeInt(r.b[r.off:], bits)
	if err != nil {
		r.fail(fmt.Errorf("at offset %d: %w", r.off, err))
		return
	}
	r.off += n
}

func (r *reader) take(n uint32) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.fail(fmt.Errorf("%d bytes at offset %d run past the end (%d left)", n, r.off, len(r.b)-r.off))
		return nil
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

func (r *reader) name() (string, bool) {
	b := r.take(r.u32())
	return string(b), r.err == nil
}

func (r *reader) limits() {
	flags := r.byte()
	bits := uint(32)
	if flags&4 != 0 {
		bits = 64
	}
	r.uleb(bits)
	if flags&1 != 0 {
		r.uleb(bits)
	}
}

// blockType reads a block type: empty (0x40), a value type, or a type index
// (a signed 33-bit LEB128).
func (r *reader) blockType() {
	if r.err != nil {
		return
	}
	if r.off >= len(r.b) {
		r.fail(leb128.ErrEOF)
		return
	}
	switch c := r.b[r.off]; c {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.off++
	default:
		r.sleb(33)
	}
}

// memarg reads alignment (whose bit 6 announces a memory index, in
// multi-memory) and offset.
func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 {
		r.u32()
	}
	r.uleb(64)
}
