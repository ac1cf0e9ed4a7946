package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the CLI in-process against a real fabricd,
// built from ../fabricd once per test binary and started per test on a
// port of its own choosing. FABRIC_TEST_FABRICD names a prebuilt binary to
// use instead.

var (
	buildOnce   sync.Once
	buildDir    string
	fabricdPath string
	buildErr    error
)

func fabricdBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FABRIC_TEST_FABRICD"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "fabric-cli-test-")
		if buildErr != nil {
			return
		}
		fabricdPath = filepath.Join(buildDir, "fabricd")
		out, err := exec.Command("go", "build", "-o", fabricdPath, "github.com/chimera-fabric/fabric/cmd/fabricd").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatalf("building fabricd: %v", buildErr)
	}
	return fabricdPath
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

// removeBuilds deletes the fabricd built for the tests.
func removeBuilds() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// server is a running fabricd.
type server struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its log is read

	mu  sync.Mutex
	log bytes.Buffer // its stderr
}

// startServer starts `fabricd serve --data :memory: --listen 127.0.0.1:0`
// with extra flags, and waits for the line that logs its address. The
// server is stopped when the test ends.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--data", ":memory:", "--listen", "127.0.0.1:0",
		"--log-format", "json", "--workers", "2"}, extra...)
	s := &server{cmd: exec.Command(fabricdBinary(t), args...), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), "FABRIC_TOKEN=") // only --token sets one
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting fabricd: %v", err)
	}
	urls := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.log.Write(line)
			s.log.WriteByte('\n')
			s.mu.Unlock()
			var entry struct {
				Listen string `json:"listen"`
			}
			if json.Unmarshal(line, &entry) == nil && strings.HasPrefix(entry.Listen, "ws://") {
				select {
				case urls <- entry.Listen:
				default:
				}
			}
		}
		s.cmd.Wait()
	}()
	t.Cleanup(func() { s.stop(t) })
	select {
	case s.url = <-urls:
	case <-s.done:
		t.Fatalf("fabricd exited before serving:\n%s", s.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("fabricd did not log its address within a minute:\n%s", s.logText())
	}
	return s
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM, as an operator would, and waits for the exit; a
// server that does not stop within a minute is killed and the test fails.
func (s *server) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("fabricd did not stop within a minute of SIGTERM:\n%s", s.logText())
	}
}

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
