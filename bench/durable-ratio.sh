#!/bin/sh
# durable-ratio.sh PAIRS SECS [BENCH FLAGS...]: one fabricd --data :memory:
# and one durable, side by side from bin/ (make build first); PAIRS
# alternations of `fabric bench --mode submit-wait` on the durable one then
# the in-memory one, SECS seconds each, each pair's ratio printed. The
# machine's load moves throughput within seconds, so read the median ratio.
# Example: bench/durable-ratio.sh 5 3 --connections 4 --in-flight 8
# BIN=dir takes fabricd and fabric from dir instead of bin/ (to compare
# builds); PORT=n uses ports n and n+1 (default 7492); MODE=m benches mode m
# (default submit-wait; submit measures acceptance alone).
set -eu
bin=${BIN:-bin}; port=${PORT:-7492}; dport=$((port + 1))
pairs=${1:-5}; secs=${2:-3}; shift 2 || true
mode=${*:-"--connections 4 --in-flight 8"}
data=$(mktemp -d)
$bin/fabricd serve --listen 127.0.0.1:$port --data :memory: --log-level warn 2>/dev/null &
m_pid=$!
$bin/fabricd serve --listen 127.0.0.1:$dport --data "$data" --log-level warn 2>/dev/null &
d_pid=$!
trap 'kill $m_pid $d_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
sleep 1.5
for u in $port $dport; do $bin/fabric --url ws://127.0.0.1:$u/rpc bench --register echo=bench/agents/echo.wasm --mode health --duration 1s >/dev/null; done
rate() { $bin/fabric --url ws://127.0.0.1:$1/rpc bench --mode ${MODE:-submit-wait} $mode --duration "${secs}s" 2>&1 | sed -n 's/.*ops in .*: \([0-9]*\)\/s.*/\1/p'; }
for i in $(seq "$pairs"); do
	d=$(rate $dport); m=$(rate $port)
	echo "pair $i: durable $d/s memory $m/s ratio $(echo "$d $m" | awk '{printf "%.2f", $1/$2}')"
done
