;; Exports neither _start nor run.
(module
  (memory (export "memory") 1)
  (func (export "main") (result i32) (i32.const 0)))
