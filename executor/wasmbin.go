package executor

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/chimera-fabric/fabric/executor/internal/instrument"
	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// This file reads the parts of a WebAssembly binary that the guest ABI
// constrains: types, imports, functions, memories and exports. It is not a
// validator (the engine validates the whole module); it exists because an
// engine's compiled-module API does not show every import (wazero shows
// neither imported globals nor tables) nor a memory that is not exported,
// and because both engines must refuse exactly the same modules.

// ValType is a WebAssembly value type, by its binary encoding.
type ValType byte

// Value types.
const (
	I32       ValType = 0x7f
	I64       ValType = 0x7e
	F32       ValType = 0x7d
	F64       ValType = 0x7c
	V128      ValType = 0x7b
	FuncRef   ValType = 0x70
	ExternRef ValType = 0x6f
)

func (v ValType) String() string {
	switch v {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	case V128:
		return "v128"
	case FuncRef:
		return "funcref"
	case ExternRef:
		return "externref"
	}
	return fmt.Sprintf("type(0x%02x)", byte(v))
}

// Signature is a function type.
type Signature struct {
	Params, Results []ValType
}

// Sig builds a Signature.
func Sig(params []ValType, results ...ValType) Signature {
	return Signature{Params: params, Results: results}
}

// String formats s as "(i32, i32) -> (i32)".
func (s Signature) String() string {
	return "(" + joinTypes(s.Params) + ") -> (" + joinTypes(s.Results) + ")"
}

func joinTypes(ts []ValType) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// Equal reports whether s and o are the same type.
func (s Signature) Equal(o Signature) bool {
	if len(s.Params) != len(o.Params) || len(s.Results) != len(o.Results) {
		return false
	}
	for i := range s.Params {
		if s.Params[i] != o.Params[i] {
			return false
		}
	}
	for i := range s.Results {
		if s.Results[i] != o.Results[i] {
			return false
		}
	}
	return true
}

// ExternKind is the kind of an import or export.
type ExternKind byte

// Extern kinds.
const (
	KindFunc   ExternKind = 0
	KindTable  ExternKind = 1
	KindMemory ExternKind = 2
	KindGlobal ExternKind = 3
	KindTag    ExternKind = 4
)

