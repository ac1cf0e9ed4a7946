;; trap: executes unreachable. Outcome: trap, the message names "unreachable".
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32) unreachable))
