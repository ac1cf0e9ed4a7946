;; bigmem: declares 160 pages (10 MiB) of initial memory and touches the last byte.
;; Outcome: success with usage.memory_peak_mb == 10 under a larger quota;
;; memory_limit under a quota below 10 MiB (the instance is never created).
(module
  (memory (export "memory") 160)
  (func (export "run") (result i32)
    (i32.store8 (i32.const 10485759) (i32.const 1))
    (i32.const 0)))
