//go:build wasmer

package wasmer

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

typedef void* (*fab_instance_new_t)(void*, const void*, const fab_vec_t*, void**);
typedef void (*fab_instance_delete_t)(void*);
typedef void (*fab_instance_exports_t)(const void*, fab_vec_t*);
typedef void (*fab_vec_delete_t)(fab_vec_t*);
typedef void* (*fab_cast_t)(void*);
typedef uint8_t* (*fab_memory_data_t)(void*);
typedef size_t (*fab_memory_data_size_t)(const void*);
typedef uint32_t (*fab_memory_size_t)(const void*);
typedef void (*fab_global_get_t)(const void*, fab_val_t*);
typedef void (*fab_global_set_t)(void*, const fab_val_t*);
typedef void (*fab_trap_message_t)(const void*, fab_vec_t*);
typedef void (*fab_trap_delete_t)(void*);
typedef int (*fab_last_error_length_t)(void);
typedef int (*fab_last_error_message_t)(char*, int);

static fab_instance_new_t i_instance_new;
static fab_instance_delete_t i_instance_delete;
static fab_instance_exports_t i_instance_exports;
static fab_vec_delete_t i_extern_vec_delete;
static fab_cast_t i_extern_as_func;
static fab_cast_t i_extern_as_global;
static fab_cast_t i_extern_as_memory;
static fab_cast_t i_func_as_extern;
static fab_memory_data_t i_memory_data;
static fab_memory_data_size_t i_memory_data_size;
static fab_memory_size_t i_memory_size;
static fab_global_get_t i_global_get;
static fab_global_set_t i_global_set;
static fab_trap_message_t i_trap_message;
static fab_vec_delete_t i_byte_vec_delete;
static fab_trap_delete_t i_trap_delete;
static fab_last_error_length_t i_last_error_length;
static fab_last_error_message_t i_last_error_message;

static const char* fab_load_instance(void) {
#define FAB_SYM(var, name) if (!(var = dlsym(RTLD_DEFAULT, name))) return name;
	FAB_SYM(i_instance_new, "wasm_instance_new")
	FAB_SYM(i_instance_delete, "wasm_instance_delete")
	FAB_SYM(i_instance_exports, "wasm_instance_exports")
	FAB_SYM(i_extern_vec_delete, "wasm_extern_vec_delete")
	FAB_SYM(i_extern_as_func, "wasm_extern_as_func")
	FAB_SYM(i_extern_as_global, "wasm_extern_as_global")
	FAB_SYM(i_extern_as_memory, "wasm_extern_as_memory")
	FAB_SYM(i_func_as_extern, "wasm_func_as_extern")
	FAB_SYM(i_memory_data, "wasm_memory_data")
	FAB_SYM(i_memory_data_size, "wasm_memory_data_size")
	FAB_SYM(i_memory_size, "wasm_memory_size")
	FAB_SYM(i_global_get, "wasm_global_get")
	FAB_SYM(i_global_set, "wasm_global_set")
	FAB_SYM(i_trap_message, "wasm_trap_message")
	FAB_SYM(i_byte_vec_delete, "wasm_byte_vec_delete")
	FAB_SYM(i_trap_delete, "wasm_trap_delete")
	FAB_SYM(i_last_error_length, "wasmer_last_error_length")
	FAB_SYM(i_last_error_message, "wasmer_last_error_message")
#undef FAB_SYM
	return NULL;
}

static char* fab_strndup(const char* s, size_t n) {
	char* d = malloc(n + 1);
	if (!d) return NULL;
	if (n) memcpy(d, s, n);
	d[n] = 0;
	return d;
}

// fab_instantiate instantiates module in store with the imports given (in
// the module's import order) and fills exports (in its export order). It
// returns the instance, or NULL and in *err why (malloc'd, may be NULL).
static void* fab_instantiate(void* store, const void* module, const fab_vec_t* imports, fab_vec_t* exports, char** err) {
	void* trap = NULL;
	void* inst = i_instance_new(store, module, imports, &trap);
	if (trap) {
		if (inst) i_instance_delete(inst);
		fab_vec_t msg = {0, NULL};
		i_trap_message(trap, &msg);
		*err = fab_strndup(msg.data, msg.size);
		i_byte_vec_delete(&msg);
		i_trap_delete(trap);
		return NULL;
	}
	if (!inst) {
		int n = i_last_error_length();
		if (n > 0) {
			*err = malloc(n);
			if (*err && i_last_error_message(*err, n) < 0) {
				free(*err);
				*err = NULL;
			}
		}
		return NULL;
	}
	i_instance_exports(inst, exports);
	return inst;
}

static void fab_instance_delete(void* inst, fab_vec_t* exports) {
	i_instance_delete(inst);
	i_extern_vec_delete(exports);
}

// Export kinds of fab_export.
enum { FAB_FUNC = 0, FAB_GLOBAL = 1, FAB_MEMORY = 3 };

// fab_export is export i of an instance as a function, global or memory
// (borrowed: it lives as long as the instance), or NULL.
static void* fab_export(const fab_vec_t* exports, size_t i, int kind) {
	if (i >= exports->size) return NULL;
	void* ext = ((void**)exports->data)[i];
	switch (kind) {
	case FAB_FUNC: return i_extern_as_func(ext);
	case FAB_GLOBAL: return i_extern_as_global(ext);
	case FAB_MEMORY: return i_extern_as_memory(ext);
	}
	return NULL;
}

