;; depth: a fabric-v1 agent that recurses to the depth its input says (a
;; little-endian u32) and returns 0, or 1 when the input is not 4 bytes.
;; Each level is a real (non-tail) call. Used by TestStackBytes: a depth
;; that fits an 8 MiB stack overflows a 1 MiB one.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (memory (export "memory") 1)
  (func $down (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (local.get $n)))))
  (func (export "run") (result i32)
    (if (i32.ne (call $input_len) (i32.const 4)) (then (return (i32.const 1))))
    (call $input_read (i32.const 0))
    (drop (call $down (i32.load (i32.const 0))))
    (i32.const 0)))
