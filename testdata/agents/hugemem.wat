;; hugemem: declares 65536 pages (4 GiB) of initial memory.
;; Outcome: refused at compile with -32003 by any engine whose memory ceiling
;; is below 4 GiB.
(module
  (memory (export "memory") 65536)
  (func (export "run") (result i32) (i32.const 0)))
