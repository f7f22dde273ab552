//go:build cgo

package onnx

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// TestRecordedAttendCached: the KV-cache form of attention, recorded with the cache as graph
// inputs of dynamic length and the present keys and values as outputs, agrees with the eager
// executor's (which TestAttendCached in sdk/nn pins to one causal pass) after a prompt of T
// tokens, for m new tokens, within the per-op bound; the present values are the inputs and the
// new keys and values exactly.
func TestRecordedAttendCached(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, sz := range []struct{ N, H, hd, T, m int }{{1, 1, 8, 1, 1}, {2, 3, 16, 7, 1}, {3, 2, 8, 5, 4}} {
		t.Run(fmt.Sprintf("N=%d/H=%d/hd=%d/T=%d/m=%d", sz.N, sz.H, sz.hd, sz.T, sz.m), func(t *testing.T) {
			N, H, hd, T, m := sz.N, sz.H, sz.hd, sz.T, sz.m
			W := H * hd
			scale := float32(8.0 / float64(hd))
			randv := func(n int) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = float32(r.NormFloat64())
				}
				return v
			}
			prompt, step := randv(N*T*3*W), randv(N*m*3*W)
			e := nn.NewEager(context.Background(), nn.Options{Threads: 1})
			cache := nn.NewKVCache(N)
			e.AttendCached(nn.NewTensor(prompt, N*T, 3*W), cache, H, hd, scale)
			want := e.AttendCached(nn.NewTensor(step, N*m, 3*W), cache, H, hd, scale).Data

			// The prompt's keys and values as the graph's past inputs [N, H, T, hd].
			past := func(qkv []float32, L, j int) []float32 {
				out := make([]float32, 0, N*H*L*hd)
				for q := 0; q < N; q++ {
					for h := 0; h < H; h++ {
						for p := 0; p < L; p++ {
							row := qkv[(q*L+p)*3*W+j*W+h*hd:]
							out = append(out, row[:hd]...)
						}
					}
				}
				return out
			}
			g := NewGraph("attend_cached")
			rec := NewRecorder(g)
			c := &RecCache{K: g.Input("past_k", Float, "N", H, "T", hd), V: g.Input("past_v", Float, "N", H, "T", hd)}
			y := rec.AttendCached(Var{g.Input("qkv", Float, "N", "m", 3*W), 3 * W}, c, H, hd, scale)
			g.Output(y.V, "y", Float, "N", "m", W)
			g.Output(c.K, "present_k", Float, "N", H, "S", hd)
			g.Output(c.V, "present_v", Float, "N", H, "S", hd)
			got, _ := runGraph(t, g.Model("AttendCached"), []input{
				{name: "past_k", shape: []int64{int64(N), int64(H), int64(T), int64(hd)}, f32: past(prompt, T, 1)},
				{name: "past_v", shape: []int64{int64(N), int64(H), int64(T), int64(hd)}, f32: past(prompt, T, 2)},
				{name: "qkv", shape: []int64{int64(N), int64(m), int64(3 * W)}, f32: step},
			}, "y", "present_k", "present_v")
			if e := nntest.NMSE(got[0], want); !(e <= nntest.DefaultNMSE) {
				t.Fatalf("NMSE %.3g > %.3g", e, nntest.DefaultNMSE)
			}
			for j, name := range []string{"present_k", "present_v"} {
				all := make([]float32, 0, N*H*(T+m)*hd)
				pk, sk := past(prompt, T, j+1), past(step, m, j+1)
				for q := 0; q < N*H; q++ {
					all = append(all, pk[q*T*hd:(q+1)*T*hd]...)
					all = append(all, sk[q*m*hd:(q+1)*m*hd]...)
				}
				if e := nntest.NMSE(got[j+1], all); e != 0 {
					t.Fatalf("%s: NMSE %.3g, want exact", name, e)
				}
			}
		})
	}
}

// TestRecordedRotary records nn.RotaryOps' Rotary (grouped and plain heads, the zero table of
// negative positions) and holds it to the eager executor within the per-op bound.
func TestRecordedRotary(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, sz := range []struct{ N, L, H, Hkv, hd int }{{1, 1, 1, 1, 2}, {2, 3, 4, 2, 8}, {3, 2, 6, 3, 16}, {1, 5, 4, 4, 4}} {
		t.Run(fmt.Sprintf("N=%d/L=%d/H=%d/Hkv=%d/hd=%d", sz.N, sz.L, sz.H, sz.Hkv, sz.hd), func(t *testing.T) {
			rows, C := sz.N*sz.L, (sz.H+2*sz.Hkv)*sz.hd
			x := make([]float32, rows*C)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			pos := make([]float32, rows)
			for i := range pos {
				pos[i] = float32(r.IntN(300) - 1)
			}
			pos[0] = -1
			freqs := nn.RotaryFrequencies(sz.hd, 10000)
			e := nn.NewEager(context.Background(), nn.Options{})
			want := e.Rotary(nn.NewTensor(x, rows, C), nn.NewTensor(pos, rows, 1), sz.H, sz.Hkv, sz.hd, freqs).Data
			g := NewGraph("rotary")
			rec := NewRecorder(g)
			y := rec.Rotary(Var{g.Input("qkv", Float, "N", "L", C), C}, Var{g.Input("pos", Float, "N", "L", 1), 1}, sz.H, sz.Hkv, sz.hd, freqs)
			g.Output(y.V, "y", Float, "N", "L", 3*sz.H*sz.hd)
			got, _ := runGraph(t, g.Model("Rotary"), []input{
				{name: "qkv", shape: []int64{int64(sz.N), int64(sz.L), int64(C)}, f32: x},
				{name: "pos", shape: []int64{int64(sz.N), int64(sz.L), 1}, f32: pos},
			}, "y")
			if e := nntest.NMSE(got[0], want); !(e <= nntest.DefaultNMSE) {
				t.Fatalf("NMSE %.3g > %.3g", e, nntest.DefaultNMSE)
			}
			t.Logf("NMSE %.3g", nntest.NMSE(got[0], want))
		})
	}
}
