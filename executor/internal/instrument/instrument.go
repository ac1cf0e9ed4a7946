// Package instrument rewrites a WebAssembly module so that its guest comes
// back to the host, regularly and cheaply, wherever it runs.
//
// A guest compiled to machine code by wazero runs on a goroutine that the Go
// runtime cannot preempt: its code has no safepoint. Such a guest in a long
// loop does not only ignore its timeout; it also blocks every stop-the-world
// phase of the garbage collector, which freezes the whole process (timers
// included) until the guest calls into Go. wazero's WithCloseOnContextDone
// leaves the compiled code for Go at every loop iteration (tens of
// nanoseconds each) and not at function entries, so a loop-free recursion
// that is exponential in time (naive Fibonacci) is never stopped.
//
// Interrupts adds a mutable i32 global, the budget, and an imported host
// function, YieldModule.YieldName of type () -> (i32), and puts a check at
// the start of every function body, of every loop body, and after every
// SegmentInstructions instructions of straight-line code:
//
//	global.get $budget
//	i32.const 1
//	i32.sub
//	global.set $budget
//	global.get $budget
//	i32.const 0
//	i32.le_s
//	if
//	  call $yield
//	  global.set $budget
//	end
//
// so the guest calls the host at least once every Budget checks: a few
// nanoseconds per check, one Go call per Budget checks. The host's yield
// function is a safepoint, decides whether the guest must stop (it traps
// it), and returns the next budget (normally Budget).
//
// The added import shifts the index of every function the module defines by
// one, so every reference to one is renumbered: calls, ref.func, exports,
// element segments, global initializers and the name section.
//
// The module's start function would run during instantiation, with no way
// to stop it, so the start section is removed and the function exported as
// StartExport: the host calls it right after instantiating, which is what
// instantiation would have done. Tables get a maximum (see MaxTableEntries).
// DWARF custom sections (".debug_*") are dropped: the inserted checks make
// their code offsets wrong. The engine validates the rewritten module as it
// would have the original.
//
// With Options.Trampoline, the module also imports a table,
// TrampolineModule.TrampolineTable, and fills it at instantiation with the
// start function and the named exports, so that the host can call them
// through a trampoline module's call_indirect instead of through entry
// points of the instance's own (see Instrument). The imported table comes
// before the module's own tables, so every table index is renumbered, and
// the element segments that fill it come before the module's own, so every
// element segment index is too.
package instrument

