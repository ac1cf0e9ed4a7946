;; logflood: a fabric-v1 agent that logs 20000 lines of 100 bytes with
;; fabric.log (levels cycling debug, info, warn, error) and 20000 lines to
;; stderr, then writes "done".
;; Outcome: success, output "done", logs cut at the log quota, logs_truncated.
(module
  (import "fabric" "log" (func $log (param i32 i32 i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "done")
  (data (i32.const 32) "stderr line\n")
  (func (export "run") (result i32)
    (local $i i32)
    (memory.fill (i32.const 1024) (i32.const 108) (i32.const 100))
    (i32.store (i32.const 16) (i32.const 32))
    (i32.store (i32.const 20) (i32.const 12))
    (loop $more
      (call $log (i32.and (local.get $i) (i32.const 3)) (i32.const 1024) (i32.const 100))
      (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 20000))))
    (call $output_write (i32.const 0) (i32.const 4))
    (i32.const 0)))
