package nn

import (
	"fmt"
	"math"
)

// RotaryOps is the 1-D rotary position op of the AR model (LlamaGen's rope, issue #12), as an
// optional interface of an executor (Eager and native/onnx's Recorder implement it).
type RotaryOps[T, L any] interface {
	Ops[T, L]
	// Rotary takes a fused qkv [rows, (heads+2·kvHeads)·headDim] (q, then kvHeads heads of k,
	// then of v, heads contiguous) and returns the [rows, 3·heads·headDim] that Attention and
	// AttendCached expect: q and k rotated, and k and v heads repeated to heads by
	// repeat_interleave (query head h uses KV head h div (heads/kvHeads)). pos holds one
	// position per row (as float32); a negative position uses the zero table (cos = sin = 0:
	// LlamaGen's class position, whose q and k become zero). freqs are the headDim/2 angular
	// frequencies ω_j (RotaryFrequencies): the interleaved pair (x[2j], x[2j+1]) of a head
	// rotates by θ = float32(t·ω_j). It consumes nothing.
	Rotary(qkv, pos T, heads, kvHeads, headDim int, freqs []float32) T
}

// RotaryFrequencies returns ω_j = 1/base^(2j/headDim), j < headDim/2, in float32 as LlamaGen's
// precompute_freqs_cis computes them (the exponent rounded to float32, the power rounded once).
func RotaryFrequencies(headDim int, base float64) []float32 {
	f := make([]float32, headDim/2)
	for j := range f {
		e := float32(2*j) / float32(headDim)
		f[j] = 1 / float32(math.Pow(base, float64(e)))
	}
	return f
}

var _ RotaryOps[Tensor, *Linear] = (*Eager)(nil)

// Rotary implements RotaryOps with a portable loop (the same bits on every path): cos and sin
// in float64 of the float32 angle, rounded once; each product rounded to float32 before the
// sum (no fused multiply-add on any platform).
func (e *Eager) Rotary(qkv, pos Tensor, heads, kvHeads, headDim int, freqs []float32) Tensor {
	if kvHeads < 1 || heads%kvHeads != 0 || headDim%2 != 0 || len(freqs) != headDim/2 || qkv.Cols != (heads+2*kvHeads)*headDim || pos.Rows*pos.Cols != qkv.Rows {
		panic(fmt.Sprintf("flextok/nn: Rotary of %d/%d heads of %d on [%d, %d] with %d positions", heads, kvHeads, headDim, qkv.Rows, qkv.Cols, pos.Rows*pos.Cols))
	}
	W, Wkv := heads*headDim, kvHeads*headDim
	rep := heads / kvHeads
	y := e.alloc(qkv.Rows, 3*W)
	half := headDim / 2
	cs := make([]float32, headDim)
	for r := 0; r < qkv.Rows; r++ {
		t := pos.Data[r]
		if t < 0 {
			clear(cs)
		} else {
			for j, w := range freqs {
				a := float64(t * w)
				cs[j], cs[half+j] = float32(math.Cos(a)), float32(math.Sin(a))
			}
		}
		src, dst := qkv.Data[r*qkv.Cols:(r+1)*qkv.Cols], y.Data[r*3*W:(r+1)*3*W]
		rot := func(d, s []float32) {
			for j := 0; j < half; j++ {
				c, sn := cs[j], cs[half+j]
				x0, x1 := s[2*j], s[2*j+1]
				d[2*j] = float32(x0*c) - float32(x1*sn)
				d[2*j+1] = float32(x1*c) + float32(x0*sn)
			}
		}
		for h := 0; h < heads; h++ {
			rot(dst[h*headDim:(h+1)*headDim], src[h*headDim:(h+1)*headDim])
		}
		for h := 0; h < heads; h++ {
			g := h / rep
			rot(dst[W+h*headDim:W+(h+1)*headDim], src[W+g*headDim:W+(g+1)*headDim])
			copy(dst[2*W+h*headDim:2*W+(h+1)*headDim], src[W+Wkv+g*headDim:W+Wkv+(g+1)*headDim])
		}
	}
	return y
}
