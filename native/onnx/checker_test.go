package onnx

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// checkerPython is the interpreter of the official ONNX checker (scripts/setup-onnx-checker.sh,
// run by make setup), or $FLEXTOK_ONNX_PYTHON.
func checkerPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("FLEXTOK_ONNX_PYTHON")
	if py == "" {
		py, _ = filepath.Abs("../../.deps/onnx-venv/bin/python")
	}
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		if os.Getenv("FLEXTOK_REQUIRE_ORT") == "1" {
			t.Fatalf("the ONNX checker (%s) is not installed: %v (make setup installs it)", py, err)
		}
		t.Skipf("no ONNX checker (make setup installs it): %v", err)
	}
	return py
}

// TestONNXChecker validates every exported graph of every test model with the official
// checker, full_check: schema of every node at opset 17, topological order, and strict shape
// inference through the whole graph, with the declared output shapes.
func TestONNXChecker(t *testing.T) {
	py := checkerPython(t)
	dir := t.TempDir()
	var paths []string
	for _, tm := range testModels(t) {
		s, err := ModelSizes(tm.m.Config, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []struct {
			name  string
			build func(*model.Model, Sizes) (*pb.ModelProto, error)
		}{{"encoder", Encoder}, {"decoder", Decoder}, {"vae_decoder", VAEDecoderGraph}} {
			g, err := b.build(tm.m, s)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Save(g, filepath.Join(dir, tm.name), b.name+".onnx")
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
	}
	const script = `
import sys, onnx
for p in sys.argv[1:]:
    onnx.checker.check_model(p, full_check=True)
    m = onnx.load(p, load_external_data=False)
    assert m.opset_import[0].version == 17, m.opset_import
    print("ok", p)
`
	out, err := exec.Command(py, append([]string{"-c", script}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx checker: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "ok "); n != len(paths) {
		t.Fatalf("checker passed %d of %d graphs:\n%s", n, len(paths), out)
	}
	t.Logf("%d graphs pass onnx.checker.check_model(full_check=True)", len(paths))
}
