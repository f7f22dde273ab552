package onnx

import "github.com/flextok-sdk/flextok/sdk/nn"

var _ nn.RotaryOps[Var, *RecLinear] = (*Recorder)(nil)

// Rotary implements nn.RotaryOps: qkv [N, L, (H+2·Hkv)·hd] and pos [N, L, 1] give
// [N, L, 3·H·hd]. The angles are Mul(pos, freqs) (float32, as Eager), cos and sin are
// multiplied by (pos ≥ 0) for the class position's zero table, the interleaved pairs rotate
// as [x0·c − x1·s, x1·c + x0·s], and k and v heads are repeated by Tile on a unit axis
// (repeat_interleave).
func (r *Recorder) Rotary(qkv, pos Var, heads, kvHeads, headDim int, freqs []float32) Var {
	g := r.g
	H, Hkv, hd, half := int64(heads), int64(kvHeads), int64(headDim), int64(headDim/2)
	W, Wkv := H*hd, Hkv*hd
	p := g.Reshape(pos.V, 0, 0, 1) // [N, L, 1]
	ang := g.Mul(p, g.Const("rope_freqs", []int{len(freqs)}, freqs))
	valid := g.Op("Cast", []Value{g.Op("GreaterOrEqual", []Value{p, g.Scalar(0)})}, AInt("to", int64(Float)))
	cs := g.Reshape(g.Mul(g.Op("Cos", []Value{ang}), valid), 0, 0, 1, half) // [N, L, 1, hd/2]
	sn := g.Reshape(g.Mul(g.Op("Sin", []Value{ang}), valid), 0, 0, 1, half)
	rot := func(x Value, nh int64) Value {
		x = g.Reshape(x, 0, 0, nh, half, 2)
		x0 := g.Reshape(g.Slice(x, 4, 0, 1), 0, 0, nh, half)
		x1 := g.Reshape(g.Slice(x, 4, 1, 2), 0, 0, nh, half)
		o0 := g.Op("Sub", []Value{g.Mul(x0, cs), g.Mul(x1, sn)})
		o1 := g.Add(g.Mul(x1, cs), g.Mul(x0, sn))
		o := g.Concat(4, g.Reshape(o0, 0, 0, nh, half, 1), g.Reshape(o1, 0, 0, nh, half, 1))
		return g.Reshape(o, 0, 0, nh*hd)
	}
	repeat := func(x Value) Value {
		if H == Hkv {
			return x
		}
		x = g.Reshape(x, 0, 0, Hkv, 1, hd)
		x = g.Op("Tile", []Value{x, g.Ints(1, 1, 1, H/Hkv, 1)})
		return g.Reshape(x, 0, 0, W)
	}
	q := rot(g.Slice(qkv.V, 2, 0, W), H)
	k := repeat(rot(g.Slice(qkv.V, 2, W, W+Wkv), Hkv))
	v := repeat(g.Slice(qkv.V, 2, W+Wkv, W+2*Wkv))
	return Var{g.Concat(2, q, k, v), 3 * heads * headDim}
}
