;; stateful: a fabric-v1 agent that counts its runs in a global ($g) and in
;; linear memory (the i32 at 0), for the tests of instance reuse. Each run
;; increments both, then acts on the first byte of its input:
;;   (none) or "n"  nothing more
;;   "t"  traps (unreachable)
;;   "l"  loops forever (a timeout or cancel stops it)
;;   "e"  error_write("failed"), returns 0: agent_error
;;   "r"  returns 1: agent_error
;;   "g"  grows its memory by 32 pages (2 MiB); a refused grow is ignored
;;   "x"  proc_exit(0): success, and the instance is closed
;;   "p"  reports progress 0.5 (a test can hold the run there), and traps
;;        if $g changed meanwhile (another run in the same instance)
;;   "c"  appends " c=<monotonic clock in ms>" to its output
;;   "R"  appends " R=<4 bytes of random_get, as a little-endian u32>"
;; and writes "g=<$g> m=<memory counter> p=<memory pages>" (decimal) first.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "fabric" "error_write" (func $error_write (param i32 i32)))
  (import "fabric" "progress" (func $progress (param i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (global $out (mut i32) (i32.const 0))
  (data (i32.const 32) "failed")
  ;; $put appends the bytes [ptr, ptr+len) to the output buffer at 1024.
  (func $byte (param $b i32)
    (i32.store8 (i32.add (i32.const 1024) (global.get $out)) (local.get $b))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))
  ;; $num appends a decimal number.
  (func $num (param $v i32)
    (local $p i32)
    (local.set $p (i32.const 512))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $p) (i32.const 512)))
        (call $byte (i32.load8_u (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $copy))))
  (func (export "run") (result i32)
    (local $cmd i32)
    (local $saved i32)
    (local.set $cmd (i32.const 110)) ;; "n"
    (if (i32.gt_u (call $input_len) (i32.const 0))
      (then
        (if (i32.gt_u (call $input_len) (i32.const 256)) (then unreachable))
        (call $input_read (i32.const 16))
        (local.set $cmd (i32.load8_u (i32.const 16)))))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (if (i32.eq (local.get $cmd) (i32.const 116)) (then unreachable)) ;; "t"
    (if (i32.eq (local.get $cmd) (i32.const 108)) (then (loop $forever (br $forever)))) ;; "l"
    (if (i32.eq (local.get $cmd) (i32.const 101)) ;; "e"
      (then (call $error_write (i32.const 32) (i32.const 6)) (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 114)) (then (return (i32.const 1)))) ;; "r"
    (if (i32.eq (local.get $cmd) (i32.const 103)) (then (drop (memory.grow (i32.const 32))))) ;; "g"
    (if (i32.eq (local.get $cmd) (i32.const 120)) (then (call $proc_exit (i32.const 0)))) ;; "x"
    (if (i32.eq (local.get $cmd) (i32.const 112)) ;; "p"
      (then
        (local.set $saved (global.get $g))
        (call $progress (i32.const 500))
        (if (i32.ne (global.get $g) (local.get $saved)) (then unreachable))))
    (global.set $out (i32.const 0))
    (call $byte (i32.const 103)) (call $byte (i32.const 61)) ;; "g="
    (call $num (global.get $g))
    (call $byte (i32.const 32)) (call $byte (i32.const 109)) (call $byte (i32.const 61)) ;; " m="
    (call $num (i32.load (i32.const 0)))
    (call $byte (i32.const 32)) (call $byte (i32.const 112)) (call $byte (i32.const 61)) ;; " p="
    (call $num (memory.size))
    (if (i32.eq (local.get $cmd) (i32.const 99)) ;; "c"
      (then
        (if (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 64)) (then unreachable))
        (call $byte (i32.const 32)) (call $byte (i32.const 99)) (call $byte (i32.const 61)) ;; " c="
        (call $num (i32.wrap_i64 (i64.div_u (i64.load (i32.const 64)) (i64.const 1000000))))))
    (if (i32.eq (local.get $cmd) (i32.const 82)) ;; "R"
      (then
        (if (call $random_get (i32.const 64) (i32.const 4)) (then unreachable))
        (call $byte (i32.const 32)) (call $byte (i32.const 82)) (call $byte (i32.const 61)) ;; " R="
        (call $num (i32.load (i32.const 64)))))
    (call $output_write (i32.const 1024) (global.get $out))
    (i32.const 0)))
