;; echo_fabric: a fabric-v1 agent that echoes its input with the fabric imports.
;; It logs "echoing" at level info and reports progress 1.0 before writing.
;; Outcome: success, output == input, one log line {info, "echoing"}.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "fabric" "log" (func $log (param i32 i32 i32)))
  (import "fabric" "progress" (func $progress (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "echoing")
  (func (export "run") (result i32)
    (local $n i32)
    (local $need i32)
    (local.set $n (call $input_len))
    ;; Pages needed for 1024 + n bytes, grown if the input does not fit.
    (local.set $need
      (i32.shr_u (i32.add (i32.add (local.get $n) (i32.const 1024)) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 1))))))
    (call $log (i32.const 1) (i32.const 0) (i32.const 7))
    (call $input_read (i32.const 1024))
    (call $progress (i32.const 1000))
    (call $output_write (i32.const 1024) (local.get $n))
    (i32.const 0)))
