#!/bin/sh
# bench/run.sh: the live figures of BENCHMARKS.md in one run, against real
# processes on this machine: a raw WebSocket echo server, fabricd with the
# in-memory store and fabricd with the durable one, each on a port of its
# own, driven by `fabric bench`. Ratios are read within one invocation of
# `fabric bench` (same connections, same workers, one mode after the other).
#
#   bench/run.sh [SECONDS]     (default 5 seconds per mode)
#
# It builds bin/fabric and bin/fabricd first, and stops what it started.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-5}
go build -o bin/fabricd ./cmd/fabricd
go build -o bin/fabric ./cmd/fabric
data=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$data"
}
trap cleanup EXIT INT TERM

bin/fabric echo-server --listen 127.0.0.1:7451 >/dev/null &
pids="$pids $!"
bin/fabricd serve --listen 127.0.0.1:7452 --data :memory: --log-level warn 2>/dev/null &
pids="$pids $!"
bin/fabricd serve --listen 127.0.0.1:7453 --data "$data" --log-level warn 2>/dev/null &
pids="$pids $!"
sleep 2

mem=ws://127.0.0.1:7452/rpc
dur=ws://127.0.0.1:7453/rpc
reg="--register echo=bench/agents/echo.wasm"
d="--duration ${secs}s"
echo "# $(date -u +%FT%TZ), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg)"
set -x
# 1. The floor, one call at a time on one connection: raw echo, system.health, a task.
bin/fabric --url $mem bench $reg --mode echo,health,submit-wait --echo-url ws://127.0.0.1:7451/echo --connections 1 --in-flight 1 $d
# 2. Under load: 4 connections x 8 workers.
bin/fabric --url $mem bench --mode echo,health,submit-wait,submit-subscribe --echo-url ws://127.0.0.1:7451/echo --connections 4 --in-flight 8 $d
# 3. Batches of 64.
bin/fabric --url $mem bench --mode health,submit-wait,submit-subscribe,submit --connections 4 --in-flight 4 --batch 64 $d
# 4. The durable store, then the in-memory one again, back to back.
bin/fabric --url $dur bench $reg --mode submit-wait --connections 4 --in-flight 8 $d
bin/fabric --url $mem bench --mode submit-wait --connections 4 --in-flight 8 $d
bin/fabric --url $dur bench --mode submit-wait --connections 4 --in-flight 4 --batch 64 $d
bin/fabric --url $mem bench --mode submit-wait --connections 4 --in-flight 4 --batch 64 $d
