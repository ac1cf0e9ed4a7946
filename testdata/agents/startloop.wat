;; startloop: loops forever in the module's start function, that is while it is
;; being instantiated, before any entry runs. Outcome: timeout.
(module
  (func $spin (loop $forever (br $forever)))
  (start $spin)
  (func (export "_start")))
