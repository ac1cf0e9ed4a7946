#!/bin/sh
# durable-ab.sh A B PAIRS SECS [BENCH FLAGS...]: two durable fabricd side by
# side, from directories A and B (each with fabricd; fabric is taken from
# A), and PAIRS alternations of `fabric bench --mode submit-wait` on A then
# B, SECS seconds each; each pair prints tasks/s and the server's CPU per
# task for both. The machine's load moves throughput within seconds, so
# compare within pairs.
# Example: bench/durable-ab.sh /tmp/before /tmp/after 3 3 --connections 16 --in-flight 8
# PORT=n uses ports n and n+1 (default 7801).
set -eu
a=$1; b=$2; pairs=$3; secs=$4; shift 4
port=${PORT:-7801}; bport=$((port + 1))
da=$(mktemp -d); db=$(mktemp -d)
"$a/fabricd" serve --listen 127.0.0.1:$port --data "$da" --log-level warn 2>/dev/null &
pa=$!
"$b/fabricd" serve --listen 127.0.0.1:$bport --data "$db" --log-level warn 2>/dev/null &
pb=$!
trap 'kill $pa $pb 2>/dev/null; wait 2>/dev/null; rm -rf "$da" "$db"' EXIT
sleep 1.5
for u in $port $bport; do "$a/fabric" --url ws://127.0.0.1:$u/rpc bench --register echo=bench/agents/echo.wasm --mode health --duration 1s >/dev/null; done
rate() {
	u=$1; shift
	"$a/fabric" --url ws://127.0.0.1:$u/rpc bench --mode submit-wait "$@" --duration "${secs}s" 2>&1 |
		awk '/ops in/{r=$5} /cpu per op/{c=$8} END{printf "%s, server %s µs/task", r, c}'
}
for i in $(seq "$pairs"); do
	echo "pair $i: A $(rate $port "$@")  B $(rate $bport "$@")"
done
