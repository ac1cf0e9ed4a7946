// Command fabric is the command line client of fabricd: it registers agents,
// submits and follows tasks, and shows live events and KPIs, over fabricd's
// WebSocket JSON-RPC API (internal/client).
//
// Usage:
//
//	fabric [global flags] COMMAND [arguments] [flags]
//
//	agent register NAME FILE.wasm [--abi A] [--entry E] [--cap clock,random]
//	                              [--memory-mb N] [--timeout-ms N] [--replace]
//	agent list | agent get NAME | agent stats [NAME] | agent rm NAME
//	task submit AGENT [INPUT-JSON | --input-file F | --input-base64 B]
//	            [--priority P] [--timeout-ms N] [--retries N]
//	            [--idempotency-key K] [--label k=v ...] [--wait]
//	task get ID | task wait ID [--timeout-ms N] | task cancel ID
//	task list [--state S] [--agent A] [--label L] [--limit N] [--all]
//	watch [--agent A] [--task ID ...] [--after-seq N]
//	kpi [--interval 1s] [--once]
//	health
//	bench [--mode submit-wait,submit-subscribe,health,echo] [--connections N]
//	      [--in-flight N] [--duration D | --count N] [--batch N]
//	      [--agent A | --mix A:W,...] [--input J | --input-size N]
//	      [--priority P,...] [--register NAME=FILE.wasm ...]
//	soak  [the load flags of bench] [--sample D] [--warmup D] [--tolerance F]
//	      [--data DIR]
//	echo-server [--listen HOST:PORT]
//	completion bash|zsh|fish
//	help [COMMAND]
//
// Global flags, accepted before or after the command: --url (default
// ws://127.0.0.1:7420/rpc, or $FABRIC_URL), --token (or $FABRIC_TOKEN),
// --json, --timeout. Flags may come before, between or after the positional
// arguments; "--" ends the flags.
//
// Output: tables and sentences for people; with --json, the server's result
// as it sent it, one JSON value per line (watch prints each task.event's
// params, kpi each report). `task submit` without --wait prints the task id
// alone, so that ID=$(fabric task submit echo '{}') works. --timeout bounds
// the whole command; by default one-shot commands get 30s and the waiting
// ones (task wait, task submit --wait, watch, kpi) have no limit. watch and
// kpi end normally (status 0) on SIGINT or when --timeout passes.
//
// Exit status, for scripts:
//
//	0    ok
//	1    the task or operation failed: a task ended failed or cancelled
//	     (task submit --wait, task wait), or task wait --timeout-ms passed
//	     before it ended; health is not "ok"; bench or soak saw a task
//	     fail or not complete, an error other than -32002, or (soak) a
//	     measure grow
//	2    usage error: unknown command or flag, missing or extra argument,
//	     bad input (invalid JSON, unreadable file, bad base64)
//	3    connection or transport error: cannot connect, the connection
//	     was lost, --timeout passed
//	4    not found: the server answered -32001 (no such task or agent)
//	5    the server refused: any other JSON-RPC error (invalid params,
//	     unauthorized, overloaded, conflict...); the code and message are
//	     printed on stderr
//	130  interrupted by SIGINT or SIGTERM while waiting
package main
