package agentbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/internal/agentbuild/abitest"
)

// writeModule lays out a small module in a temporary directory: a main
// package at the root importing example.com/agent/lib.
func writeModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/agent\n\ngo 1.26\n",
		"main.go": `package main

import (
	"os"

	"example.com/agent/lib"
)

func main() { os.Stdout.WriteString(lib.Greeting) }
`,
		"main_test.go": "package main\n",
		"lib/lib.go":   "package lib\n\nconst Greeting = \"hello\"\n",
		"other/x.go":   "package other\n",
	}
	for name, src := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func key(t *testing.T, dir string, cShared bool) string {
	t.Helper()
	k, err := cacheKey(dir, cShared)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCacheKey(t *testing.T) {
	dir := writeModule(t)
	base := key(t, dir, false)
	if again := key(t, dir, false); again != base {
		t.Fatalf("key changed without a change: %s then %s", base, again)
	}
	if key(t, dir, true) == base {
		t.Error("c-shared and plain builds share a key")
	}

	edit := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Files the build does not read leave the key alone.
	edit("main_test.go", "package main\n\n// edited\n")
	edit("other/x.go", "package other\n\n// edited\n")
	if k := key(t, dir, false); k != base {
		t.Error("editing a test file or an unimported package changed the key")
	}
	// An imported package of the module, the package itself, and go.mod
	// each change it.
	seen := map[string]string{base: "start"}
	for _, e := range []struct{ name, src string }{
		{"lib/lib.go", "package lib\n\nconst Greeting = \"bye\"\n"},
		{"main.go", "package main\n\nimport \"example.com/agent/lib\"\n\nfunc main() { println(lib.Greeting) }\n"},
		{"embedded.txt", "data\n"},
		{"go.mod", "module example.com/agent\n\ngo 1.26.0\n"},
	} {
		edit(e.name, e.src)
		k := key(t, dir, false)
		if prev, ok := seen[k]; ok {
			t.Errorf("after editing %s the key is the one of %s", e.name, prev)
		}
		seen[k] = e.name
	}
}

func TestPackageDir(t *testing.T) {
	m, err := thisModule()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(m.dir, "internal", "agentbuild")
	for _, in := range []string{"internal/agentbuild", m.path + "/internal/agentbuild", want} {
		got, err := PackageDir(in)
		if err != nil || got != want {
			t.Errorf("PackageDir(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "no/such/dir", "go.mod"} {
		if _, err := PackageDir(in); err == nil {
			t.Errorf("PackageDir(%q): want an error", in)
		}
	}
}

func TestCachedBuildsOnce(t *testing.T) {
	t.Setenv(CacheEnv, t.TempDir())
	dir := writeModule(t)
	ctx := context.Background()
	before := builds.Load()

	var wg sync.WaitGroup
	paths := make([]string, 4)
	errs := make([]error, 4)
	for i := range paths {
		wg.Go(func() { paths[i], errs[i] = Cached(ctx, dir, false) })
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if paths[i] != paths[0] {
			t.Fatalf("concurrent calls returned %q and %q", paths[0], paths[i])
		}
	}
	if n := builds.Load() - before; n != 1 {
		t.Errorf("4 concurrent calls ran go build %d times, want 1", n)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm\x01\x00\x00\x00")) {
		t.Fatalf("%s is not a WebAssembly 1.0 module: starts %q", paths[0], b[:min(8, len(b))])
	}

	// A warm hit builds nothing; an edit builds again, into another file.
	if _, err := Cached(ctx, dir, false); err != nil {
		t.Fatal(err)
	}
	if n := builds.Load() - before; n != 1 {
		t.Errorf("a warm call ran go build (%d builds in all)", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "lib.go"), []byte("package lib\n\nconst Greeting = \"bye\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p2, err := Cached(ctx, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if p2 == paths[0] || builds.Load()-before != 2 {
		t.Errorf("after an edit: path %q (was %q), %d builds; want a new path and 2 builds", p2, paths[0], builds.Load()-before)
	}
	leftovers, _ := filepath.Glob(filepath.Join(os.Getenv(CacheEnv), ".*.tmp"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left in the cache: %v", leftovers)
	}
}

func TestPrune(t *testing.T) {
	cache := t.TempDir()
	old := time.Now().Add(-staleAfter - time.Hour)
	mk := func(name string, at time.Time) string {
		p := filepath.Join(cache, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := mk("echo-aaaa.wasm", old)
	fresh := mk("echo-bbbb.wasm", time.Now())
	keep := mk("echo-cccc.wasm", old)
	other := mk("echoes-dddd.wasm", old) // another package's
	_ = other
	prune(cache, "echo", keep)
	for p, want := range map[string]bool{stale: false, fresh: true, keep: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %t, want %t", filepath.Base(p), err == nil, want)
		}
	}
}

func TestBuildToReportsCompileErrors(t *testing.T) {
	dir := writeModule(t)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefinedThing() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "a.wasm")
	err := BuildTo(context.Background(), dir, out, false)
	if err == nil {
		t.Fatal("BuildTo of a broken package: want an error")
	}
	for _, want := range []string{"GOOS=wasip1 GOARCH=wasm", "undefined: undefinedThing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error should contain %q; got %v", want, err)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed build left an output file")
	}
}

func TestBuildReactor(t *testing.T) {
	t.Setenv(CacheEnv, t.TempDir())
	dir := writeModule(t)
	src := `package main

//go:wasmexport run
func run() int32 { return 0 }

func main() {}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, exports, err := abitest.Inspect(context.Background(), Build(t, dir, CShared()))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"_initialize", "memory", "run"}; !slices.Equal(exports, want) {
		t.Errorf("a c-shared build exports %v, want %v", exports, want)
	}
}
