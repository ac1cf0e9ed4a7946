//go:build wasmer

package fabricdtest

// buildTags: a test binary built with -tags wasmer builds fabricd with the
// wasmer engine too.
const buildTags = "wasmer"
