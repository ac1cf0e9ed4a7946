//go:build wasmer

package wasmer

// #include "native.h"
import "C"

import (
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/chimera-fabric/fabric/executor"
)

// currentRun is the run whose guest is executing: a worker runs one at a
// time, and host calls arrive on the guest's native thread.
var currentRun atomic.Pointer[guestRun]

// hostFunc is a function of the fabric or wasi_snapshot_preview1 module.
type hostFunc struct {
	module, name string
	params       []executor.ValType
	results      []executor.ValType
	// call serves a call; p holds the arguments (an i32 zero-extended, an
	// f64 as its bits). stop says the guest must stop (the run has the
	// reason).
	call func(r *guestRun, p []uint64) (result uint64, stop bool)
}

// maxHostParams is the most parameters a host function takes (path_open).
const maxHostParams = 9

//export fabHostCall
func fabHostCall(id C.uintptr_t, args *C.fab_val_t, nargs C.size_t, results *C.fab_val_t, nresults C.size_t) C.uint32_t {
	r := currentRun.Load()
	if r == nil || int(id) >= len(hostTable) {
		return 1
	}
	f := &hostTable[id]
	if int(nargs) != len(f.params) || int(nresults) != len(f.results) || len(f.params) > maxHostParams {
		return 1
	}
	var buf [maxHostParams]uint64
	p := buf[:len(f.params)]
	for i, a := range unsafe.Slice(args, int(nargs)) {
		v := unsafe.Pointer(&a.of)
		switch f.params[i] {
		case executor.I64:
			p[i] = uint64(*(*int64)(v))
		case executor.F64:
			p[i] = math.Float64bits(*(*float64)(v))
		case executor.F32:
			p[i] = uint64(math.Float32bits(*(*float32)(v)))
		default:
			p[i] = uint64(uint32(*(*int32)(v)))
		}
	}
	res, stop := r.callHost(f, p)
	if stop {
		return 1
	}
	if nresults == 1 {
		out := unsafe.Slice(results, 1)
		out[0].kind = 0 // i32: every host function's result
		*(*int32)(unsafe.Pointer(&out[0].of)) = int32(uint32(res))
	}
	return 0
}