static void* fab_func_extern(void* func) { return i_func_as_extern(func); }
static uint8_t* fab_memory_data(void* m) { return i_memory_data(m); }
static size_t fab_memory_data_size(void* m) { return i_memory_data_size(m); }
static uint32_t fab_memory_pages(void* m) { return i_memory_size(m); }

static void fab_global_set_i32(void* g, int32_t v) {
	fab_val_t val;
	memset(&val, 0, sizeof val);
	val.kind = 0;
	val.of.i32 = v;
	i_global_set(g, &val);
}

static int32_t fab_global_get_i32(void* g) {
	fab_val_t val;
	memset(&val, 0, sizeof val);
	i_global_get(g, &val);
	return val.of.i32;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// Instances are made and used through wasmer's C API, not wasmer-go's
// Instance: wasmer-go builds the imports anew on every instantiation and
// leaks them (some 50 bytes an import, in C memory), and wraps every export
// in objects with finalizers. A worker resolves a module's imports once, when
// it loads the module (heldModule), and looks its exports up by position.

func loadInstanceAPI() error {
	if missing := C.fab_load_instance(); missing != nil {
		return fmt.Errorf("the wasmer library lacks %s", C.GoString(missing))
	}
	return nil
}

// heldModule is a compiled module a worker holds, with its imports resolved
// to the worker's host functions and its exports' positions.
type heldModule struct {
	m       *wasmer.Module
	imports C.fab_vec_t // of wasm_extern_t*, in the module's import order (C memory)
	exports map[string]int
}

// hold resolves m's imports against the host functions of es.
func hold(es *engineState, m *wasmer.Module) (*heldModule, error) {
	h := &heldModule{m: m, exports: map[string]int{}}
	imports := m.Imports()
	if len(imports) > 0 {
		h.imports.data = C.malloc(C.size_t(len(imports)) * C.size_t(unsafe.Sizeof(uintptr(0))))
		if h.imports.data == nil {
			return nil, errors.New("out of memory resolving the module's imports")
		}
		h.imports.size = C.size_t(len(imports))
		externs := unsafe.Slice((*unsafe.Pointer)(h.imports.data), len(imports))
		for i, imp := range imports {
			ext := es.externs[hostKey(imp.Module(), imp.Name())]
			if ext == nil {
				h.release()
				return nil, fmt.Errorf("the module imports %s.%s, which the worker does not provide", imp.Module(), imp.Name())
			}
			externs[i] = ext
		}
	}
	for i, exp := range m.Exports() {
		h.exports[exp.Name()] = i
	}
	return h, nil
}

// release frees the imports and closes the module.
func (h *heldModule) release() {
	if h.imports.data != nil {
		C.free(h.imports.data)
		h.imports = C.fab_vec_t{}
	}
	h.m.Close()
}

func hostKey(module, name string) string { return module + "\x00" + name }

// hostExtern is the wasm_extern_t of a host function, for import vectors.
func hostExtern(f *wasmer.Function) unsafe.Pointer {
	ext := C.fab_func_extern(inner(f))
	runtime.KeepAlive(f)
	return ext
}

// instance is an instance of a heldModule.
type instance struct {
	ptr     unsafe.Pointer // wasm_instance_t*
	exports C.fab_vec_t    // owned
	module  *heldModule
}

// instantiate makes a fresh instance of h. No guest code runs: the
// instrumented module has no start function (it is exported, see
// instrument).
func instantiate(es *engineState, h *heldModule) (*instance, error) {
	inst := &instance{module: h}
	var why *C.char
	p := C.fab_instantiate(inner(es.store), inner(h.m), &h.imports, &inst.exports, &why)
	runtime.KeepAlive(es)
	runtime.KeepAlive(h)
	if p == nil {
		msg := "wasm_instance_new failed"
		if why != nil {
			msg = C.GoString(why)
			C.free(unsafe.Pointer(why))
		}
		return nil, errors.New(msg)
	}
	inst.ptr = p
	return inst, nil
}

func (i *instance) close() {
	if i.ptr != nil {
		C.fab_instance_delete(i.ptr, &i.exports)
		i.ptr = nil
	}
}

// export is the export called name of the kind given, or an error.
func (i *instance) export(name string, kind C.int) (unsafe.Pointer, error) {
	idx, ok := i.module.exports[name]
	if !ok {
		return nil, fmt.Errorf("the module has no export %q", name)
	}
	p := C.fab_export(&i.exports, C.size_t(idx), kind)
	if p == nil {
		return nil, fmt.Errorf("the module's export %q is not of the kind expected", name)
	}
	return p, nil
}

func (i *instance) function(name string) (unsafe.Pointer, error) {
	return i.export(name, C.int(C.FAB_FUNC))
}
func (i *instance) memory(name string) (unsafe.Pointer, error) {
	return i.export(name, C.int(C.FAB_MEMORY))
}
func (i *instance) global(name string) (unsafe.Pointer, error) {
	return i.export(name, C.int(C.FAB_GLOBAL))
}

// memoryBytes is a linear memory's bytes as they are now.
func memoryBytes(m unsafe.Pointer) []byte {
	n := C.fab_memory_data_size(m)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(C.fab_memory_data(m))), int(n))
}

func memoryPages(m unsafe.Pointer) uint32 { return uint32(C.fab_memory_pages(m)) }

func globalSetI32(g unsafe.Pointer, v int32) { C.fab_global_set_i32(g, C.int32_t(v)) }
func globalGetI32(g unsafe.Pointer) int32    { return int32(C.fab_global_get_i32(g)) }
