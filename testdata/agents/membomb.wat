;; membomb: grows its memory 1 MiB at a time, touching each new page, until a
;; grow is refused; then it traps with unreachable.
;; Outcome: memory_limit; usage.memory_peak_mb close to the quota, never above it.
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (loop $more
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
        (then unreachable))
      (i32.store (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 4)) (i32.const 1))
      (br $more))
    (i32.const 0)))
