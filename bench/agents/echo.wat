;; echo: the trivial task of the benchmarks. A fabric-v1 agent that copies its
;; input to its output and does nothing else (no log, no progress: one stored
;; event per state change, none for progress). The same work as
;; ../extism/testdata/echo.wat, which does it through Extism's ABI.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "input_read" (func $input_read (param i32)))
  (import "fabric" "output_write" (func $output_write (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $n i32)
    (local $need i32)
    (local.set $n (call $input_len))
    ;; Pages for the input, grown when one is not enough.
    (local.set $need
      (i32.shr_u (i32.add (local.get $n) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 1))))))
    (call $input_read (i32.const 0))
    (call $output_write (i32.const 0) (local.get $n))
    (i32.const 0)))
