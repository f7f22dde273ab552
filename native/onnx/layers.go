package onnx

import (
	"encoding/binary"
	"math"

	"github.com/flextok-sdk/flextok/sdk/tensor"

	"github.com/x448/float16"
)

// Layers shared by the exported graphs, built from standard opset-17 operators. Weights arrive
// in PyTorch's layout and are rearranged here, once, at export time.

// Linear is y = x Wᵀ + b for w in PyTorch's [out, in] layout (stored transposed, [in, out], so
// the product is one MatMul); b may be nil. With g.FP16 the weight is stored as float16 and
// the product runs in float16 (x cast down, y cast back up; the bias is added in float32).
func (g *Graph) Linear(x Value, name string, w []float32, out, in int, b []float32) Value {
	checkLen(name, []int{out, in}, len(w))
	var y Value
	if g.FP16 {
		wh := g.init(g.scoped(name+".weight"), Float16, []int{in, out}, transposeBytes(w, out, in, 2))
		xh := g.Op("Cast", []Value{x}, AInt("to", int64(Float16)))
		y = g.Op("Cast", []Value{g.Op("MatMul", []Value{xh, wh})}, AInt("to", int64(Float)))
	} else {
		wt := g.init(g.scoped(name+".weight"), Float, []int{in, out}, transposeBytes(w, out, in, 4))
		y = g.Op("MatMul", []Value{x, wt})
	}
	if b != nil {
		y = g.Op("Add", []Value{y, g.Const(name+".bias", []int{out}, b)})
	}
	return y
}

// transposeBytes returns the little-endian bytes of wᵀ ([in, out] from w [out, in]) as float32
// (size 4) or float16 (size 2, rounded to nearest even), in 32×32 blocks so that both the
// reads and the writes stay in cache.
func transposeBytes(w []float32, out, in, size int) []byte {
	raw := make([]byte, size*out*in)
	const blk = 32
	for o0 := 0; o0 < out; o0 += blk {
		for i0 := 0; i0 < in; i0 += blk {
			for o := o0; o < min(o0+blk, out); o++ {
				row := w[o*in : o*in+in]
				for i := i0; i < min(i0+blk, in); i++ {
					at := size * (i*out + o)
					if size == 2 {
						binary.LittleEndian.PutUint16(raw[at:], uint16(float16.Fromfloat32(row[i])))
					} else {
						binary.LittleEndian.PutUint32(raw[at:], math.Float32bits(row[i]))
					}
				}
			}
		}
	}
	return raw
}

// LayerNorm normalises over the last axis (of size width) without an affine transform
// (scale 1, no bias), as every LayerNorm of the FlexTok trunks.
func (g *Graph) LayerNorm(x Value, width int, eps float32) Value {
	ones := make([]float32, width)
	for i := range ones {
		ones[i] = 1
	}
	return g.Op("LayerNormalization", []Value{x, g.constant(Float, []int{width}, tensor.Bytes(ones))},
		AInt("axis", -1), AFloat("epsilon", eps))
}

// SiLU is x·sigmoid(x).
func (g *Graph) SiLU(x Value) Value { return g.Op("Mul", []Value{x, g.Op("Sigmoid", []Value{x})}) }

// Add, Sub, Mul and Div are the broadcasting element-wise operators.
func (g *Graph) Add(a, b Value) Value { return g.Op("Add", []Value{a, b}) }
func (g *Graph) Sub(a, b Value) Value { return g.Op("Sub", []Value{a, b}) }
func (g *Graph) Mul(a, b Value) Value { return g.Op("Mul", []Value{a, b}) }
func (g *Graph) Div(a, b Value) Value { return g.Op("Div", []Value{a, b}) }

// Reshape reshapes x to shape (0 copies the input's dimension, -1 is inferred).
func (g *Graph) Reshape(x Value, shape ...int64) Value {
	return g.Op("Reshape", []Value{x, g.Ints(shape...)})
}

// Transpose permutes the axes of x.
func (g *Graph) Transpose(x Value, perm ...int64) Value {
	return g.Op("Transpose", []Value{x}, AInts("perm", perm...))
}

// Slice takes [start, end) along axis.
func (g *Graph) Slice(x Value, axis, start, end int64) Value {
	return g.Op("Slice", []Value{x, g.Ints(start), g.Ints(end), g.Ints(axis)})
}

// Concat joins along axis.
func (g *Graph) Concat(axis int64, xs ...Value) Value {
	return g.Op("Concat", xs, AInt("axis", axis))
}
