package executor_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chimera-fabric/fabric/executor/enginetest"
)

// TestAgentsUpToDate checks that every test agent has its .wasm, that the
// README documents it, and, where wat2wasm is installed, that the committed
// .wasm is what its .wat compiles to.
func TestAgentsUpToDate(t *testing.T) {
	dir := enginetest.AgentsDir()
	wats, err := filepath.Glob(filepath.Join(dir, "*.wat"))
	if err != nil || len(wats) == 0 {
		t.Fatalf("no .wat in %s: %v", dir, err)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	wat2wasm, _ := exec.LookPath("wat2wasm")
	for _, wat := range wats {
		name := strings.TrimSuffix(filepath.Base(wat), ".wat")
		if !bytes.Contains(readme, []byte("| `"+name+"` |")) {
			t.Errorf("%s: not in testdata/agents/README.md", name)
		}
		committed, err := os.ReadFile(strings.TrimSuffix(wat, ".wat") + ".wasm")
		if err != nil {
			t.Errorf("%s: %v (run testdata/agents/build.sh)", name, err)
			continue
		}
		if wat2wasm == "" {
			continue
		}
		out := filepath.Join(t.TempDir(), name+".wasm")
		if msg, err := exec.Command(wat2wasm, wat, "-o", out).CombinedOutput(); err != nil {
			t.Errorf("%s: wat2wasm: %v\n%s", name, err, msg)
			continue
		}
		fresh, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s.wasm is stale: run testdata/agents/build.sh", name)
		}
	}
	if wat2wasm == "" {
		t.Log("wat2wasm not installed: the .wasm files were not recompiled")
	}
}
