#!/bin/sh
# Regenerates the executor's own test agents with wabt's wat2wasm; the .wasm
# files are committed, so tests never need wat2wasm.
set -eu
cd "$(dirname "$0")"
for f in *.wat; do
	wat2wasm "$f" -o "${f%.wat}.wasm"
done
