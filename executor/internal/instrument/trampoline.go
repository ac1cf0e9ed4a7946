package instrument

import (
	"strconv"

	"github.com/chimera-fabric/fabric/executor/internal/leb128"
)

// Trampoline builds the module whose table a module instrumented with
// Options.Trampoline imports: it exports TrampolineTable, of exactly slots
// funcref entries (it cannot grow), and for each entry of results a
// function "call<i>" of type (i32) -> (results[i]...) that calls the
// function in the table's entry given as its argument, whose type must be
// () -> (results[i]...) (call_indirect traps otherwise, and on a null
// entry). results[i] are value types by their binary encoding (0x7f i32,
// 0x7e i64, ...).
//
// A host calls a guest's function as call<i>(slot) through an instance of
// it: one instance, and the call engines of its exports, serve instance
// after instance of the guest.
func Trampoline(slots uint32, results ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, body []byte) {
		b = append(b, id)
		b = leb128.AppendUint(b, uint64(len(body)))
		b = append(b, body...)
	}
	n := uint64(len(results))
	types := leb128.AppendUint(nil, 2*n)
	for _, rs := range results {
		// The callee's type () -> rs, then the caller's (i32) -> rs.
		types = append(types, 0x60, 0x00)
		types = append(leb128.AppendUint(types, uint64(len(rs))), rs...)
		types = append(types, 0x60, 0x01, 0x7f)
		types = append(leb128.AppendUint(types, uint64(len(rs))), rs...)
	}
	section(secType, types)
	funcs := leb128.AppendUint(nil, n)
	for i := range results {
		funcs = leb128.AppendUint(funcs, uint64(2*i+1))
	}
	section(3, funcs)
	table := []byte{0x01, 0x70, 0x01}
	table = leb128.AppendUint(table, uint64(slots))
	table = leb128.AppendUint(table, uint64(slots))
	section(secTable, table)
	exports := leb128.AppendUint(nil, n+1)
	exports = append(appendName(exports, TrampolineTable), 0x01, 0x00)
	for i := range results {
		exports = append(appendName(exports, TrampolineCall(i)), 0x00)
		exports = leb128.AppendUint(exports, uint64(i))
	}
	section(secExport, exports)
	code := leb128.AppendUint(nil, n)
	for i := range results {
		body := []byte{0x00, 0x20, 0x00, 0x11} // no locals; local.get 0; call_indirect
		body = leb128.AppendUint(body, uint64(2*i))
		body = append(body, 0x00, 0x0b) // table 0; end
		code = leb128.AppendUint(code, uint64(len(body)))
		code = append(code, body...)
	}
	section(secCode, code)
	// Names, so that a trap's stack trace names the trampoline's frame
	// TrampolineModule.call<i> (see TrampolineFrame).
	names := appendName(nil, "name")
	mod := appendName(nil, TrampolineModule)
	names = append(names, 0x00)
	names = append(leb128.AppendUint(names, uint64(len(mod))), mod...)
	fns := leb128.AppendUint(nil, n)
	for i := range results {
		fns = appendName(leb128.AppendUint(fns, uint64(i)), TrampolineCall(i))
	}
	names = append(names, 0x01)
	names = append(leb128.AppendUint(names, uint64(len(fns))), fns...)
	section(secCustom, names)
	return b
}

// TrampolineFrame is how the stack trace of a trap (wazero's) begins the
// line of a Trampoline function's frame.
const TrampolineFrame = "\t" + TrampolineModule + ".call"

// TrampolineCall is the name of the Trampoline module's i-th function.
func TrampolineCall(i int) string { return "call" + strconv.Itoa(i) }
