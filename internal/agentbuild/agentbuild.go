// Package agentbuild builds Go agents (main packages written with the guest
// SDK) into WebAssembly modules with GOOS=wasip1 GOARCH=wasm, for tests and
// tools.
//
// Tests of many packages need the same few example agents; building one
// takes seconds even with a warm Go build cache, so Build keeps the modules
// it made in a cache directory of its own, keyed by a hash of everything the
// result depends on: the Go version, the build mode, go.mod and go.sum, and
// the sources of the package and of every package of this module it imports.
// A warm hit costs reading those sources and one file. Several test binaries
// may build at once: each writes to a temporary file and renames it into
// place, so a reader sees a whole module or none.
//
// The cache directory is $FABRIC_AGENT_CACHE, or "fabric-agents" under
// os.UserCacheDir (under os.TempDir when there is none). It may be deleted
// at any time. A module unused for a week is removed when its package is
// next rebuilt.
package agentbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CacheEnv names the environment variable that overrides the cache directory.
const CacheEnv = "FABRIC_AGENT_CACHE"

// Option changes how Build builds.
type Option func(*config)

type config struct {
	cShared bool
}

// CShared builds with -buildmode=c-shared: the module is a reactor that
// exports _initialize and its //go:wasmexport functions (fabric-v1), not
// _start.
func CShared() Option { return func(c *config) { c.cShared = true } }

// Build builds the agent in pkgPath and returns the module's bytes, failing
// tb when it cannot. pkgPath is a directory relative to the module root
// ("examples/echo"), an import path inside this module
// ("github.com/chimera-fabric/fabric/examples/echo"), or an absolute
// directory. The result comes from the cache when the sources have not
// changed.
func Build(tb testing.TB, pkgPath string, opts ...Option) []byte {
	tb.Helper()
	path := BuildFile(tb, pkgPath, opts...)
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("agentbuild: %v", err)
	}
	return b
}

// BuildFile is Build returning the cached module's path instead of its
// bytes. The file must not be modified.
func BuildFile(tb testing.TB, pkgPath string, opts ...Option) string {
	tb.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	dir, err := PackageDir(pkgPath)
	if err != nil {
		tb.Fatalf("agentbuild: %v", err)
	}
	path, err := Cached(context.Background(), dir, c.cShared)
	if err != nil {
		tb.Fatalf("agentbuild: %v", err)
	}
	return path
}

// Cached returns the path of the cached module built from the package in
// pkgDir, building it first when the cache holds no module for the current
// sources. Concurrent calls in one process for the same key share one build.
func Cached(ctx context.Context, pkgDir string, cShared bool) (string, error) {
	pkgDir, err := filepath.Abs(pkgDir)
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	key, err := cacheKey(pkgDir, cShared)
	if err != nil {
		return "", err
	}
	path := filepath.Join(cache, filepath.Base(pkgDir)+"-"+key+".wasm")

	l := keyLock(path)
	l.Lock()
	defer l.Unlock()
	if _, err := os.Stat(path); err == nil {
		now := time.Now()
		os.Chtimes(path, now, now) // marks it used, for prune; best effort
		return path, nil
	}
	if err := BuildTo(ctx, pkgDir, path, cShared); err != nil {
		return "", err
	}
	prune(cache, filepath.Base(pkgDir), path)
	return path, nil
}

// staleAfter is how long a cached module may go unused before a new build
// of the same package removes it.
const staleAfter = 7 * 24 * time.Hour

// prune removes the cached modules of the package named base, but keep,
// that have not been used for staleAfter. Errors are ignored: another
// process may be pruning too, and a module left behind costs only space.
func prune(cache, base, keep string) {
	old, _ := filepath.Glob(filepath.Join(cache, base+"-*.wasm"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && p != keep && time.Since(st.ModTime()) > staleAfter {
			os.Remove(p)
		}
	}
}

var keyLocks sync.Map // path -> *sync.Mutex

func keyLock(path string) *sync.Mutex {
	l, _ := keyLocks.LoadOrStore(path, new(sync.Mutex))
	return l.(*sync.Mutex)
}

// CacheDir returns the cache directory, creating it when needed.
func CacheDir() (string, error) {
	dir := os.Getenv(CacheEnv)
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "fabric-agents")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("agent cache: %w", err)
	}
	return dir, nil
}

// CompilationCacheDir returns a directory for wazero's compilation cache
// (wazero.NewCompilationCacheWithDir), beside the modules, so that tests
// running agents skip compiling the same module again. wazero never removes
// an entry, so the first call in a process removes those written more than
// staleAfter ago; one still in use is then compiled and written again.
func CompilationCacheDir() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "wazero")
	pruneWazero.Do(func() {
		old, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		for _, p := range old {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && time.Since(st.ModTime()) > staleAfter {
				os.Remove(p)
			}
		}
	})
	return dir, nil
}

var pruneWazero sync.Once

// BuildTo builds the Go main package in pkgDir for GOOS=wasip1 GOARCH=wasm
// into outFile, as a reactor (-buildmode=c-shared) when cShared is set. It
// uses the go command of runtime.GOROOT, builds with -trimpath so the module
// does not depend on where the sources lie, and replaces outFile atomically:
// a concurrent reader sees the old file or the new one, never a part.
func BuildTo(ctx context.Context, pkgDir, outFile string, cShared bool) error {
	pkgDir, err := filepath.Abs(pkgDir)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(outFile), "."+filepath.Base(outFile)+".*.tmp")
	if err != nil {
		return fmt.Errorf("agentbuild: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	builds.Add(1)
	defer os.Remove(tmpName) // a no-op once renamed

	args := []string{"build", "-trimpath", "-buildvcs=false"}
	if cShared {
		args = append(args, "-buildmode=c-shared")
	}
	args = append(args, "-o", tmpName, ".")
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(),
		"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0",
		// The caller's GOFLAGS (-race, -cover, ...) are for its own build,
		// and -race has no wasm port.
		"GOFLAGS=",
		"GOTOOLCHAIN=local",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("agentbuild: GOOS=wasip1 GOARCH=wasm go %s in %s: %w\n%s",
			strings.Join(args, " "), pkgDir, err, out)
	}
	if err := os.Chmod(tmpName, 0o644); err != nil {
		return fmt.Errorf("agentbuild: %w", err)
	}
	if err := os.Rename(tmpName, outFile); err != nil {
		return fmt.Errorf("agentbuild: %w", err)
	}
	return nil
}

// goTool is the go command of the toolchain that built this binary.
func goTool() string {
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if runtime.GOOS == "windows" {
			p += ".exe"
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// goVersion identifies the toolchain in the cache key: the first line of
// GOROOT/VERSION, which the go command itself reports, or the version this
// binary was built with.
func goVersion() string {
	if b, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "VERSION")); err == nil {
		v, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimSpace(v)
	}
	return runtime.Version()
}

// builds counts the go build runs of this process, for tests.
var builds atomic.Int64

var errNoModule = errors.New("no go.mod found")
