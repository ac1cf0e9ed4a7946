;; kpi: reports custom metrics. requests=3.5; latency_ms=12.25 then 20 (the
;; last value of a name is kept); a NaN and an empty name are ignored.
;; Outcome: success, kpis == {"requests": 3.5, "latency_ms": 20}.
(module
  (import "fabric" "kpi" (func $kpi (param i32 i32 f64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "requests")
  (data (i32.const 16) "latency_ms")
  (data (i32.const 32) "nan")
  (func (export "run") (result i32)
    (call $kpi (i32.const 0) (i32.const 8) (f64.const 3.5))
    (call $kpi (i32.const 16) (i32.const 10) (f64.const 12.25))
    (call $kpi (i32.const 16) (i32.const 10) (f64.const 20))
    (call $kpi (i32.const 32) (i32.const 3) (f64.const nan))
    (call $kpi (i32.const 32) (i32.const 0) (f64.const 1))
    (i32.const 0)))
