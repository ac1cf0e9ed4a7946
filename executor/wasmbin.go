package executor

import (
	"errors"
	"fmt"
	"strings"

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

// InspectModule reads b's types, imports, functions, memories and exports.
// It fails on a binary that is not WebAssembly or whose sections it reads
// are malformed; it leaves every other check to the engine's validation.
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
		case 1:
			err = info.readTypes(sec)
		case 2:
			err = info.readImports(sec)
		case 3:
			err = info.readFuncs(sec)
		case 5:
			err = info.readMemories(sec)
		case 7:
			err = info.readExports(sec)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionName(id), err)
		}
		if sec.off != len(sec.b) {
			return nil, fmt.Errorf("%s section: %d bytes left over", sectionName(id), len(sec.b)-sec.off)
		}
	}
	// Imports may name types only once the type section is read, and the
	// type section comes first in a valid module; resolve them now.
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

func sectionName(id byte) string {
	switch id {
	case 1:
		return "type"
	case 2:
		return "import"
	case 3:
		return "function"
	case 5:
		return "memory"
	case 7:
		return "export"
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
	n, err := r.count()
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
		params, err := r.valTypes()
		if err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
		results, err := r.valTypes()
		if err != nil {
			return fmt.Errorf("type %d: %w", i, err)
		}
		m.Types = append(m.Types, Signature{Params: params, Results: results})
	}
	return nil
}

func (m *ModuleInfo) readImports(r *reader) error {
	n, err := r.count()
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
	n, err := r.count()
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

func (m *ModuleInfo) readMemories(r *reader) error {
	n, err := r.count()
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

func (m *ModuleInfo) readExports(r *reader) error {
	n, err := r.count()
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

// count reads a vector length, refusing one that cannot fit in what is left
// (every element takes at least one byte), so no input makes us allocate
// more than its own size.
func (r *reader) count() (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if int64(n) > int64(len(r.b)-r.off) {
		return 0, fmt.Errorf("count %d at offset %d exceeds the %d bytes left", n, r.off, len(r.b)-r.off)
	}
	return n, nil
}

func (r *reader) name() (string, error) {
	n, err := r.count()
	if err != nil {
		return "", err
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

func (r *reader) valTypes() ([]ValType, error) {
	n, err := r.count()
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
