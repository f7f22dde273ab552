package onnx

// Layers shared by the exported graphs, built from standard opset-17 operators. Weights arrive
// in PyTorch's layout and are rearranged here, once, at export time.

// Linear is y = x Wᵀ + b for w in PyTorch's [out, in] layout (stored transposed, [in, out], so
// the product is one MatMul); b may be nil. With g.FP16 the weight is stored as float16 and
// the product runs in float16 (x cast down, y cast back up; the bias is added in float32).
func (g *Graph) Linear(x Value, name string, w []float32, out, in int, b []float32) Value {
	wt := make([]float32, len(w))
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			wt[i*out+o] = w[o*in+i]
		}
	}
	var y Value
	if g.FP16 {
		name = g.scoped(name + ".weight")
		checkLen(name, []int{in, out}, len(wt))
		wh := g.init(name, Float16, []int{in, out}, f16bytes(wt))
		xh := g.Op("Cast", []Value{x}, AInt("to", int64(Float16)))
		y = g.Op("Cast", []Value{g.Op("MatMul", []Value{xh, wh})}, AInt("to", int64(Float)))
	} else {
		y = g.Op("MatMul", []Value{x, g.Const(name+".weight", []int{in, out}, wt)})
	}
	if b != nil {
		y = g.Op("Add", []Value{y, g.Const(name+".bias", []int{out}, b)})
	}
	return y
}

// LayerNorm normalises over the last axis (of size width) without an affine transform
// (scale 1, no bias), as every LayerNorm of the FlexTok trunks.
func (g *Graph) LayerNorm(x Value, width int, eps float32) Value {
	ones := make([]float32, width)
	for i := range ones {
		ones[i] = 1
	}
	return g.Op("LayerNormalization", []Value{x, g.init(g.fresh("ln_scale"), Float, []int{width}, f32bytes(ones))},
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
