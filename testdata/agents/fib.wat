;; fib: computes fib(90) by naive recursion: exponential time with a small,
;; bounded stack and no loop at all, so only a check at function entries (not
;; just at loop back-edges) can stop it. Outcome: timeout.
(module
  (memory (export "memory") 1)
  (func $fib (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else
        (i64.add
          (call $fib (i64.sub (local.get $n) (i64.const 1)))
          (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func (export "run") (result i32)
    (i32.wrap_i64 (call $fib (i64.const 90)))))
