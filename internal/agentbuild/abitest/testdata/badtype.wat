;; Imports fabric.log with the wrong type.
(module
  (import "fabric" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32) (i32.const 0)))