import (
	"errors"
	"fmt"
	"strings"

	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// The host function Interrupts imports, and the export of the start
// function. A module that already exports StartExport is refused.
const (
	YieldModule = "fabric"
	YieldName   = "fabric:yield"
	StartExport = "fabric:start"
)

// The table that Options.Trampoline makes a module import. Its entry 0 is
// the module's start function (null when it has none), entry i+1 the
// function exported as Options.Trampoline[i] (null when "" or not
// exported). The import asks for TrampolineSlots(len(Trampoline)) entries.
const (
	TrampolineModule = "fabric:trampoline"
	TrampolineTable  = "table"
)

// TrampolineSlots is the size of the trampoline table of n named entries.
func TrampolineSlots(n int) uint32 { return uint32(n) + 1 }

// Options are Instrument's options.
type Options struct {
	// Trampoline names the exported functions to put in the trampoline
	// table, after the start function; nil imports no table.
	Trampoline []string
	// ExportGlobals exports every mutable global the module defines (the
	// budget included) as GlobalExport(index), so that the host can read
	// and set them; see Module.Globals.
	ExportGlobals bool
}

// GlobalExportPrefix begins the names of the exports Options.ExportGlobals
// adds; a module exporting a name with it is refused.
const GlobalExportPrefix = "fabric:global:"

// GlobalExport is the name Options.ExportGlobals exports global index as.
func GlobalExport(index uint32) string { return fmt.Sprintf("%s%d", GlobalExportPrefix, index) }

// Global is a mutable global a module defines.
type Global struct {
	Index uint32
	Type  byte // its value type's encoding: 0x7f i32 ... 0x7b v128, 0x70 funcref
}

// Budget is the number of checks between two calls of the yield function;
// the yield function normally returns it.
const Budget = 1024

// SegmentInstructions is the most instructions of straight-line code left
// without a check.
const SegmentInstructions = 1024

// MaxTableEntries caps the entries of a module's tables, all together: a
// table lives outside linear memory and its quota, so Interrupts rewrites
// every table's maximum so that the tables cannot grow past this many
// entries in all (table.grow past it returns -1). Each table may grow by an
// equal share of what its initial sizes leave.
const MaxTableEntries = 1 << 20

// Module is an instrumented module.
type Module struct {
	Wasm []byte
	// HasStart says the module had a start function, now exported as
	// StartExport; the host must call it after instantiation.
	HasStart bool
	// Globals are the mutable globals the module defines, the budget
	// last.
	Globals []Global
	// Fixed is "" when every piece of an instance's state other than its
	// linear memory and its mutable globals stays as instantiation left
	// it whatever the guest does: no instruction can change a table, an
	// element segment or a data segment (table.set, table.grow,
	// table.fill, table.copy, table.init, elem.drop, data.drop), no table
	// is exported or imported by the module itself, and no global is
	// imported. Otherwise it names the first thing found that breaks it.
	Fixed string
}

// Section ids, and their order in a binary (custom sections aside).
const (
	secCustom = 0
	secType   = 1
	secImport = 2
	secTable  = 4
	secGlobal = 6
	secExport = 7
	secStart  = 8
	secElem   = 9
	secCode   = 10
)

var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// rewriter holds what the sections' rewrites need.
type rewriter struct {
	importedFuncs uint32 // function imports of the original; the yield function's index
	check         []byte
	// With a trampoline: the imported tables of the original (the
	// trampoline table's index) and the element segments put first.
	tramp          bool
	importedTables uint32
	addedElems     uint32
	// unfixed is the first reason found for Module.Fixed.
	unfixed string
}

// notFixed records why the module's instance state is not fixed, unless a
// reason is recorded already.
func (w *rewriter) notFixed(format string, args ...any) {
	if w.unfixed == "" {
		w.unfixed = fmt.Sprintf(format, args...)
	}
}

// funcIndex renumbers a function index of the original module.
func (w *rewriter) funcIndex(idx uint32) uint32 {
	if idx >= w.importedFuncs {
		return idx + 1
	}
	return idx
}

// tableIndex renumbers a table index of the original module.
func (w *rewriter) tableIndex(idx uint32) uint32 {
	if w.tramp && idx >= w.importedTables {
		return idx + 1
	}
	return idx
}

// elemIndex renumbers an element segment index of the original module.
func (w *rewriter) elemIndex(idx uint32) uint32 { return idx + w.addedElems }

// Interrupts instruments b without a trampoline; see the package
// documentation.
func Interrupts(b []byte) (Module, error) { return Instrument(b, Options{}) }

// Instrument instruments b; see the package documentation.
func Instrument(b []byte, o Options) (Module, error) {
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

	var types, importedGlobals, definedGlobals, start uint32
	var globals []Global
	w := &rewriter{tramp: o.Trampoline != nil}
	hasStart := false
	exported := map[string]uint32{} // function exports, by name
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case secType:
			types = r.u32()
		case secImport:
			w.importedFuncs, importedGlobals, w.importedTables = countImports(r)
			if importedGlobals > 0 {
				w.notFixed("the module imports a global")
			}
			if w.importedTables > 0 {
				w.notFixed("the module imports a table")
			}
		case secGlobal:
			definedGlobals = r.u32()
			for i := uint32(0); i < definedGlobals && r.err == nil; i++ {
				typ := r.byte()
				if r.byte() == 1 {
					globals = append(globals, Global{Index: importedGlobals + i, Type: typ})
				}
				w.constExpr(r, nil)
			}
		case secStart:
			start, hasStart = r.u32(), true
		case secExport:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				name, _ := r.name()
				kind := r.byte()
				idx := r.u32()
				switch kind {
				case 0x00:
					exported[name] = idx
				case 0x01:
					w.notFixed("the module exports table %q", name)
				}
			}
		}
		if r.err != nil {
			return Module{}, fmt.Errorf("%s section: %w", sectionName(s.id), r.err)
		}
	}
	budget := importedGlobals + definedGlobals
	yield := w.importedFuncs
	g := leb128.AppendUint(nil, uint64(budget))
	w.check = cat([]byte{0x23}, g, []byte{0x41, 0x01, 0x6b, 0x24}, g,
		[]byte{0x23}, g, []byte{0x41, 0x00, 0x4c, 0x04, 0x40, 0x10}, leb128.AppendUint(nil, uint64(yield)),
		[]byte{0x24}, g, []byte{0x0b})

	// What the module gets: the yield function's type and import, the
	// budget global, and the start function's export.
	newType := []byte{0x60, 0x00, 0x01, 0x7f} // () -> (i32)
	newImport := cat(appendName(nil, YieldModule), appendName(nil, YieldName), []byte{0x00}, leb128.AppendUint(nil, uint64(types)))
	nImports := uint32(1)
	// The trampoline: its table's import, and an element segment per
	// function it holds, explicit table index and function index vector.
	var newElems []byte
	if w.tramp {
		slots := TrampolineSlots(len(o.Trampoline))
		newImport = cat(newImport, appendName(nil, TrampolineModule), appendName(nil, TrampolineTable),
			[]byte{0x01, 0x70, 0x00}, leb128.AppendUint(nil, uint64(slots)))
		nImports++
		fns := make([]int64, slots)
		fns[0] = -1
		if hasStart {
			fns[0] = int64(start)
		}
		for i, name := range o.Trampoline {
			fns[i+1] = -1
			if idx, ok := exported[name]; ok && name != "" {
				fns[i+1] = int64(idx)
			}
		}
		for slot, fn := range fns {
			if fn < 0 {
				continue
			}
			newElems = append(newElems, 0x02)
			newElems = leb128.AppendUint(newElems, uint64(w.importedTables))
			newElems = append(newElems, 0x41)
			newElems = leb128.AppendInt(newElems, int64(slot))
			newElems = append(newElems, 0x0b, 0x00, 0x01)
			newElems = leb128.AppendUint(newElems, uint64(w.funcIndex(uint32(fn))))
			w.addedElems++
		}
	}
	newGlobal := cat([]byte{0x7f, 0x01, 0x41}, leb128.AppendInt(nil, Budget), []byte{0x0b})
	var newExports []byte
	nExports := uint32(0)
	if hasStart {
		newExports = cat(appendName(nil, StartExport), []byte{0x00}, leb128.AppendUint(nil, uint64(w.funcIndex(start))))
		nExports = 1
	}
	globals = append(globals, Global{Index: budget, Type: 0x7f})
	if o.ExportGlobals {
		for _, g := range globals {
			newExports = cat(newExports, appendName(nil, GlobalExport(g.Index)), []byte{0x03}, leb128.AppendUint(nil, uint64(g.Index)))
			nExports++
		}
	}

	out := make([]byte, 0, len(b)+len(b)/4+64)
	out = append(out, b[:8]...)
	done := map[byte]bool{}
	add := func(id byte, old []byte) error {
		var err error
		switch id {
		case secType:
			out, err = appendVecSection(out, id, old, 1, newType)
		case secImport:
			out, err = appendVecSection(out, id, old, nImports, newImport)
		case secElem:
			var body []byte
			if old != nil {
				body, err = w.elements(old)
			}
			if err == nil && (body != nil || w.addedElems > 0) {
				out, err = prependVecSection(out, id, body, w.addedElems, newElems)
			}
		case secGlobal:
			var body []byte
			if old != nil {
				body, err = w.globals(old)
			}
			if err == nil {
				out, err = appendVecSection(out, id, body, 1, newGlobal)
			}
		case secExport:
			var body []byte
			if old != nil {
				body, err = w.exports(old)
			}
			if err == nil && (body != nil || nExports > 0) {
				out, err = appendVecSection(out, id, body, nExports, newExports)
			}
		}
		done[id] = true
		return err
	}
	added := []byte{secType, secImport, secGlobal, secExport, secElem}
	for _, s := range secs {
		if s.id != secCustom {
			for _, id := range added {
				if !done[id] && sectionRank[s.id] > sectionRank[id] {
					if err := add(id, nil); err != nil {
						return Module{}, err
					}
				}
			}
		}
		var body []byte
		var err error
		switch s.id {
		case secType, secImport, secGlobal, secExport, secElem:
			err = add(s.id, s.body)
		case secStart:
			// Removed: the host calls StartExport after instantiation.
		case secTable:
			if body, err = capTables(s.body); err == nil {
				out = appendSection(out, s.id, body)
			}
		case secCode:
			if body, err = w.code(s.body); err == nil {
				out = appendSection(out, s.id, body)
			}
		case secCustom:
			name, _ := (&reader{b: s.body}).name()
			switch {
			case strings.HasPrefix(name, ".debug_"):
			case name == "name":
				// Renumbered; dropped if malformed (it is only names).
				if body, nerr := w.names(s.body); nerr == nil {
					out = appendSection(out, s.id, body)
				}
			default:
				out = appendSection(out, s.id, s.body)
			}
		default:
			out = appendSection(out, s.id, s.body)
		}
		if err != nil {
			return Module{}, fmt.Errorf("%s section: %w", sectionName(s.id), err)
		}
	}
	for _, id := range added {
		if !done[id] {
			if err := add(id, nil); err != nil {
				return Module{}, err
			}
		}
	}
	return Module{Wasm: out, HasStart: hasStart, Globals: globals, Fixed: w.unfixed}, nil
}

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = leb128.AppendUint(out, uint64(len(body)))
	return append(out, body...)
}

