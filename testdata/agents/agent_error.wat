;; agent_error: a fabric-v1 agent failing on purpose.
;; Empty input: error_write("bad input: want a number") and return 0.
;; Any other input: return 7 without error_write.
;; Outcome: agent_error; the message is exactly "bad input: want a number" in
;; the first case and names the return value 7 in the second.
(module
  (import "fabric" "input_len" (func $input_len (result i32)))
  (import "fabric" "error_write" (func $error_write (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "bad input: want a number")
  (func (export "run") (result i32)
    (if (i32.eqz (call $input_len))
      (then
        (call $error_write (i32.const 0) (i32.const 24))
        (return (i32.const 0))))
    (i32.const 7)))
