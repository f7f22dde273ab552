package sdk

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports checks that no non-standard package that sdk/... depends on, on any target,
// imports cgo, syscall/js, ONNX Runtime or wazero: the core must stay portable. (The standard
// library itself uses syscall/js on GOOS=js; that is the platform, not our dependency.)
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	bad := func(imp string) bool {
		return imp == "C" || imp == "syscall/js" || strings.Contains(imp, "onnxruntime_go") || strings.Contains(imp, "wazero")
	}
	for _, target := range [][2]string{{"", ""}, {"js", "wasm"}, {"wasip1", "wasm"}} {
		cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.ImportPath}} {{join .Imports " "}}{{end}}`, "./...")
		if target[0] != "" {
			cmd.Env = append(cmd.Environ(), "GOOS="+target[0], "GOARCH="+target[1])
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list (%v): %v", target, err)
		}
		pkgs := 0
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			pkgs++
			for _, imp := range f[1:] {
				if bad(imp) {
					t.Errorf("%s imports %s (target %v)", f[0], imp, target)
				}
			}
		}
		if pkgs < 3 {
			t.Fatalf("go list found only %d packages for %v: the check would prove nothing", pkgs, target)
		}
	}
}