func (k ExternKind) String() string {
	switch k {
	case KindFunc:
		return "function"
	case KindTable:
		return "table"
	case KindMemory:
		return "memory"
	case KindGlobal:
		return "global"
	case KindTag:
		return "tag"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Import is one import of a module.
type Import struct {
	Module, Name string
	Kind         ExternKind
	// Type is the function's type when Kind is KindFunc.
	Type Signature
	// Memory is the memory's limits when Kind is KindMemory.
	Memory Limits
}

// Export is one export of a module.
type Export struct {
	Name  string
	Kind  ExternKind
	Index uint32
}

// Limits are a memory's (or table's) limits, in pages for a memory.
type Limits struct {
	Min    uint64
	Max    uint64
	HasMax bool
	Shared bool
	Is64   bool
}

// ModuleInfo is what InspectModule read from a binary.
type ModuleInfo struct {
	Types    []Signature
	Imports  []Import
	Funcs    []uint32 // type index of each function the module defines
	Memories []Limits // memories the module defines
	Exports  []Export

	importedFuncs []uint32 // type index of each imported function
}

// WasmPageSize is the size of a page of linear memory.
const WasmPageSize = 65536

// Structural limits of a module, checked by InspectModule before any engine
// decodes it. They are the limits browsers enforce (the WebAssembly JS API's
// implementation limits), so any toolchain's output fits them, except for
// tables, which are ours: a table's entries live outside linear memory and
// its quota, so a module's tables may start with at most MaxTableEntries
// entries in all, and engines must not let them grow past that either
// (wazero's rewrites every table's maximum, see package instrument). Every
// count is also checked against the bytes left, as each element takes at
// least one: wazero allocates by a declared count before it reads the
// elements, so a few bytes could otherwise make it allocate gigabytes.
const (
	MaxTypes             = 1_000_000
	MaxFunctions         = 1_000_000
	MaxImports           = 100_000
	MaxExports           = 100_000
	MaxGlobals           = 1_000_000
	MaxDataSegments      = 100_000
	MaxElemSegments      = 10_000_000
	MaxTables            = 100
	MaxTableEntries      = instrument.MaxTableEntries
	MaxFunctionParams    = 1_000
	MaxFunctionResults   = 1_000
	MaxFunctionLocals    = 50_000
	MaxFunctionBodyBytes = 7_654_321
)

// InspectModule reads b's types, imports, functions, memories and exports,
// and checks the structure of every section against the limits above. It
// fails on a binary that is not WebAssembly, whose sections are malformed
// where it reads them, or that breaks a limit; it leaves every other check
// to the engine's validation.
func InspectModule(b []byte) (*ModuleInfo, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary: it does not start with the magic \\0asm")
	}
	if v := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24; v != 1 {
		return nil, fmt.Errorf("unsupported WebAssembly binary version %d; want 1", v)
	}
	info := &ModuleInfo{}
	r := &reader{b: b, off: 8}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: size: %w", id, err)
		}
		if uint64(size) > uint64(len(r.b)-r.off) {
			return nil, fmt.Errorf("section %d at offset %d: size %d runs past the end of the %d-byte binary",
				id, r.off, size, len(r.b))
		}
		sec := &reader{b: r.b[:r.off+int(size)], off: r.off}
		r.off += int(size)
		switch id {
		case 0:
			err = readCustom(sec)
		case 1:
			err = info.readTypes(sec)
		case 2:
			err = info.readImports(sec)
		case 3:
			err = info.readFuncs(sec)
		case 4:
			err = readTables(sec)
		case 5:
			err = info.readMemories(sec)
		case 6:
			err = readGlobals(sec)
		case 7:
			err = info.readExports(sec)
		case 8, 12: // start function, data count
			_, err = sec.u32()
		case 9:
			err = readElements(sec)
		case 10:
			err = readCode(sec)
		case 11:
			err = readData(sec)
		case 13:
			err = readTags(sec)
		default:
			return nil, fmt.Errorf("unknown section id %d at offset %d", id, sec.off-1)
		}
		if err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionName(id), err)
		}
		if sec.off != len(sec.b) {
			return nil, fmt.Errorf("%s section: %d bytes left over", sectionName(id), len(sec.b)-sec.off)
		}
	}
	// Resolve the imported functions' types.
	fn := 0
	for i := range info.Imports {
		im := &info.Imports[i]
		if im.Kind != KindFunc {
			continue
		}
		idx := info.importedFuncs[fn]
		fn++
		if int(idx) >= len(info.Types) {
			return nil, fmt.Errorf("import %s.%s: type index %d out of range (%d types)", im.Module, im.Name, idx, len(info.Types))
		}
		im.Type = info.Types[idx]
	}
	return info, nil
}

var sectionNames = map[byte]string{
	0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
	7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count", 13: "tag",
}

func sectionName(id byte) string {
	if n, ok := sectionNames[id]; ok {
		return n
	}
	return fmt.Sprintf("section %d", id)
}

// FuncType returns the type of function index idx (imports first).
func (m *ModuleInfo) FuncType(idx uint32) (Signature, bool) {
	var t uint32
	switch {
	case int(idx) < len(m.importedFuncs):
		t = m.importedFuncs[idx]
	case int(idx)-len(m.importedFuncs) < len(m.Funcs):
		t = m.Funcs[int(idx)-len(m.importedFuncs)]
	default:
		return Signature{}, false
	}
	if int(t) >= len(m.Types) {
		return Signature{}, false
	}
	return m.Types[t], true
}

// ExportedFunc returns the type of the exported function name.
func (m *ModuleInfo) ExportedFunc(name string) (Signature, bool) {
	for _, e := range m.Exports {
		if e.Name == name && e.Kind == KindFunc {
			return m.FuncType(e.Index)
		}
	}
	return Signature{}, false
}

// ExportsName reports whether the module exports name with kind k.
func (m *ModuleInfo) ExportsName(name string, k ExternKind) bool {
	for _, e := range m.Exports {
		if e.Name == name && e.Kind == k {
			return true
		}
	}
	return false
}

