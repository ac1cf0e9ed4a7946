;; badsig: imports fabric.output_write with the wrong type (i32) -> ().
;; Outcome: refused at compile with -32003 naming fabric.output_write.
(module
  (import "fabric" "output_write" (func $output_write (param i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32) (call $output_write (i32.const 0)) (i32.const 0)))
