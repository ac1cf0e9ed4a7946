;; clock: a wasi-command agent that reads the wall clock once and the
;; monotonic clock twice and prints "wall=<ns>\nmono=<ns>\nmono2=<ns>\n".
;; Outcome: success. Without the clock capability the readings come from the
;; fake clock (wall starts at 2022-01-01T00:00:00Z), the same on every run;
;; with it, wall is the host's current time.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "wall=")
  (data (i32.const 108) "mono=")
  (data (i32.const 116) "mono2=")
  (data (i32.const 220) "\n")
  (global $out (mut i32) (i32.const 4096))
  (func $put (param $ptr i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))
  (func $put_u64 (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 4000))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (call $put (local.get $p) (i32.sub (i32.const 4000) (local.get $p))))
  ;; $reading appends "<name>=<clock id's time>\n".
  (func $reading (param $ptr i32) (param $len i32) (param $id i32)
    (if (call $clock_time_get (local.get $id) (i64.const 1) (i32.const 512)) (then unreachable))
    (call $put (local.get $ptr) (local.get $len))
    (call $put_u64 (i64.load (i32.const 512)))
    (call $put (i32.const 220) (i32.const 1)))
  (func (export "_start")
    (call $reading (i32.const 100) (i32.const 5) (i32.const 0))
    (call $reading (i32.const 108) (i32.const 5) (i32.const 1))
    (call $reading (i32.const 116) (i32.const 6) (i32.const 1))
    (i32.store (i32.const 3968) (i32.const 4096))
    (i32.store (i32.const 3972) (i32.sub (global.get $out) (i32.const 4096)))
    (if (call $fd_write (i32.const 1) (i32.const 3968) (i32.const 1) (i32.const 3976))
      (then unreachable))))
