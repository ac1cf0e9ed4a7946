#!/bin/sh
# Regenerates the instrumenter's test modules with wabt's wat2wasm.
set -eu
cd "$(dirname "$0")"
wat2wasm features.wat -o features.wasm
wat2wasm --debug-names features.wat -o features_names.wasm
