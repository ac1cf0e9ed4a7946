//go:build wasmer

package wasmer

/*
#cgo LDFLAGS: -ldl -lpthread
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

typedef void* (*fab_func_call_t)(const void*, const fab_vec_t*, fab_vec_t*);
typedef void (*fab_trap_message_t)(const void*, fab_vec_t*);
typedef void (*fab_byte_vec_delete_t)(fab_vec_t*);
typedef void (*fab_trap_delete_t)(void*);
typedef void* (*fab_metering_new_t)(uint64_t, uint64_t (*)(int));
typedef void* (*fab_metering_as_middleware_t)(void*);
typedef void (*fab_config_push_middleware_t)(void*, void*);
typedef uint64_t (*fab_metering_get_t)(const void*);
typedef void (*fab_metering_set_t)(const void*, uint64_t);
typedef _Bool (*fab_metering_exhausted_t)(const void*);
typedef void* (*fab_func_new_with_env_t)(void*, const void*, void* (*)(void*, const fab_vec_t*, fab_vec_t*), void*, void (*)(void*));
typedef void* (*fab_trap_new_t)(void*, const fab_vec_t*);
typedef void (*fab_val_vec_delete_t)(fab_vec_t*);

static fab_func_call_t p_func_call;
static fab_trap_message_t p_trap_message;
static fab_byte_vec_delete_t p_byte_vec_delete;
static fab_trap_delete_t p_trap_delete;
static fab_metering_new_t p_metering_new;
static fab_metering_as_middleware_t p_metering_as_middleware;
static fab_config_push_middleware_t p_config_push_middleware;
static fab_metering_get_t p_metering_get;
static fab_metering_set_t p_metering_set;
static fab_metering_exhausted_t p_metering_exhausted;
static fab_func_new_with_env_t p_func_new_with_env;
static fab_trap_new_t p_trap_new;
static fab_val_vec_delete_t p_val_vec_delete;

// fab_load finds the functions in the wasmer library that wasmer-go linked
// into the process. It returns the name of the first one missing, or NULL.
static const char* fab_load(void) {
#define FAB_SYM(var, name) if (!(var = dlsym(RTLD_DEFAULT, name))) return name;
	FAB_SYM(p_func_call, "wasm_func_call")
	FAB_SYM(p_trap_message, "wasm_trap_message")
	FAB_SYM(p_byte_vec_delete, "wasm_byte_vec_delete")
	FAB_SYM(p_trap_delete, "wasm_trap_delete")
	FAB_SYM(p_func_new_with_env, "wasm_func_new_with_env")
	FAB_SYM(p_trap_new, "wasm_trap_new")
	FAB_SYM(p_val_vec_delete, "wasm_val_vec_delete")
	return NULL;
}

static const char* fab_load_metering(void) {
	FAB_SYM(p_metering_new, "wasmer_metering_new")
	FAB_SYM(p_metering_as_middleware, "wasmer_metering_as_middleware")
	FAB_SYM(p_config_push_middleware, "wasm_config_push_middleware")
	FAB_SYM(p_metering_get, "wasmer_metering_get_remaining_points")
	FAB_SYM(p_metering_set, "wasmer_metering_set_remaining_points")
	FAB_SYM(p_metering_exhausted, "wasmer_metering_points_are_exhausted")
#undef FAB_SYM
	return NULL;
}

// Every operator costs one unit of fuel.
static uint64_t fab_cost(int op) { (void)op; return 1; }

static void fab_push_metering(void* config) {
	p_config_push_middleware(config, p_metering_as_middleware(p_metering_new(UINT64_MAX, fab_cost)));
}
static uint64_t fab_points_get(void* inst) { return p_metering_get(inst); }
static void fab_points_set(void* inst, uint64_t v) { p_metering_set(inst, v); }
static int fab_points_exhausted(void* inst) { return p_metering_exhausted(inst) ? 1 : 0; }

// A host function's environment: which Go function serves it, and the store
// its traps are made in.
typedef struct { uintptr_t id; void* store; } fab_host_env_t;

static const char fab_stop_message[] = "guest stopped by the host";

// wasmer 2.0.0-rc2 leaks the two vectors it hands a host function, its
// arguments and its results (some 32 bytes a call, without end in a worker
// that lives for millions of calls). They are freed here: the arguments once
// read, the results at the next host call or when the guest's call returns,
// wasmer having read them by then. fab_pending is the guest thread's.
static __thread fab_vec_t fab_pending;

static void fab_free_pending(void) {
	if (fab_pending.data) p_val_vec_delete(&fab_pending);
	fab_pending.size = 0;
	fab_pending.data = NULL;
}

static void* fab_host_callback(void* env, const fab_vec_t* args, fab_vec_t* results) {
	fab_host_env_t* e = env;
	fab_free_pending();
	uint32_t stop = fabHostCall(e->id, args->data, args->size, results->data, results->size);
	p_val_vec_delete((fab_vec_t*)args);
	fab_pending = *results;
	if (stop) {
		// wasm_message_t is NUL-terminated; wasmer takes the trap's ownership.
		fab_vec_t msg = {sizeof fab_stop_message, (void*)fab_stop_message};
		return p_trap_new(e->store, &msg);
	}
	return NULL;
}

// fab_new_host_func makes a host function of the given type that calls
// fabHostCall(id, ...). wasmer-go's own host functions are not used: when
// one returns an error, wasmer-go hands wasmer a trap that its finalizer
// later frees again (a double free that crashes the process).
static void* fab_new_host_func(void* store, const void* functype, uintptr_t id) {
	fab_host_env_t* e = malloc(sizeof *e);
	if (!e) return NULL;
	e->id = id;
	e->store = store;
	return p_func_new_with_env(store, functype, fab_host_callback, e, free);
}

// fab_call_t is one call of a guest function of type () -> () or () -> (i32).
typedef struct {
	const void* fn;
	size_t nresults;
	fab_val_t result;
	char* trap;        // the trap's message (malloc'd), or NULL
	int err;           // non-zero: not called, this is not the guest thread
} fab_call_t;

// fab_guest_thread is set on the thread fab_on_thread starts: the only
// thread guest code runs on.
static __thread int fab_guest_thread;

// fab_call calls c->fn on the current thread, which must be the guest
// thread: its stack, of the size fab_on_thread gave it, is the guest's.
static void fab_call(fab_call_t* c) {
	if (!fab_guest_thread) {
		c->err = 1;
		return;
	}
	fab_vec_t args = {0, NULL};
	fab_vec_t res = {c->nresults, &c->result};
	void* trap = p_func_call(c->fn, &args, &res);
	fab_free_pending();
	if (trap) {
		fab_vec_t msg = {0, NULL};
		p_trap_message(trap, &msg);
		c->trap = malloc(msg.size + 1);
		if (c->trap) {
			if (msg.size) memcpy(c->trap, msg.data, msg.size);
			c->trap[msg.size] = 0;
		}
		p_byte_vec_delete(&msg);
		p_trap_delete(trap);
	}
}

// The alternate signal stack of the guest thread. Installed before the
// thread first enters Go or wasmer, it is the one both use: Go keeps an
// alternate stack it finds, and wasmer one of at least 64 KiB.
#define FAB_SIGSTACK (256 << 10)

static void* fab_thread_main(void* arg) {
	fab_guest_thread = 1;
	stack_t ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_sp = malloc(FAB_SIGSTACK);
	ss.ss_size = FAB_SIGSTACK;
	if (ss.ss_sp) sigaltstack(&ss, NULL);
	fabThreadMain((uintptr_t)arg);
	return NULL;
}

// fab_on_thread runs fabThreadMain(arg) on a new thread with a stack of the
// given size, the guest thread, and waits for it. It returns
// pthread_create's error.
static int fab_on_thread(size_t stack, uintptr_t arg) {
	pthread_attr_t attr;
	pthread_t th;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, stack);
	int err = pthread_create(&th, &attr, fab_thread_main, (void*)arg);
	pthread_attr_destroy(&attr);
	if (err == 0) pthread_join(th, NULL);
	return err;
}

// fab_crash dereferences NULL: the tests' stand-in for a bug in native code.
static void fab_crash(void) {
	volatile int* p = NULL;
	*p = 1;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/cgo"
	"syscall"
	"unsafe"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// loadNative resolves the wasmer functions called from C, and reports
// whether metering is available.
func loadNative() (metering bool, err error) {
	if err := checkLayouts(); err != nil {
		return false, err
	}
	if missing := C.fab_load(); missing != nil {
		return false, fmt.Errorf("the wasmer library lacks %s", C.GoString(missing))
	}
	if err := loadInstanceAPI(); err != nil {
		return false, err
	}
	return C.fab_load_metering() == nil, nil
}

// checkLayouts verifies what inner relies on: that each wasmer-go type it
// reads holds its C pointer in its first field. wasmer-go is pinned (v1.0.4),
// so this fails only on a deliberate upgrade.
func checkLayouts() error {
	for _, v := range []any{wasmer.Config{}, wasmer.Module{}, wasmer.Function{}, wasmer.Store{}, wasmer.FunctionType{}} {
		t := reflect.TypeOf(v)
		if t.NumField() == 0 || t.Field(0).Name != "_inner" || t.Field(0).Offset != 0 ||
			t.Field(0).Type.Kind() != reflect.Pointer {
			return fmt.Errorf("wasmer-go's %s does not begin with its C pointer: the engine needs wasmer-go v1.0.4", t)
		}
	}
	return nil
}

// cstruct are the wasmer-go types whose C pointer inner reads.
type cstruct interface {
	wasmer.Config | wasmer.Module | wasmer.Function | wasmer.Store | wasmer.FunctionType
}

// inner is the C pointer inside a wasmer-go object.
func inner[T cstruct](v *T) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(v))
}

// newHostFunction returns a wasmer-go Function that serves a guest's calls
// with fabHostCall(id, ...). It is a wasmer-go host function whose C
// function is replaced by one of ours (see fab_new_host_func); the shell's
// own C function is leaked, once per host function and store.
func newHostFunction(store *wasmer.Store, ft *wasmer.FunctionType, id int) (*wasmer.Function, error) {
	shell := wasmer.NewFunction(store, ft, func([]wasmer.Value) ([]wasmer.Value, error) {
		panic("the shell of a host function was called")
	})
	f := C.fab_new_host_func(inner(store), inner(ft), C.uintptr_t(id))
	runtime.KeepAlive(ft)
	if f == nil {
		return nil, errors.New("wasm_func_new_with_env failed")
	}
	*(*unsafe.Pointer)(unsafe.Pointer(shell)) = f
	return shell, nil
}

// pushMetering adds wasmer's metering middleware (one point per operator) to
// cfg; call it only when loadNative reported metering.
func pushMetering(cfg *wasmer.Config) { C.fab_push_metering(inner(cfg)) }

func pointsGet(i *instance) uint64     { return uint64(C.fab_points_get(i.ptr)) }
func pointsSet(i *instance, v uint64)  { C.fab_points_set(i.ptr, C.uint64_t(v)) }
func pointsExhausted(i *instance) bool { return C.fab_points_exhausted(i.ptr) != 0 }

// callResult is what a guest call did.
type callResult struct {
	Trapped bool
	Trap    string
	Value   int32 // the i32 result, when the function has one
}

// onGuestThread runs f on a new native thread with stackBytes of stack, the
// guest thread, and returns when f does; f's goroutine is locked to that
// thread, so guest code it calls runs on that stack. The worker serves its
// whole conversation with the parent from there: a task's guest runs on the
// thread that read the task, with no thread to start or wake.
func onGuestThread(stackBytes uint64, f func()) error {
	h := cgo.NewHandle(f)
	defer h.Delete()
	if err := C.fab_on_thread(C.size_t(stackBytes), C.uintptr_t(h)); err != 0 {
		return fmt.Errorf("cannot start the guest thread: pthread_create: %w", syscall.Errno(err))
	}
	return nil
}

//export fabThreadMain
func fabThreadMain(h C.uintptr_t) {
	cgo.Handle(h).Value().(func())()
}

var errNotGuestThread = errors.New("a guest call off the guest thread (onGuestThread)")

// callGuest calls f, of type () -> () or () -> (i32), on the current
// thread, which must be the guest thread. A guest that overflows its stack
// traps (wasmer's guard page), leaving the thread usable; the depth at which
// it does is the same on every call, the calls' path being.
func callGuest(f unsafe.Pointer, results int) (callResult, error) {
	var c C.fab_call_t
	c.fn = f
	c.nresults = C.size_t(results)
	C.fab_call(&c)
	if c.err != 0 {
		return callResult{}, errNotGuestThread
	}
	var r callResult
	if c.trap != nil {
		r.Trapped, r.Trap = true, C.GoString(c.trap)
		C.free(unsafe.Pointer(c.trap))
	} else if results == 1 {
		r.Value = *(*int32)(unsafe.Pointer(&c.result.of))
	}
	return r, nil
}

// crashNative makes the process fault in C code.
func crashNative() { C.fab_crash() }