// InitialMemoryBytes is the initial size of the module's first memory,
// imported or defined; 0 when it has none.
func (m *ModuleInfo) InitialMemoryBytes() uint64 {
	for _, im := range m.Imports {
		if im.Kind == KindMemory {
			return pagesToBytes(im.Memory.Min)
		}
	}
	if len(m.Memories) > 0 {
		return pagesToBytes(m.Memories[0].Min)
	}
	return 0
}

func pagesToBytes(pages uint64) uint64 {
	if pages > 1<<47 { // saturate instead of overflowing
		return 1 << 63
	}
	return pages * WasmPageSize
}

func (m *ModuleInfo) readTypes(r *reader) error {
	n, err := r.count(MaxTypes, "types")
	if err != nil {
		return err
	}
	m.Types = make([]Signature, 0, n)
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("type %d: form 0x%02x; want 0x60 (func)", i, form)
		}
		params, err := r.valTypes(MaxFunctionParams, "parameters")
		if err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
		results, err := r.valTypes(MaxFunctionResults, "results")
		if err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
		m.Types = append(m.Types, Signature{Params: params, Results: results})
	}
	return nil
}

func (m *ModuleInfo) readImports(r *reader) error {
	n, err := r.count(MaxImports, "imports")
	if err != nil {
		return err
	}
	m.Imports = make([]Import, 0, n)
	for i := uint32(0); i < n; i++ {
		var im Import
		if im.Module, err = r.name(); err != nil {
			return fmt.Errorf("import %d: module name: %w", i, err)
		}
		if im.Name, err = r.name(); err != nil {
			return fmt.Errorf("import %d: name: %w", i, err)
		}
		kind, err := r.byte()
		if err != nil {
			return fmt.Errorf("import %s.%s: %w", im.Module, im.Name, err)
		}
		im.Kind = ExternKind(kind)
		switch im.Kind {
		case KindFunc:
			idx, err := r.u32()
			if err != nil {
				return fmt.Errorf("import %s.%s: %w", im.Module, im.Name, err)
			}
			m.importedFuncs = append(m.importedFuncs, idx)
		case KindTable:
			if _, err = r.byte(); err == nil { // reference type
				_, err = r.limits()
			}
		case KindMemory:
			im.Memory, err = r.limits()
		case KindGlobal:
			if _, err = r.byte(); err == nil { // value type
				_, err = r.byte() // mutability
			}
		case KindTag:
			if _, err = r.byte(); err == nil { // attribute
				_, err = r.u32()
			}
		default:
			return fmt.Errorf("import %s.%s: unknown kind 0x%02x", im.Module, im.Name, kind)
		}
		if err != nil {
			return fmt.Errorf("import %s.%s: %w", im.Module, im.Name, err)
		}
		m.Imports = append(m.Imports, im)
	}
	return nil
}

func (m *ModuleInfo) readFuncs(r *reader) error {
	n, err := r.count(MaxFunctions, "functions")
	if err != nil {
		return err
	}
	m.Funcs = make([]uint32, 0, n)
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32()
		if err != nil {
			return fmt.Errorf("function %d: %w", i, err)
		}
		m.Funcs = append(m.Funcs, idx)
	}
	return nil
}

func readTables(r *reader) error {
	n, err := r.count(MaxTables, "tables")
	if err != nil {
		return err
	}
	var entries uint64
	for i := uint32(0); i < n; i++ {
		if _, err := r.byte(); err != nil { // reference type
			return fmt.Errorf("table %d: %w", i, err)
		}
		l, err := r.limits()
		if err != nil {
			return fmt.Errorf("table %d: %w", i, err)
		}
		if entries += l.Min; entries > MaxTableEntries {
			return fmt.Errorf("the tables start with %d entries or more; the limit is %d in all", entries, MaxTableEntries)
		}
	}
	return nil
}

func (m *ModuleInfo) readMemories(r *reader) error {
	n, err := r.count(MaxTables, "memories")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		l, err := r.limits()
		if err != nil {
			return fmt.Errorf("memory %d: %w", i, err)
		}
		m.Memories = append(m.Memories, l)
	}
	return nil
}

func readGlobals(r *reader) error {
	n, err := r.count(MaxGlobals, "globals")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.byte(); err != nil { // value type
			return fmt.Errorf("global %d: %w", i, err)
		}
		if _, err := r.byte(); err != nil { // mutability
			return fmt.Errorf("global %d: %w", i, err)
		}
		if err := r.constExpr(); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
	}
	return nil
}

