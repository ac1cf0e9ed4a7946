//go:build wasip1

package guest

import (
	"sync"
	"unsafe"
)

// The fabric host module of GUEST_ABI.md. Pointers and lengths are i32 in
// the module's signatures: the compiler lowers unsafe.Pointer to a 32-bit
// linear-memory address and uint32 to i32. A pointer passed to an import
// stays live for the call, and the Go heap on wasm never moves objects, so
// the host reads and writes the very bytes the slices hold.

//go:wasmimport fabric input_len
func fabricInputLen() uint32

//go:wasmimport fabric input_read
func fabricInputRead(ptr unsafe.Pointer)

//go:wasmimport fabric output_write
func fabricOutputWrite(ptr unsafe.Pointer, n uint32)

//go:wasmimport fabric error_write
func fabricErrorWrite(ptr unsafe.Pointer, n uint32)

//go:wasmimport fabric log
func fabricLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport fabric progress
func fabricProgress(permille int32)

//go:wasmimport fabric kpi
func fabricKPI(namePtr unsafe.Pointer, nameLen uint32, value float64)

// newTask forgets the input read by an earlier task of the instance: a
// reactor's instance may serve task after task (reuse_instances), each
// entering through Handle. input_read may be called any number of times.
func newTask() { inputOnce, input = sync.Once{}, nil }

func readInput() []byte {
	n := fabricInputLen()
	if n == 0 {
		return []byte{}
	}
	b := make([]byte, n)
	fabricInputRead(unsafe.Pointer(&b[0]))
	return b
}

func writeOutput(b []byte) {
	fabricOutputWrite(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
}

func writeError(msg string) {
	fabricErrorWrite(unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func writeLog(level Level, msg string) {
	fabricLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func reportProgress(permille int32) { fabricProgress(permille) }

func reportKPI(name string, v float64) {
	fabricKPI(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), v)
}
