//go:build !wasmer

package fabricdtest

const buildTags = ""
