;; random: a wasi-command agent that writes 32 bytes of random_get to stdout.
;; Outcome: success. Without the random capability the bytes depend only on the
;; task's seed; with it they come from the host's cryptographic source.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $random_get (i32.const 512) (i32.const 32)) (then unreachable))
    (i32.store (i32.const 0) (i32.const 512))
    (i32.store (i32.const 4) (i32.const 32))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))
      (then unreachable))))
