// Declarations shared by the package's cgo files (build tag wasmer).
#ifndef FABRIC_WASMER_NATIVE_H
#define FABRIC_WASMER_NATIVE_H

#include <stddef.h>
#include <stdint.h>

// The few wasm-c-api types the package needs, as wasm.h (wasmer 2.0.0-rc2,
// shipped in wasmer-go v1.0.4) defines them.
typedef struct { size_t size; void* data; } fab_vec_t;
typedef struct {
	uint8_t kind; // 0 i32, 1 i64, 2 f32, 3 f64
	union { int32_t i32; int64_t i64; float f32; double f64; void* ref; } of;
} fab_val_t;

// fabHostCall (hostcall.go) serves a guest's call of host function id; it
// returns non-zero to stop the guest.
extern uint32_t fabHostCall(uintptr_t id, fab_val_t* args, size_t nargs, fab_val_t* results, size_t nresults);

// fabThreadMain (cthread.go) runs the Go function of handle h on the guest
// thread.
extern void fabThreadMain(uintptr_t h);

#endif