// appendVecSection appends a vector section made of old's elements (old may
// be nil) followed by n more, encoded in extra.
func appendVecSection(out []byte, id byte, old []byte, n uint32, extra []byte) ([]byte, error) {
	return vecSection(out, id, old, n, extra, false)
}

// prependVecSection appends a vector section made of n elements, encoded in
// extra, followed by old's (old may be nil).
func prependVecSection(out []byte, id byte, old []byte, n uint32, extra []byte) ([]byte, error) {
	return vecSection(out, id, old, n, extra, true)
}

// vecSection appends a vector section of old's elements and the n encoded
// in extra, extra's first when first is set.
func vecSection(out []byte, id byte, old []byte, n uint32, extra []byte, first bool) ([]byte, error) {
	var count uint32
	var rest []byte
	if old != nil {
		r := &reader{b: old}
		count = r.u32()
		if r.err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionName(id), r.err)
		}
		rest = old[r.off:]
	}
	body := leb128.AppendUint(make([]byte, 0, 5+len(rest)+len(extra)), uint64(count+n))
	if first {
		body = append(append(body, extra...), rest...)
	} else {
		body = append(append(body, rest...), extra...)
	}
	return appendSection(out, id, body), nil
}

func appendName(out []byte, name string) []byte {
	out = leb128.AppendUint(out, uint64(len(name)))
	return append(out, name...)
}

