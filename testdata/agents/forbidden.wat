;; forbidden: imports env.socket. Outcome: refused at compile with -32003
;; naming "env.socket".
(module
  (import "env" "socket" (func $socket (param i32 i32 i32) (result i32)))
  (func (export "_start") (drop (call $socket (i32.const 2) (i32.const 1) (i32.const 0)))))
