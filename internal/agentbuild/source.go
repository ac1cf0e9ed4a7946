package agentbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// module is this module: its root directory and path.
type module struct {
	dir, path string
}

var (
	modOnce sync.Once
	mod     module
	modErr  error
)

// thisModule finds the module that holds this source file. Tests run from
// their package's directory inside the module, so the compile-time path of
// this file is the usual answer; a binary built with -trimpath has none, and
// then the working directory's enclosing go.mod is used.
func thisModule() (module, error) {
	modOnce.Do(func() {
		start := ""
		if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
			start = filepath.Dir(file)
		} else if wd, err := os.Getwd(); err == nil {
			start = wd
		}
		mod, modErr = findModule(start)
	})
	return mod, modErr
}

func findModule(dir string) (module, error) {
	for d := dir; ; {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					p := strings.Trim(strings.TrimSpace(rest), `"`)
					return module{dir: d, path: p}, nil
				}
			}
			return module{}, fmt.Errorf("%s: no module line", filepath.Join(d, "go.mod"))
		}
		parent := filepath.Dir(d)
		if parent == d {
			return module{}, fmt.Errorf("%w in %s or above", errNoModule, dir)
		}
		d = parent
	}
}

// PackageDir resolves pkgPath, as Build takes it, to a directory: an
// absolute directory is itself, an import path inside this module is the
// matching directory, and anything else is relative to the module's root.
func PackageDir(pkgPath string) (string, error) {
	if pkgPath == "" {
		return "", fmt.Errorf("package path: want a directory or an import path; got \"\"")
	}
	dir := pkgPath
	if !filepath.IsAbs(pkgPath) {
		m, err := thisModule()
		if err != nil {
			return "", err
		}
		rel := pkgPath
		if rest, ok := strings.CutPrefix(pkgPath, m.path+"/"); ok {
			rel = rest
		}
		dir = filepath.Join(m.dir, filepath.FromSlash(rel))
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return "", fmt.Errorf("package path %q: want a package directory; %s is not one", pkgPath, dir)
	}
	return dir, nil
}

// cacheKey hashes everything a build of pkgDir depends on. Packages outside
// this module are pinned by go.sum and the Go version; packages inside it
// are followed through their imports, and each one's files, but for its
// tests, are hashed by name and content (all of them, so that files embedded
// with //go:embed count too; those in subdirectories are not followed).
func cacheKey(pkgDir string, cShared bool) (string, error) {
	m, err := findModule(pkgDir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "agentbuild v1\n%s\ncshared=%t\n", goVersion(), cShared)
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(m.dir, f))
		if err != nil && !os.IsNotExist(err) {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}

	seen := map[string]bool{}
	queue := []string{pkgDir}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if seen[dir] {
			continue
		}
		seen[dir] = true
		imports, err := hashPackage(h, m.dir, dir)
		if err != nil {
			return "", err
		}
		for _, imp := range imports {
			if imp == m.path {
				queue = append(queue, m.dir)
			} else if rest, ok := strings.CutPrefix(imp, m.path+"/"); ok {
				queue = append(queue, filepath.Join(m.dir, filepath.FromSlash(rest)))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// hashPackage writes the files of the package in dir to h and returns the
// imports of its Go files. Build constraints are not evaluated: following the imports
// of a file that a wasip1 build leaves out only hashes a package too many.
func hashPackage(h io.Writer, root, dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("agentbuild: reading package %s: %w", dir, err)
	}
	rel, _ := filepath.Rel(root, dir)
	var imports []string
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "file %s %d\n", filepath.ToSlash(filepath.Join(rel, name)), len(src))
		h.Write(src)
		if !strings.HasSuffix(name, ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			// Let the build report it; the hash already covers the file.
			continue
		}
		for _, s := range f.Imports {
			if p, err := strconv.Unquote(s.Path.Value); err == nil {
				imports = append(imports, p)
			}
		}
	}
	slices.Sort(imports)
	return slices.Compact(imports), nil
}
