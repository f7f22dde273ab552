package onnx

import (
	"fmt"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/ar"
)

// The AR model's graphs, recorded from sdk/ar's Forward (the definition the Go executor runs):
// the embeddings are looked up by the caller (sdk/ar's tables), so both graphs take the rows
// x [N, m, d] and their rotary positions pos [N, m, 1] (-1 for the class position, token t at
// t) and return logits [N, m, V] and one present key and value per layer [N, H, S, hd]. N (the
// batch), m (positions per call) and the cache length are dynamic.
const (
	ARInX      = "x"
	ARInPos    = "pos"
	AROutLogit = "logits"
)

// ARPastK and the three below name layer i's cache tensors.
func ARPastK(i int) string    { return fmt.Sprintf("past_k_%d", i) }
func ARPastV(i int) string    { return fmt.Sprintf("past_v_%d", i) }
func ARPresentK(i int) string { return fmt.Sprintf("present_k_%d", i) }
func ARPresentV(i int) string { return fmt.Sprintf("present_v_%d", i) }

// ARPrefill records the prefill graph: inputs x and pos, no past (the caches start empty,
// [N, H, 0, hd]); outputs logits and the presents.
func ARPrefill(m *ar.Model) (*pb.ModelProto, error) { return arGraph(m, false) }

// ARStep records the step graph: inputs x, pos and past_k_i, past_v_i [N, H, T, hd] per layer;
// outputs logits and present_k_i, present_v_i [N, H, T+m, hd] (the next call's past).
func ARStep(m *ar.Model) (*pb.ModelProto, error) { return arGraph(m, true) }

// ARInputs and AROutputs are the graphs' input and output names, in the order the native
// sessions use.
func ARInputs(m *ar.Model, step bool) []string {
	in := []string{ARInX, ARInPos}
	if step {
		for i := range m.Cfg.Layers {
			in = append(in, ARPastK(i), ARPastV(i))
		}
	}
	return in
}

// AROutputs: logits, then present_k_i, present_v_i per layer.
func AROutputs(m *ar.Model) []string {
	out := []string{AROutLogit}
	for i := range m.Cfg.Layers {
		out = append(out, ARPresentK(i), ARPresentV(i))
	}
	return out
}

func arGraph(m *ar.Model, step bool) (mp *pb.ModelProto, err error) {
	defer func() { // the graph builder panics on a malformed graph (a bug): an error here
		if r := recover(); r != nil {
			mp, err = nil, fmt.Errorf("flextok/onnx: recording the AR model: %v", r)
		}
	}()
	c := m.Cfg
	d, H, hd, V, L := c.Dim, c.Heads, c.HeadDim(), c.VocabSize, c.Layers
	name := "ar_prefill"
	if step {
		name = "ar_step"
	}
	g := NewGraph(name)
	rec := NewRecorder(g)
	net := ar.Bind(m, func(name string, w []float32, out, in int) *RecLinear { return NewRecLinear(name, w, nil, out, in) })
	x := Var{g.Input(ARInX, Float, "N", "m", d), d}
	pos := Var{g.Input(ARInPos, Float, "N", "m", 1), 1}
	caches := make([]*RecCache, L)
	var empty Value
	if !step { // [N, H, 0, hd] zeros: N from x
		n := g.Op("Shape", []Value{x.V}, AInt("start", 0), AInt("end", 1))
		shape := g.Op("Concat", []Value{n, g.Ints(int64(H), 0, int64(hd))}, AInt("axis", 0))
		empty = g.Op("ConstantOfShape", []Value{shape})
	}
	for i := range caches {
		if step {
			caches[i] = &RecCache{K: g.Input(ARPastK(i), Float, "N", H, "T", hd), V: g.Input(ARPastV(i), Float, "N", H, "T", hd)}
		} else {
			caches[i] = &RecCache{K: empty, V: empty}
		}
	}
	logits, err := ar.Forward[Var, *RecLinear, *RecCache](rec, net, x, pos, caches)
	if err != nil {
		return nil, err
	}
	g.Output(logits.V, AROutLogit, Float, "N", "m", V)
	for i, cc := range caches {
		g.Output(cc.K, ARPresentK(i), Float, "N", H, "S", hd)
		g.Output(cc.V, ARPresentV(i), Float, "N", H, "S", hd)
	}
	return g.Model("FlexTok AR " + name + " (sdk/ar Forward)"), nil
}
