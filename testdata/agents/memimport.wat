;; memimport: imports its memory as env.memory instead of defining it.
;; Outcome: refused at compile with -32003 naming env.memory.
(module
  (import "env" "memory" (memory 1))
  (func (export "_start")))
