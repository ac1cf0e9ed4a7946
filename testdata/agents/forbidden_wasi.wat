;; forbidden_wasi: imports wasi_snapshot_preview1.sock_open, which is not a
;; preview1 function. Outcome: refused at compile with -32003 naming it.
(module
  (import "wasi_snapshot_preview1" "sock_open" (func $sock_open (param i32 i32 i32) (result i32)))
  (func (export "_start") (drop (call $sock_open (i32.const 1) (i32.const 1) (i32.const 0)))))
