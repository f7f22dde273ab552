//go:build cgo

package onnx

import "testing"

// TestLinearLayerNorm runs a small graph built with the layer helpers in ONNX Runtime and
// checks it against a direct computation.
func TestLinearLayerNorm(t *testing.T) {
	g := NewGraph("t")
	x := g.Input("x", Float, "n", 3)
	w := []float32{1, 2, 3, 4, 5, 6} // [2, 3]
	b := []float32{0.5, -1}
	y := g.SiLU(g.LayerNorm(g.Linear(x, "fc", w, 2, 3, b), 2, 1e-6))
	g.Output(y, "y", Float, "n", 2)
	out, shapes := runGraph(t, g.Model("test"), []input{{name: "x", shape: []int64{1, 3}, f32: []float32{1, 0, -1}}}, "y")
	// fc: [1-3+0.5, 4-6-1] = [-1.5, -3]; LN: [1, -1] (eps aside); SiLU(1)=0.7311, SiLU(-1)=-0.2689
	want := []float32{0.7310586, -0.26894143}
	if len(shapes[0]) != 2 || shapes[0][1] != 2 {
		t.Fatalf("shape %v", shapes[0])
	}
	for i := range want {
		if d := out[0][i] - want[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("y = %v, want %v", out[0], want)
		}
	}
}
