package main

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/fabricdtest"
)

// The end-to-end tests run the CLI in-process against a real fabricd,
// built from ../fabricd once per test binary and started per test on a
// port of its own choosing. FABRIC_TEST_FABRICD names a prebuilt binary to
// use instead.

// server is a running fabricd.
type server struct {
	*fabricdtest.Server
	url string
}

// startServer starts `fabricd serve --data :memory: --listen 127.0.0.1:0`
// with extra flags, and waits for the line that logs its address. The
// server is stopped when the test ends.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	s := fabricdtest.Start(t, append([]string{"--data", ":memory:", "--workers", "2"}, extra...)...)
	return &server{Server: s, url: s.URL}
}

func (s *server) logText() string { return s.Log() }

// removeBuilds deletes the fabricd built for the tests.
func removeBuilds() { fabricdtest.Cleanup() }

// env is the environment of CLI runs against s.
func (s *server) env() map[string]string { return map[string]string{"FABRIC_URL": s.url} }

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or a minute passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
