;; loop: a wasi-command agent that never ends and imports nothing.
;; Outcome: timeout (or cancelled when the caller cancels).
(module
  (func (export "_start") (loop $forever (br $forever))))
