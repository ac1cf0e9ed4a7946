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
