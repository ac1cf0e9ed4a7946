;; hostabuse: a fabric-v1 agent that calls one fabric function with arguments
;; chosen by its input, to probe the host's pointer and length checks. The
;; input is 16 bytes, four little-endian i32: op, a, b, c. The input is first
;; read to address 0 of its one page (64 KiB) of memory; then:
;;   op 0: output_write(a, b)      op 3: kpi(a, b, f64(c))
;;   op 1: error_write(a, b)       op 4: input_read(a)
;;   op 2: log(c, a, b)            op 5: progress(a)
;; and it returns 0. Any other input length: return 1.
;; Outcome: in-bounds arguments behave as the ABI says; a range outside the
;; memory traps with a message naming the fabric function.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "fabric" "error_write" (func $error_write (param i32 i32)))
  (import "fabric" "log" (func $log (param i32 i32 i32)))
  (import "fabric" "progress" (func $progress (param i32)))
  (import "fabric" "kpi" (func $kpi (param i32 i32 f64)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $op i32) (local $a i32) (local $b i32) (local $c i32)
    (if (i32.ne (call $input_len) (i32.const 16)) (then (return (i32.const 1))))
    (call $input_read (i32.const 0))
    (local.set $op (i32.load (i32.const 0)))
    (local.set $a (i32.load (i32.const 4)))
    (local.set $b (i32.load (i32.const 8)))
    (local.set $c (i32.load (i32.const 12)))
    (block $done
      (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
        (br_table $b0 $b1 $b2 $b3 $b4 $b5 $done (local.get $op)))
        (call $output_write (local.get $a) (local.get $b)) (br $done))
        (call $error_write (local.get $a) (local.get $b)) (br $done))
        (call $log (local.get $c) (local.get $a) (local.get $b)) (br $done))
        (call $kpi (local.get $a) (local.get $b) (f64.convert_i32_s (local.get $c))) (br $done))
        (call $input_read (local.get $a)) (br $done))
        (call $progress (local.get $a)))
    (i32.const 0)))
