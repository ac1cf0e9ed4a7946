;; A wasi-command agent in WAT: copies stdin to stdout (docs/agents.md).
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0: an iovec {buf = 16, len}; 8: bytes read; 12: bytes written.
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (block $done
      (loop $copy
        (i32.store (i32.const 4) (i32.const 65520))
        ;; stop on an error (non-zero errno) or at the end of stdin
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (i32.eqz (i32.load (i32.const 8))))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
        (br $copy)))))
