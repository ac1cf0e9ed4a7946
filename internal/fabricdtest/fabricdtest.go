// Package fabricdtest starts the real fabricd binary for end-to-end tests:
// built once per test binary (or taken from FABRIC_TEST_FABRICD), run on a
// port of its own choosing, stopped with SIGTERM when the test ends.
package fabricdtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Binary returns the path of a fabricd built from this module, building it
// on first use, with the build tags of the test binary itself (-tags wasmer
// gives a fabricd with the wasmer engine).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FABRIC_TEST_FABRICD"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "fabricd-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "fabricd")
		// The version is "test", as the fixtures of in-process servers say.
		args := []string{"build", "-o", binPath, "-ldflags", "-X main.version=test"}
		if tags := buildTags; tags != "" {
			args = append(args, "-tags", tags)
		}
		args = append(args, "github.com/chimera-fabric/fabric/cmd/fabricd")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build fabricd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Cleanup removes the binary built by Binary; call it from TestMain.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Server is a running `fabricd serve`.
type Server struct {
	URL  string // ws://ADDR/rpc
	Addr string // ADDR
	Cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its log is read

	mu  sync.Mutex
	log bytes.Buffer // its stderr
}

// Start starts `fabricd serve --listen 127.0.0.1:0 --log-format json` with
// args (which must include --data), and waits until it logs its address. The
// server is stopped with SIGTERM when the test ends, if it still runs.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	s := &Server{Cmd: exec.Command(Binary(t), all...), done: make(chan struct{})}
	s.Cmd.Env = append(os.Environ(), "FABRIC_TOKEN=") // only --token sets one
	stderr, err := s.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Cmd.Start(); err != nil {
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
		s.Cmd.Wait()
	}()
	t.Cleanup(func() { s.Stop(t) })
	select {
	case s.URL = <-urls:
		s.Addr = strings.TrimSuffix(strings.TrimPrefix(s.URL, "ws://"), "/rpc")
	case <-s.done:
		t.Fatalf("fabricd exited before serving:\n%s", s.Log())
	case <-time.After(2 * time.Minute):
		t.Fatalf("fabricd did not log its address within two minutes:\n%s", s.Log())
	}
	return s
}

// Log is what the server wrote on stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop sends SIGTERM, as an operator would, and waits for the exit; a
// server that does not stop within a minute is killed and the test fails.
func (s *Server) Stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.Cmd.Process.Kill()
		<-s.done
		t.Errorf("fabricd did not stop within a minute of SIGTERM:\n%s", s.Log())
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() {
	s.Cmd.Process.Kill()
	<-s.done
}

// ExitCode is the process's exit code once it has exited (-1 if killed by a
// signal).
func (s *Server) ExitCode() int {
	<-s.done
	return s.Cmd.ProcessState.ExitCode()
}

// WaitFor polls cond every 10ms until it holds or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