func sectionName(id byte) string {
	switch id {
	case secType:
		return "type"
	case secImport:
		return "import"
	case secTable:
		return "table"
	case secGlobal:
		return "global"
	case secExport:
		return "export"
	case secStart:
		return "start"
	case secElem:
		return "element"
	case secCode:
		return "code"
	}
	return fmt.Sprintf("section %d", id)
}

// countImports counts an import section's functions, globals and tables.
func countImports(r *reader) (funcs, globals, tables uint32) {
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		_, _ = r.name()
		_, _ = r.name()
		switch kind := r.byte(); kind {
		case 0x00: // function: type index
			r.u32()
			funcs++
		case 0x01: // table: reference type, limits
			r.byte()
			r.limits()
			tables++
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
	return funcs, globals, tables
}

// exports renumbers the function exports, refusing StartExport.
func (w *rewriter) exports(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := leb128.AppendUint(make([]byte, 0, len(body)+8), uint64(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		name, _ := r.name()
		if name == StartExport || strings.HasPrefix(name, GlobalExportPrefix) {
			return nil, fmt.Errorf("the module exports %q, a name reserved for the host", name)
		}
		kind := r.byte()
		idx := r.u32()
		switch kind {
		case 0x00:
			idx = w.funcIndex(idx)
		case 0x01:
			idx = w.tableIndex(idx)
		}
		out = append(appendName(out, name), kind)
		out = leb128.AppendUint(out, uint64(idx))
	}
	return out, r.end()
}

// globals renumbers ref.func in the globals' initializers.
func (w *rewriter) globals(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := leb128.AppendUint(make([]byte, 0, len(body)+8), uint64(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		at := r.off
		r.byte() // value type
		r.byte() // mutability
		out = append(out, body[at:r.off]...)
		out = w.constExpr(r, out)
	}
	return out, r.end()
}

// constExpr copies a constant expression, renumbering ref.func.
func (w *rewriter) constExpr(r *reader, out []byte) []byte {
	for r.err == nil {
		at := r.off
		op := r.byte()
		if op == 0xd2 {
			out = append(out, op)
			out = leb128.AppendUint(out, uint64(w.funcIndex(r.u32())))
			continue
		}
		skipImmediates(r, op)
		out = append(out, r.b[at:r.off]...)
		if op == 0x0b {
			break
		}
	}
	return out
}

// elements renumbers the function indices of the element segments.
func (w *rewriter) elements(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := leb128.AppendUint(make([]byte, 0, len(body)+8), uint64(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return nil, fmt.Errorf("element segment %d: flags %d; want 0..7", i, flags)
		}
		// An active segment of table 0 (flags 0 or 4) names its table
		// once tables are renumbered (flags 2 or 6), with the element
		// kind or reference type those encodings add.
		implicit := flags&3 == 0 && w.tableIndex(0) != 0
		if implicit {
			out = leb128.AppendUint(out, uint64(flags|2))
			out = leb128.AppendUint(out, uint64(w.tableIndex(0)))
		} else {
			out = leb128.AppendUint(out, uint64(flags))
		}
		if flags&3 == 2 { // explicit table index
			out = leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
		}
		if flags&1 == 0 { // active: an offset
			out = w.constExpr(r, out)
		}
		switch {
		case flags&3 != 0: // element kind or reference type
			out = append(out, r.byte())
		case implicit && flags&4 == 0:
			out = append(out, 0x00) // funcref, as element kind
		case implicit:
			out = append(out, 0x70) // funcref, as reference type
		}
		m := r.u32()
		out = leb128.AppendUint(out, uint64(m))
		for j := uint32(0); j < m && r.err == nil; j++ {
			if flags&4 == 0 {
				out = leb128.AppendUint(out, uint64(w.funcIndex(r.u32())))
			} else {
				out = w.constExpr(r, out)
			}
		}
	}
	return out, r.end()
}

// names renumbers the function names (subsection 1), the functions of local
// names (subsection 2), the table names (5) and the element segment names
// (8) of the name section; the others are copied.
func (w *rewriter) names(body []byte) ([]byte, error) {
	r := &reader{b: body}
	name, _ := r.name()
	out := appendName(make([]byte, 0, len(body)+16), name)
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		sub := r.take(r.u32())
		if r.err != nil {
			break
		}
		renumber := map[byte]func(uint32) uint32{1: w.funcIndex, 2: w.funcIndex, 5: w.tableIndex, 8: w.elemIndex}[id]
		if renumber == nil {
			out = append(out, id)
			out = leb128.AppendUint(out, uint64(len(sub)))
			out = append(out, sub...)
			continue
		}
		sr := &reader{b: sub}
		n := sr.u32()
		nb := leb128.AppendUint(make([]byte, 0, len(sub)+8), uint64(n))
		for i := uint32(0); i < n && sr.err == nil; i++ {
			nb = leb128.AppendUint(nb, uint64(renumber(sr.u32())))
			at := sr.off
			if id != 2 {
				_, _ = sr.name()
			} else {
				locals := sr.u32()
				for j := uint32(0); j < locals && sr.err == nil; j++ {
					sr.u32()
					_, _ = sr.name()
				}
			}
			nb = append(nb, sub[at:sr.off]...)
		}
		if err := sr.end(); err != nil {
			return nil, err
		}
		out = append(out, id)
		out = leb128.AppendUint(out, uint64(len(nb)))
		out = append(out, nb...)
	}
	return out, r.end()
}

// capTables re-encodes a table section with every table's maximum capped
// so that all of them together stay within MaxTableEntries.
func capTables(body []byte) ([]byte, error) {
	type table struct {
		ref      byte
		min, max uint64
		hasMax   bool
	}
	r := &reader{b: body}
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(body)) {
		r.fail(fmt.Errorf("%d tables in %d bytes", n, len(body)))
	}
	var tables []table
	var sum uint64
	for i := uint32(0); i < n && r.err == nil; i++ {
		t := table{ref: r.byte()}
		flags := r.byte()
		if flags > 1 {
			r.fail(fmt.Errorf("table %d: limits flags 0x%02x; want 0 or 1", i, flags))
			break
		}
		t.min = r.uleb(32)
		if t.hasMax = flags == 1; t.hasMax {
			t.max = r.uleb(32)
		}
		sum += t.min
		tables = append(tables, t)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	if sum > MaxTableEntries {
		return nil, fmt.Errorf("the tables start with %d entries; the limit is %d in all", sum, MaxTableEntries)
	}
	out := leb128.AppendUint(nil, uint64(n))
	for _, t := range tables {
		limit := t.min + (MaxTableEntries-sum)/uint64(len(tables))
		if !t.hasMax || t.max > limit {
			t.max = limit
		}
		out = append(out, t.ref, 0x01)
		out = leb128.AppendUint(out, t.min)
		out = leb128.AppendUint(out, t.max)
	}
	return out, nil
}

// code instruments every function body of a code section.
func (w *rewriter) code(body []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := leb128.AppendUint(make([]byte, 0, len(body)+len(body)/4+16), uint64(n))
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fb := r.take(size)
		if r.err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, r.err)
		}
		var err error
		if fn, err = w.function(fn[:0], fb); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = leb128.AppendUint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	return out, r.end()
}

