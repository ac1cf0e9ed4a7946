#!/bin/sh
# Regenerates the instrumenter's test modules with wabt's wat2wasm.
set -eu
cd "$(dirname "$0")"
wat2wasm features.wat -o features.wasm
wat2wasm --debug-names features.wat -o features_names.wasm
wat2wasm oob_elem.wat -o oob_elem.wasm
