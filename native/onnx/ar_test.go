//go:build cgo

package onnx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/ar"
)

// TestRecordedAR records the AR model (sdk/ar Forward, the definition Go generation runs) as
// one step graph with past keys and values per layer, runs it in ONNX Runtime for the class
// position (an empty past) and then three one-token steps (the presents fed back as the past),
// and holds the logits to the PyTorch references of conformance/testdata/ar (1e-5 relative).
func TestRecordedAR(t *testing.T) {
	m, err := ar.Load("../../conformance/testdata/ar/tiny")
	if err != nil {
		t.Fatal(err)
	}
	const refsPath = "../../conformance/testdata/ar/refs.safetensors"
	ref := readRefF32(t, refsPath, "prefill_logits", "step_logits")
	wantPre, wantSteps := ref["prefill_logits"].Data, ref["step_logits"].Data
	labels, stepIDs := readRefI64(t, refsPath, "prefill_labels"), readRefI64(t, refsPath, "step_ids")

	c := m.Cfg
	d, H, hd, V, L := c.Dim, c.Heads, c.HeadDim(), c.VocabSize, c.Layers
	g := NewGraph("ar_step")
	rec := NewRecorder(g)
	net := ar.Bind(m, func(name string, w []float32, out, in int) *RecLinear { return NewRecLinear(name, w, nil, out, in) })
	caches := make([]*RecCache, L)
	for i := range caches {
		caches[i] = &RecCache{K: g.Input(fmt.Sprintf("past_k_%d", i), Float, "N", H, "T", hd), V: g.Input(fmt.Sprintf("past_v_%d", i), Float, "N", H, "T", hd)}
	}
	x := Var{g.Input("x", Float, "N", "m", d), d}
	pos := Var{g.Input("pos", Float, "N", "m", 1), 1}
	logits, err := ar.Forward[Var, *RecLinear, *RecCache](rec, net, x, pos, caches)
	if err != nil {
		t.Fatal(err)
	}
	g.Output(logits.V, "logits", Float, "N", "m", V)
	outs := []string{"logits"}
	for i, cc := range caches {
		g.Output(cc.K, fmt.Sprintf("present_k_%d", i), Float, "N", H, "S", hd)
		g.Output(cc.V, fmt.Sprintf("present_v_%d", i), Float, "N", H, "S", hd)
		outs = append(outs, fmt.Sprintf("present_k_%d", i), fmt.Sprintf("present_v_%d", i))
	}
	model := g.Model("ARStep")

	N := len(labels)
	past := make([][]float32, 2*L)
	T := 0
	for s := 0; s <= len(stepIDs)/N; s++ {
		table, ids := m.W.Cls, labels
		if s > 0 {
			table, ids = m.W.Tok, stepIDs[(s-1)*N:s*N]
		}
		xs := make([]float32, 0, N*d)
		ps := make([]float32, N)
		for i, id := range ids {
			xs = append(xs, table[int(id)*d:(int(id)+1)*d]...)
			ps[i] = float32(s - 1)
		}
		in := []input{{name: "x", shape: []int64{int64(N), 1, int64(d)}, f32: xs}, {name: "pos", shape: []int64{int64(N), 1, 1}, f32: ps}}
		for i := 0; i < L; i++ {
			sh := []int64{int64(N), int64(H), int64(T), int64(hd)}
			in = append(in, input{name: fmt.Sprintf("past_k_%d", i), shape: sh, f32: past[2*i]}, input{name: fmt.Sprintf("past_v_%d", i), shape: sh, f32: past[2*i+1]})
		}
		got, _ := runGraph(t, model, in, outs...)
		want := wantPre
		if s > 0 {
			want = wantSteps[(s-1)*N*V : s*N*V]
		}
		var dm, sc float64
		for i := range want {
			dm = max(dm, math.Abs(float64(got[0][i])-float64(want[i])))
			sc = max(sc, math.Abs(float64(want[i])))
		}
		t.Logf("position %d: max rel %.3g", s, dm/sc)
		if dm/sc > 1e-5 {
			t.Fatalf("position %d: logits max rel error %.3g > 1e-5", s, dm/sc)
		}
		copy(past, got[1:])
		T++
	}
}

// readRefI64 reads a little-endian I64 tensor of a safetensors file (as readRefF32).
func readRefI64(t *testing.T, path, name string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]struct {
		DType   string `json:"dtype"`
		Offsets [2]int `json:"data_offsets"`
	}
	if n > uint64(len(b)-8) || json.Unmarshal(b[8:8+n], &hdr) != nil || hdr[name].DType != "I64" {
		t.Fatalf("%s: no I64 tensor %s", path, name)
	}
	raw := b[8+n:][hdr[name].Offsets[0]:hdr[name].Offsets[1]]
	out := make([]int64, len(raw)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out
}
