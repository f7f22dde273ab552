//go:build cgo

package onnx

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/nn/nntest"
)

// TestRecordedOps is the per-op conformance of the recorder (ggml's test-backend-ops): every
// case of sdk/nn/nntest is recorded as a one-op graph with a dynamic batch, run in ONNX
// Runtime, and compared with the eager portable path within the case's NMSE bound
// (sdk/nn's TestOps pins the fast path against the same outputs). The graph passes the
// ONNX checker's strict mode too where the checker is installed (TestONNXChecker).
func TestRecordedOps(t *testing.T) {
	for _, c := range nntest.Cases(1) {
		t.Run(c.Name, func(t *testing.T) {
			m, in := recordCase(&c)
			got, shapes := runGraph(t, m, in, "y")
			want := nntest.Eager(&c, nn.Options{Threads: 1})
			if len(got[0]) != len(want) {
				t.Fatalf("ORT gives shape %v, eager %d values", shapes[0], len(want))
			}
			e := nntest.NMSE(got[0], want)
			t.Logf("NMSE %.2g (bound %.0g)", e, c.NMSE)
			if !(e <= c.NMSE) {
				t.Fatalf("NMSE %.3g > %.3g", e, c.NMSE)
			}
		})
	}
}

// recordCase records c's op as a graph and returns it with its inputs.
func recordCase(c *nntest.Case) (*pb.ModelProto, []input) {
	g := NewGraph("op")
	rec := NewRecorder(g)
	vars := make([]Var, len(c.Inputs))
	var in []input
	for i, x := range c.Inputs {
		name := fmt.Sprintf("in%d_%s", i, x.Name)
		switch x.Kind {
		case nntest.Rows:
			vars[i] = Var{g.Input(name, Float, "N", c.L, x.Cols), x.Cols}
			in = append(in, input{name: name, shape: []int64{int64(c.N), int64(c.L), int64(x.Cols)}, f32: x.Data})
		case nntest.Mod:
			tiled := make([]float32, 0, c.N*x.Cols)
			for range c.N {
				tiled = append(tiled, x.Data...)
			}
			vars[i] = Var{g.Input(name, Float, "N", x.Cols), x.Cols}
			in = append(in, input{name: name, shape: []int64{int64(c.N), int64(x.Cols)}, f32: tiled})
		case nntest.PerSeq:
			vars[i] = Var{g.Input(name, Float, "N", x.Cols), x.Cols}
			in = append(in, input{name: name, shape: []int64{int64(c.N), int64(x.Cols)}, f32: x.Data})
		}
	}
	lin := make([]*RecLinear, len(c.Linears))
	for i, l := range c.Linears {
		lin[i] = NewRecLinear(fmt.Sprintf("lin%d", i), l.W, l.B, l.Out, l.In)
	}
	y := nntest.Apply(rec, c, vars, lin)
	if c.Op == "Sinusoid" {
		g.Output(y.V, "y", Float, "N", c.Dims)
	} else {
		g.Output(y.V, "y", Float, "N", c.L, c.OutCols())
	}
	return g.Model("one op of sdk/nn: " + c.Name), in
}

// TestRecordedOpsChecker: every recorded one-op graph passes the official checker's full
// check (strict shape inference with the declared output shapes), as the model graphs do.
func TestRecordedOpsChecker(t *testing.T) {
	py := checkerPython(t)
	dir := t.TempDir()
	var paths []string
	for i, c := range nntest.Cases(1) {
		m, _ := recordCase(&c)
		p, err := Save(m, filepath.Join(dir, fmt.Sprint(i)), "op.onnx")
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	const script = `
import sys, onnx
for p in sys.argv[1:]:
    onnx.checker.check_model(p, full_check=True)
    print("ok", p)
`
	out, err := exec.Command(py, append([]string{"-c", script}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx checker: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "ok "); n != len(paths) {
		t.Fatalf("checker passed %d of %d graphs:\n%s", n, len(paths), out)
	}
}