// function instruments one function body: a check at its start, at the
// start of every loop body, and after every SegmentInstructions
// instructions without one; function indices are renumbered.
func (w *rewriter) function(out, fb []byte) ([]byte, error) {
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
	out = append(out, w.check...)
	since := 0
	for r.off < len(fb) {
		at := r.off
		op := r.byte()
		switch {
		case op == 0x10 || op == 0x12 || op == 0xd2: // call, return_call, ref.func
			idx := r.u32()
			out = append(out, op)
			out = leb128.AppendUint(out, uint64(w.funcIndex(idx)))
		case w.tramp && (op == 0x11 || op == 0x13): // call_indirect, return_call_indirect: type, table
			typ := r.u32()
			out = append(out, op)
			out = leb128.AppendUint(out, uint64(typ))
			out = leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
		case op == 0x25 || op == 0x26: // table.get, table.set
			if op == 0x26 {
				w.notFixed("table.set")
			}
			out = append(out, op)
			out = leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
		case op == 0xfc:
			out = w.misc(r, out)
		default:
			skipImmediates(r, op)
			out = append(out, fb[at:r.off]...)
		}
		if r.err != nil {
			return nil, fmt.Errorf("instruction 0x%02x at offset %d: %w", op, at, r.err)
		}
		since++
		// A check is valid between any two instructions: it leaves the
		// operand stack as it found it. Not after the body's final end.
		if (op == 0x03 || since >= SegmentInstructions) && r.off < len(fb) {
			out = append(out, w.check...)
			since = 0
		}
	}
	return out, nil
}

