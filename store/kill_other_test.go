//go:build !unix

package store_test

// childMain: the kill-safety test runs on unix only.
func childMain() (int, bool) { return 0, false }
