;; reset_tableexport: it exports its table.
;; It cannot be reset in place, so every task runs in a fresh instance and
;; writes "1" (a digit: what it observes before its change).
(module
  (import "fabric" "output_write" (func $out (param i32 i32)))
  (memory (export "memory") 1)
  (table $t (export "table") 1 funcref)
  (func $f)
  (func (export "run") (result i32)
    (i32.store8 (i32.const 0) (i32.add (i32.const 48) (ref.is_null (table.get $t (i32.const 0)))))
    (call $out (i32.const 0) (i32.const 1))
    nop
    (i32.const 0)))
