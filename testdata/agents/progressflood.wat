;; progressflood: calls fabric.progress 200000 times with permille values
;; cycling through -100..1099 (so some are negative and some above 1000).
;; Outcome: success; every reported progress lies in [0, 1].
(module
  (import "fabric" "progress" (func $progress (param i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $i i32)
    (loop $more
      (call $progress (i32.sub (i32.rem_u (local.get $i) (i32.const 1200)) (i32.const 100)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 200000))))
    (i32.const 0)))
