;; A fabric-v1 agent in WAT: its output is its input (docs/agents.md).
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "fabric" "error_write" (func $error_write (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "out of memory")
  (func (export "run") (result i32)
    (local $n i32) (local $pages i32)
    (local.set $n (call $input_len))
    ;; the input goes at 64 KiB: grow the memory to hold it
    (local.set $pages (i32.add (i32.const 1)
      (i32.shr_u (i32.add (local.get $n) (i32.const 65535)) (i32.const 16))))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then
            (call $error_write (i32.const 0) (i32.const 13))
            (return (i32.const 1))))))
    (call $input_read (i32.const 65536))
    (call $output_write (i32.const 65536) (local.get $n))
    (i32.const 0)))
