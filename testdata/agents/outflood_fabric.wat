;; outflood_fabric: a fabric-v1 agent calling fabric.output_write with 64 KiB
;; of "y" forever. Outcome: output_limit.
(module
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (memory.fill (i32.const 0) (i32.const 121) (i32.const 65536))
    (loop $forever
      (call $output_write (i32.const 0) (i32.const 65536))
      (br $forever))
    (i32.const 0)))
