;; resetprobe: a fabric-v1 reactor for the tests of instance reset. Each run
;; first writes what it finds (its observation, 15 little-endian u64s):
;;   0 an FNV-1a hash of the whole linear memory (8 bytes at a time)
;;   1 memory.size in pages
;;   2-5 the non-exported globals $i (i32), $l (i64), $f (f32 bits), $d (f64 bits)
;;   6 1 if the funcref global $fr is null
;;   7 the exported global "counter"
;;   8, 9 how often the start function and _initialize ran
;;   10, 11 the first wall and monotonic clock readings (ns)
;;   12 8 bytes of random_get
;;   13 the i32 at 300 (the start function's count in memory), 14 the one at 304 (_initialize's)
;; then changes all of it: every global, the funcref global, the memory (the
;; image, the passive segment copied in by memory.init, a fill of 4 KiB,
;; the last byte), and then acts on the first byte of its input:
;;   "n" (or none)  returns 0
;;   "t"  traps;  "l" loops forever;  "g" grows the memory by one page
;;   "x"  proc_exit(0);  "e" error_write, returns 0;  "r" returns 1
;; A task in an instance that was reset must observe exactly what a task in
;; a fresh instance observes.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "fabric" "error_write" (func $error_write (param i32 i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $i (mut i32) (i32.const 7))
  (global $l (mut i64) (i64.const -5))
  (global $f (mut f32) (f32.const 1.5))
  (global $d (mut f64) (f64.const -2.25))
  (global $fr (mut funcref) (ref.null func))
  (global $counter (export "counter") (mut i32) (i32.const 100))
  (global $started (mut i32) (i32.const 0))
  (global $inited (mut i32) (i32.const 0))
  (global $at (mut i32) (i32.const 0))
  (data (i32.const 256) "image bytes at 256")
  (data (i32.const 65490) "the image near the end of the first page")
  (data $passive "a passive segment")
  (elem declare func $dummy)
  (func $dummy)
  (func $start
    (global.set $started (i32.add (global.get $started) (i32.const 1)))
    (i32.store (i32.const 300) (i32.add (i32.load (i32.const 300)) (i32.const 1))))
  (start $start)
  (func (export "_initialize")
    (global.set $inited (i32.add (global.get $inited) (i32.const 1)))
    (i32.store (i32.const 304) (i32.add (i32.load (i32.const 304)) (i32.const 1))))
  ;; $put appends v to the observation at 8192.
  (func $put (param $v i64)
    (i64.store (i32.add (i32.const 8192) (global.get $at)) (local.get $v))
    (global.set $at (i32.add (global.get $at) (i32.const 8))))
  (func $hash (result i64)
    (local $p i32) (local $end i32) (local $h i64)
    (local.set $h (i64.const 0xcbf29ce484222325))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (block $done
      (loop $word
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h (i64.mul (i64.xor (local.get $h) (i64.load (local.get $p))) (i64.const 0x100000001b3)))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $word)))
    (local.get $h))
  (func (export "run") (result i32)
    (local $cmd i32) (local $h i64)
    (local.set $cmd (i32.const 110)) ;; "n"
    (local.set $h (call $hash))
    (if (i32.gt_u (call $input_len) (i32.const 0))
      (then
        (if (i32.gt_u (call $input_len) (i32.const 64)) (then unreachable))
        (call $input_read (i32.const 16384))
        (local.set $cmd (i32.load8_u (i32.const 16384)))))
    (global.set $at (i32.const 0))
    (call $put (local.get $h))
    (call $put (i64.extend_i32_u (memory.size)))
    (call $put (i64.extend_i32_u (global.get $i)))
    (call $put (global.get $l))
    (call $put (i64.extend_i32_u (i32.reinterpret_f32 (global.get $f))))
    (call $put (i64.reinterpret_f64 (global.get $d)))
    (call $put (i64.extend_i32_u (ref.is_null (global.get $fr))))
    (call $put (i64.extend_i32_u (global.get $counter)))
    (call $put (i64.extend_i32_u (global.get $started)))
    (call $put (i64.extend_i32_u (global.get $inited)))
    (if (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 16400)) (then unreachable))
    (call $put (i64.load (i32.const 16400)))
    (if (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 16400)) (then unreachable))
    (call $put (i64.load (i32.const 16400)))
    (if (call $random_get (i32.const 16400) (i32.const 8)) (then unreachable))
    (call $put (i64.load (i32.const 16400)))
    (call $put (i64.extend_i32_u (i32.load (i32.const 300))))
    (call $put (i64.extend_i32_u (i32.load (i32.const 304))))
    (call $output_write (i32.const 8192) (global.get $at))
    ;; Change everything.
    (global.set $i (i32.add (global.get $i) (i32.const 1)))
    (global.set $l (i64.add (global.get $l) (i64.const 1)))
    (global.set $f (f32.add (global.get $f) (f32.const 1)))
    (global.set $d (f64.add (global.get $d) (f64.const 1)))
    (global.set $fr (ref.func $dummy))
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (memory.init $passive (i32.const 4096) (i32.const 0) (i32.const 17))
    (memory.fill (i32.const 20000) (i32.const 0xab) (i32.const 4096))
    (i32.store8 (i32.const 65535) (i32.const 0xff))
    (i32.store (i32.const 256) (i32.const 0x44434241))
    (if (i32.eq (local.get $cmd) (i32.const 116)) (then unreachable)) ;; "t"
    (if (i32.eq (local.get $cmd) (i32.const 108)) (then (loop $forever (br $forever)))) ;; "l"
    (if (i32.eq (local.get $cmd) (i32.const 103)) ;; "g"
      (then (if (i32.lt_s (memory.grow (i32.const 1)) (i32.const 0)) (then unreachable))))
    (if (i32.eq (local.get $cmd) (i32.const 120)) (then (call $proc_exit (i32.const 0)))) ;; "x"
    (if (i32.eq (local.get $cmd) (i32.const 101)) ;; "e"
      (then (call $error_write (i32.const 256) (i32.const 5)) (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 114)) (then (return (i32.const 1)))) ;; "r"
    (i32.const 0)))
