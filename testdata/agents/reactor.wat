;; reactor: a fabric-v1 reactor whose _initialize sets a global that run
;; reports. Outcome: success, output "init=1" (the engine ran _initialize first).
(module
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (memory (export "memory") 1)
  (global $init (mut i32) (i32.const 0))
  (data (i32.const 0) "init=?")
  (func (export "_initialize") (global.set $init (i32.const 1)))
  (func (export "run") (result i32)
    (i32.store8 (i32.const 5) (i32.add (i32.const 48) (global.get $init)))
    (call $output_write (i32.const 0) (i32.const 6))
    (i32.const 0)))
