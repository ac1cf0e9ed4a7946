;; reset_v128: a mutable v128 global (wazero sets only its low 64 bits).
;; It cannot be reset in place, so every task runs in a fresh instance and
;; writes "1" (a digit: what it observes before its change).
(module
  (import "fabric" "output_write" (func $out (param i32 i32)))
  (memory (export "memory") 1)
  (global $v (mut v128) (v128.const i64x2 0 1))
  (func $f)
  (func (export "run") (result i32)
    (i32.store8 (i32.const 0) (i32.add (i32.const 48) (i32.wrap_i64 (i64x2.extract_lane 1 (global.get $v)))))
    (call $out (i32.const 0) (i32.const 1))
    (global.set $v (v128.const i64x2 0 2))
    (i32.const 0)))
