;; reset_datadrop: data.drop drops a data segment (a later memory.init of it traps).
;; It cannot be reset in place, so every task runs in a fresh instance and
;; writes "1" (a digit: what it observes before its change).
(module
  (import "fabric" "output_write" (func $out (param i32 i32)))
  (memory (export "memory") 1)
  (data $p "1")
  (func $f)
  (func (export "run") (result i32)
    (i32.store8 (i32.const 0) (i32.add (i32.const 48) (i32.const 1)))
    (call $out (i32.const 0) (i32.const 1))
    (memory.init $p (i32.const 0) (i32.const 0) (i32.const 1))
    (data.drop $p)
    (i32.const 0)))
