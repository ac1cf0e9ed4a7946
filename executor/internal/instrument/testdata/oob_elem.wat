;; oob_elem: its element segment lies outside its table, which wazero
;; ignores at instantiation (it stops applying element segments there), and
;; it exports run () -> i32 returning 7. A trampoline's segments must be
;; applied all the same.
(module
  (table 1 funcref)
  (func $run (export "run") (result i32) (i32.const 7))
  (elem (i32.const 5) func $run))
