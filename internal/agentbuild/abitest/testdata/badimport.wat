;; Imports a function outside the guest ABI.
(module
  (import "env" "now" (func $now (result i64)))
  (func (export "_start")))
