;; sleep: a wasi-command agent that sleeps one hour with poll_oneoff on the
;; monotonic clock, then writes "woke".
;; Outcome: without the clock capability the fake clock's sleep returns at
;; once: success, output "woke". With it the sleep is real, so a task timeout
;; (or a cancel) must interrupt it: timeout.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "woke")
  (func (export "_start")
    ;; subscription at 512: userdata 0, tag 0 (clock), id 1 (monotonic),
    ;; timeout 3600 s, precision 0, flags 0 (relative).
    (i32.store8 (i32.const 520) (i32.const 0))
    (i32.store (i32.const 528) (i32.const 1))
    (i64.store (i32.const 536) (i64.const 3600000000000))
    (if (call $poll_oneoff (i32.const 512) (i32.const 600) (i32.const 1) (i32.const 640))
      (then unreachable))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 4))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))
      (then unreachable))))