func (m *ModuleInfo) readExports(r *reader) error {
	n, err := r.count(MaxExports, "exports")
	if err != nil {
		return err
	}
	m.Exports = make([]Export, 0, n)
	for i := uint32(0); i < n; i++ {
		var e Export
		if e.Name, err = r.name(); err != nil {
			return fmt.Errorf("export %d: %w", i, err)
		}
		k, err := r.byte()
		if err != nil {
			return fmt.Errorf("export %q: %w", e.Name, err)
		}
		e.Kind = ExternKind(k)
		if e.Index, err = r.u32(); err != nil {
			return fmt.Errorf("export %q: %w", e.Name, err)
		}
		m.Exports = append(m.Exports, e)
	}
	return nil
}

// readElements checks the element segments' encodings (flags 0 to 7).
func readElements(r *reader) error {
	n, err := r.count(MaxElemSegments, "element segments")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := readElement(r); err != nil {
			return fmt.Errorf("element segment %d: %w", i, err)
		}
	}
	return nil
}

func readElement(r *reader) error {
	flags, err := r.u32()
	if err != nil {
		return err
	}
	if flags > 7 {
		return fmt.Errorf("flags %d; want 0..7", flags)
	}
	if flags&2 != 0 && flags&1 == 0 { // explicit table index
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	if flags&1 == 0 { // active: an offset
		if err := r.constExpr(); err != nil {
			return err
		}
	}
	if flags&3 != 0 { // element kind or reference type
		if _, err := r.byte(); err != nil {
			return err
		}
	}
	n, err := r.count(math.MaxUint32, "elements")
	if err != nil {
		return err
	}
	for j := uint32(0); j < n; j++ {
		if flags&4 == 0 {
			_, err = r.u32() // function index
		} else {
			err = r.constExpr()
		}
		if err != nil {
			return fmt.Errorf("element %d: %w", j, err)
		}
	}
	return nil
}

// readCode checks the function bodies' sizes and local declarations.
func readCode(r *reader) error {
	n, err := r.count(MaxFunctions, "function bodies")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("function body %d: %w", i, err)
		}
		if size > MaxFunctionBodyBytes {
			return fmt.Errorf("function body %d is %d bytes; the limit is %d", i, size, MaxFunctionBodyBytes)
		}
		body, err := r.bytes(size)
		if err != nil {
			return fmt.Errorf("function body %d: %w", i, err)
		}
		br := &reader{b: body}
		groups, err := br.count(MaxFunctionLocals, "local declarations")
		if err != nil {
			return fmt.Errorf("function body %d: %w", i, err)
		}
		var locals uint64
		for g := uint32(0); g < groups; g++ {
			c, err := br.u32()
			if err == nil {
				_, err = br.byte()
			}
			if err != nil {
				return fmt.Errorf("function body %d: locals: %w", i, err)
			}
			if locals += uint64(c); locals > MaxFunctionLocals {
				return fmt.Errorf("function body %d declares %d locals or more; the limit is %d", i, locals, MaxFunctionLocals)
			}
		}
	}
	return nil
}

// readData checks the data segments' encodings and sizes.
func readData(r *reader) error {
	n, err := r.count(MaxDataSegments, "data segments")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return fmt.Errorf("data segment %d: %w", i, err)
		}
		switch flags {
		case 0:
			err = r.constExpr()
		case 1:
		case 2:
			if _, err = r.u32(); err == nil {
				err = r.constExpr()
			}
		default:
			err = fmt.Errorf("flags %d; want 0, 1 or 2", flags)
		}
		if err == nil {
			var size uint32
			if size, err = r.u32(); err == nil {
				_, err = r.bytes(size)
			}
		}
		if err != nil {
			return fmt.Errorf("data segment %d: %w", i, err)
		}
	}
	return nil
}

func readTags(r *reader) error {
	n, err := r.count(MaxTypes, "tags")
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.byte(); err != nil { // attribute
			return fmt.Errorf("tag %d: %w", i, err)
		}
		if _, err := r.u32(); err != nil {
			return fmt.Errorf("tag %d: %w", i, err)
		}
	}
	return nil
}

