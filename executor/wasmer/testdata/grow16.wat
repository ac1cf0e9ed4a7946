;; grow16: a fabric-v1 agent that grows its linear memory from one page to
;; 16 MiB (256 pages) in 1 MiB steps, as an allocator would, and writes a byte
;; into what it grew. It imports nothing, so bare wasmer-go and wazero run it
;; as is. Two entries differ in how much of the memory they touch:
;;   run        one byte per 64 KiB wasm page (256 writes)
;;   run_dense  one byte per 4 KiB OS page (4096 writes: every page faulted in)
;; Both return 0, or 1 when a memory.grow is refused.
;; Used by the benchmarks of executor/wasmer (BenchmarkGrow16).
(module
  (memory (export "memory") 1)
  (func $grow (result i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (memory.size) (i32.const 256)))
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
          (then (return (i32.const 1))))
        (br $l)))
    (i32.const 0))
  (func $touch (param $stride i32)
    (local $p i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $p) (i32.const 16777216)))
        (i32.store8 (local.get $p) (i32.const 1))
        (local.set $p (i32.add (local.get $p) (local.get $stride)))
        (br $l))))
  (func (export "run") (result i32)
    (if (call $grow) (then (return (i32.const 1))))
    (call $touch (i32.const 65536))
    (i32.const 0))
  (func (export "run_dense") (result i32)
    (if (call $grow) (then (return (i32.const 1))))
    (call $touch (i32.const 4096))
    (i32.const 0)))