// misc copies a 0xfc instruction (its prefix read already), renumbering
// its table and element segment indices.
func (w *rewriter) misc(r *reader, out []byte) []byte {
	sub := r.u32()
	out = leb128.AppendUint(append(out, 0xfc), uint64(sub))
	if name := stateOps[sub]; name != "" {
		w.notFixed("%s", name)
	}
	switch sub {
	case 12: // table.init elem, table
		out = leb128.AppendUint(out, uint64(w.elemIndex(r.u32())))
		return leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
	case 13: // elem.drop elem
		return leb128.AppendUint(out, uint64(w.elemIndex(r.u32())))
	case 14: // table.copy table, table
		out = leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
		return leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
	case 15, 16, 17: // table.grow, table.size, table.fill
		return leb128.AppendUint(out, uint64(w.tableIndex(r.u32())))
	}
	at := r.off
	skipMisc(r, sub)
	return append(out, r.b[at:r.off]...)
}

// stateOps are the 0xfc instructions that change a table, an element
// segment or a data segment.
var stateOps = map[uint32]string{9: "data.drop", 12: "table.init", 13: "elem.drop", 14: "table.copy", 15: "table.grow", 17: "table.fill"}

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

// end is the reader's error, or one for bytes left unread.
func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.err = fmt.Errorf("%d bytes left over", len(r.b)-r.off)
	}
	return r.err
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
