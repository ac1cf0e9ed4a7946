#!/bin/sh
# Regenerates every .wasm in this directory from its .wat with wabt's wat2wasm.
# The .wasm files are committed: tests never need wat2wasm.
set -eu
cd "$(dirname "$0")"
for f in *.wat; do
	wat2wasm "$f" -o "${f%.wat}.wasm"
done
