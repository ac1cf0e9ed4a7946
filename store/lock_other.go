//go:build !unix

package store

import (
	"fmt"
	"runtime"
)

type dirLock struct{}

// lockDir refuses: without flock(2) two processes could share one database
// and corrupt the queue, which is worse than not starting.
func lockDir(path string) (*dirLock, error) {
	return nil, fmt.Errorf("store: locking %s: not supported on %s; use --data :memory:", path, runtime.GOOS)
}

func (l *dirLock) unlock() error { return nil }
