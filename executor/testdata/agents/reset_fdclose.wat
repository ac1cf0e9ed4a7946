;; reset_fdclose: a wasi-command that writes "1" to stdout, then closes
;; stdout (fd_close changes the instance's WASI file table) and tries again.
;; It cannot be reset in place: every task runs in a fresh instance, whose
;; stdout is open, and its output is "1".
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\08\00\00\00\01\00\00\00") ;; iovec {8, 1}
  (data (i32.const 8) "1")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (drop (call $fd_close (i32.const 1)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
