;; spin: a fabric-v1 CPU loop. Its input is a little-endian u32 count N; it runs
;; N iterations of integer arithmetic and writes the 4-byte result.
;; Outcome: success; used by the benchmarks and the CPU-time test.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $n i32)
    (local $acc i32)
    (if (i32.ne (call $input_len) (i32.const 4)) (then (return (i32.const 1))))
    (call $input_read (i32.const 0))
    (local.set $n (i32.load (i32.const 0)))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (i32.store (i32.const 0) (local.get $acc))
    (call $output_write (i32.const 0) (i32.const 4))
    (i32.const 0)))
