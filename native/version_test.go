package native

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// ortVersionFile is native/ORT_VERSION: the ONNX Runtime release make setup installs.
func ortVersionFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("ORT_VERSION")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestORTVersionFileIsNewEnough(t *testing.T) {
	v := ortVersionFile(t)
	ok, err := versionAtLeast(v, MinVersion)
	if err != nil || !ok {
		t.Fatalf("native/ORT_VERSION %q: not >= the binding's minimum %s (%v)", v, MinVersion, err)
	}
}

func TestLoadedVersionIsORTVersionFile(t *testing.T) {
	needORT(t)
	got, err := RuntimeVersion()
	if err != nil {
		t.Fatal(err)
	}
	want := ortVersionFile(t)
	setup, _ := filepath.Abs(filepath.Join("..", ".deps", "ort", "libonnxruntime.so"))
	if env := os.Getenv("FLEXTOK_ORT_LIB"); env != "" && !samePath(libraryPath(env), setup) {
		// Another build (e.g. scripts/setup-ort-gpu.sh's, from PyPI, which may lack the exact
		// patch release): the same MAJOR.MINOR family.
		g, err1 := parseVersion(got)
		w, err2 := parseVersion(want)
		if err1 != nil || err2 != nil || g[0] != w[0] || g[1] != w[1] {
			t.Errorf("$FLEXTOK_ORT_LIB is ONNX Runtime %s; native/ORT_VERSION says %s (want the same MAJOR.MINOR)", got, want)
		}
		t.Logf("$FLEXTOK_ORT_LIB is ONNX Runtime %s (native/ORT_VERSION %s)", got, want)
	} else if got != want {
		t.Errorf("the loaded library is ONNX Runtime %s; native/ORT_VERSION says %s", got, want)
	}
	if ok, err := versionAtLeast(got, MinVersion); err != nil || !ok {
		t.Errorf("loaded %s: not >= %s (%v)", got, MinVersion, err)
	}
}

// MinAPIVersion must be the ORT_API_VERSION of the binding's headers.
func TestMinAPIVersionIsTheBindings(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/yalue/onnxruntime_go").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	h, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "onnxruntime_c_api.h"))
	if err != nil {
		t.Skipf("the binding's header: %v", err)
	}
	m := regexp.MustCompile(`(?m)^#define ORT_API_VERSION (\d+)`).FindSubmatch(h)
	if m == nil {
		t.Fatal("no ORT_API_VERSION in onnxruntime_c_api.h")
	}
	if n, _ := strconv.Atoi(string(m[1])); n != MinAPIVersion {
		t.Errorf("the binding's ORT_API_VERSION is %d; MinAPIVersion is %d", n, MinAPIVersion)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, c := range []struct {
		have, want string
		ok         bool
	}{
		{"1.24.3", "1.24.0", true},
		{"1.24.0", "1.24.0", true},
		{"1.23.2", "1.24.0", false},
		{"1.100.0", "1.24.0", true},
		{"2.0.0", "1.24.0", true},
		{"1.24", "1.24.0", true},
		{"1.25.0-dev+abc", "1.24.0", true},
		{"0.99.9", "1.24.0", false},
	} {
		ok, err := versionAtLeast(c.have, c.want)
		if err != nil || ok != c.ok {
			t.Errorf("versionAtLeast(%s, %s) = %v, %v", c.have, c.want, ok, err)
		}
	}
	for _, bad := range []string{"", "1", "x.y.z", "1.2.3.4", "1.-2.0"} {
		if _, err := versionAtLeast(bad, "1.0.0"); err == nil {
			t.Errorf("versionAtLeast(%q): no error", bad)
		}
	}
}