// readCustom checks the "name" section's vectors (which wazero decodes);
// other custom sections are opaque.
func readCustom(r *reader) error {
	name, err := r.name()
	if err != nil {
		return err
	}
	if name != "name" {
		r.off = len(r.b)
		return nil
	}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		body, err := r.bytes(size)
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
		if id != 1 && id != 2 { // function names, local names
			continue
		}
		sr := &reader{b: body}
		n, err := sr.count(math.MaxUint32, "names")
		for i := uint32(0); i < n && err == nil; i++ {
			if _, err = sr.u32(); err != nil {
				break
			}
			if id == 1 {
				_, err = sr.name()
				continue
			}
			var locals uint32
			locals, err = sr.count(math.MaxUint32, "local names")
			for j := uint32(0); j < locals && err == nil; j++ {
				if _, err = sr.u32(); err == nil {
					_, err = sr.name()
				}
			}
		}
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
	}
	return nil
}

// reader reads a WebAssembly binary's encodings from b[off:].
type reader struct {
	b   []byte
	off int
}

var errEOF = leb128.ErrEOF

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	v, n, err := leb128.DecodeUint(r.b[r.off:], bits)
	if err != nil {
		return 0, fmt.Errorf("at offset %d: %w", r.off, err)
	}
	r.off += n
	return v, nil
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// count reads a vector length of at most max elements, refusing one that
// cannot fit in what is left (every element takes at least one byte), so
// that no input makes an engine allocate more than its own size.
func (r *reader) count(max uint32, what string) (uint32, error) {
	at := r.off
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("%d %s; the limit is %d", n, what, max)
	}
	if int64(n) > int64(len(r.b)-r.off) {
		return 0, fmt.Errorf("%d %s at offset %d, but only %d bytes are left", n, what, at, len(r.b)-r.off)
	}
	return n, nil
}

func (r *reader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("%d bytes at offset %d run past the end (%d left)", n, r.off, len(r.b)-r.off)
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

func (r *reader) name() (string, error) {
	n, err := r.count(math.MaxUint32, "name bytes")
	if err != nil {
		return "", err
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

func (r *reader) valTypes(max uint32, what string) ([]ValType, error) {
	n, err := r.count(max, what)
	if err != nil {
		return nil, err
	}
	ts := make([]ValType, n)
	for i := range ts {
		c, _ := r.byte() // count checked that the bytes are there
		ts[i] = ValType(c)
	}
	return ts, nil
}

// constExpr skips a constant expression: instructions up to end.
func (r *reader) constExpr() error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			err = r.sleb(32)
		case 0x42: // i64.const
			err = r.sleb(64)
		case 0x43:
			_, err = r.bytes(4)
		case 0x44:
			_, err = r.bytes(8)
		case 0x23, 0xd2: // global.get, ref.func
			_, err = r.u32()
		case 0xd0: // ref.null
			_, err = r.byte()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constants: add, sub, mul
		case 0xfd: // v128.const
			var sub uint32
			if sub, err = r.u32(); err == nil {
				if sub != 0x0c {
					return fmt.Errorf("0xfd %d in a constant expression", sub)
				}
				_, err = r.bytes(16)
			}
		default:
			return fmt.Errorf("opcode 0x%02x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

func (r *reader) sleb(bits uint) error {
	_, n, err := leb128.DecodeInt(r.b[r.off:], bits)
	if err != nil {
		return fmt.Errorf("at offset %d: %w", r.off, err)
	}
	r.off += n
	return nil
}

func (r *reader) limits() (Limits, error) {
	flags, err := r.byte()
	if err != nil {
		return Limits{}, err
	}
	if flags > 7 {
		return Limits{}, fmt.Errorf("limits flags 0x%02x; want 0..7", flags)
	}
	l := Limits{HasMax: flags&1 != 0, Shared: flags&2 != 0, Is64: flags&4 != 0}
	bits := uint(32)
	if l.Is64 {
		bits = 64
	}
	if l.Min, err = r.uleb(bits); err != nil {
		return Limits{}, err
	}
	if l.HasMax {
		if l.Max, err = r.uleb(bits); err != nil {
			return Limits{}, err
		}
	}
	return l, nil
}
