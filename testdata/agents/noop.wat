;; noop: the smallest fabric-v1 agent. Outcome: success, empty output.
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32) (i32.const 0)))
