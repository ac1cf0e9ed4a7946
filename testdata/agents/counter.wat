;; counter: a fabric-v1 agent with state in a global and in memory. Each run
;; increments both, reports progress 0.5 (a test can hold two runs there at
;; once), then writes "g=<global> m=<memory>" as single digits.
;; Outcome: success, output "g=1 m=1" on every run, concurrent or not: an
;; instance never sees another's state.
(module
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "fabric" "progress" (func $progress (param i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (data (i32.const 64) "g=? m=?")
  (func (export "run") (result i32)
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (call $progress (i32.const 500))
    (i32.store8 (i32.const 66) (i32.add (i32.const 48) (global.get $g)))
    (i32.store8 (i32.const 70) (i32.add (i32.const 48) (i32.load (i32.const 0))))
    (call $output_write (i32.const 64) (i32.const 7))
    (i32.const 0)))
