package onnx

import (
	"fmt"
	"math"

	"github.com/flextok-sdk/flextok/sdk/nn"
)

// The recording executor: it implements nn.Ops by emitting ONNX nodes, so the exported graphs
// are the model definition of sdk/nn (the trunk, the heads, the time embedding) and not a
// second copy of it. Batch layouts arrive as data (nn.Seq): the graphs keep a dynamic batch N.

// Var is the recorder's tensor: an ONNX value whose last axis has Cols elements ([N, L, Cols]
// for token rows, [N, Cols] for per-item vectors).
type Var struct {
	V    Value
	Cols int
}

// RecLinear is the recorder's Linear layer: its spec and where to read its weights, read when
// the layer is recorded (so that an export never holds two float32 copies of the model).
type RecLinear struct {
	Spec nn.LinearSpec
	w    *weights
	W, B []float32 // the weights when there is no checkpoint to read (NewRecLinear)
}

// NewRecLinear is a Linear layer of the given weights ([out, in], PyTorch's layout; b may be
// nil), stored under name.
func NewRecLinear(name string, w, b []float32, out, in int) *RecLinear {
	s := nn.LinearSpec{Name: name, Out: out, In: in}
	if b != nil {
		s.Biases = []string{name + ".bias"}
	}
	return &RecLinear{Spec: s, W: w, B: b}
}

// Recorder records nn.Ops into a Graph. Shared constants (masks, row parts) go into the scope
// that was open when the recorder was made.
type Recorder struct {
	g     *Graph
	outer string
	cache map[string]Value
}

var _ nn.Ops[Var, *RecLinear] = (*Recorder)(nil)

// NewRecorder records into g.
func NewRecorder(g *Graph) *Recorder {
	return &Recorder{g: g, outer: g.scope, cache: map[string]Value{}}
}

// binder binds nn's Linear specs to the tensors of w.
func (w *weights) binder() nn.Binder[*RecLinear] {
	return func(s nn.LinearSpec) *RecLinear { return &RecLinear{Spec: s, w: w} }
}

// shared returns the cached value of key, making it with mk in the recorder's outer scope.
func (r *Recorder) shared(key string, mk func() Value) Value {
	if v, ok := r.cache[key]; ok {
		return v
	}
	done := r.g.Scope(r.outer)
	v := mk()
	done()
	r.cache[key] = v
	return v
}

// Block opens the scope name.
func (r *Recorder) Block(name string) (func(), error) { return r.g.Scope(name), nil }

func (r *Recorder) Linear(x Var, l *RecLinear) Var {
	s := l.Spec
	if x.Cols != s.In {
		panic(fmt.Sprintf("flextok/onnx: Linear %s of %d inputs on %d columns", s.Name, s.In, x.Cols))
	}
	w, b := l.W, l.B
	switch {
	case l.w == nil:
	case len(s.Weights) == 1:
		w = l.w.Tensor(s.Weights[0], s.Out*s.In)
	default:
		w = make([]float32, 0, s.Out*s.In)
		for _, name := range s.Weights {
			w = append(w, l.w.Tensor(name, s.Out/len(s.Weights)*s.In)...)
		}
	}
	if l.w != nil {
		for _, name := range s.Biases {
			b = append(b, l.w.Tensor(name, s.Out/len(s.Biases))...)
		}
	}
	return Var{r.g.Linear(x.V, s.Name, w, s.Out, s.In, b), s.Out}
}

func (r *Recorder) LayerNorm(x Var, eps float32) Var {
	return Var{r.g.LayerNorm(x.V, x.Cols, eps), x.Cols}
}

// RMSNorm: x / sqrt(mean(x²) + eps) (opset 17's ReduceMean takes its axes as an attribute).
func (r *Recorder) RMSNorm(x Var, eps float32) Var {
	g := r.g
	ms := g.Op("ReduceMean", []Value{g.Mul(x.V, x.V)}, AInts("axes", -1), AInt("keepdims", 1))
	return Var{g.Div(x.V, g.Op("Sqrt", []Value{g.Add(ms, g.Scalar(eps))})), x.Cols}
}

// QKNorm: [.., 3W] viewed as [.., 3, H, hd]; LayerNorm over hd of parts 0 and 1.
func (r *Recorder) QKNorm(qkv Var, heads, headDim int, eps float32) Var {
	g := r.g
	v := g.Reshape(qkv.V, 0, 0, 3, int64(heads), int64(headDim))
	qk := g.LayerNorm(g.Slice(v, 2, 0, 2), headDim, eps)
	v = g.Concat(2, qk, g.Slice(v, 2, 2, 3))
	return Var{g.Reshape(v, 0, 0, -1), qkv.Cols}
}

// causalLast is the additive attention mask of mask_mode causal_last over [P patches,
// R registers]: patches see the patches; register i sees the patches and registers 0..i.
func causalLast(P, L int) []float32 {
	m := make([]float32, L*L)
	inf := float32(math.Inf(-1))
	for r := 0; r < L; r++ {
		for c := 0; c < L; c++ {
			if !(c < P || (r >= P && c <= r)) {
				m[r*L+c] = inf
			}
		}
	}
	return m
}

// mask returns s's additive mask ([L, L] or [N, 1, 1|L, L]), or "" for none.
func (r *Recorder) mask(s nn.Seq[Var]) Value {
	g := r.g
	var m Value
	if s.Causal {
		m = r.shared(fmt.Sprintf("mask/%d/%d", s.Prefix, s.L), func() Value {
			return g.Const("mask", []int{s.L, s.L}, causalLast(s.Prefix, s.L))
		})
	}
	if s.Keys != nil {
		keys := *s.Keys
		m = r.shared(fmt.Sprintf("keys/%s/%s", keys.V, m), func() Value {
			pos := make([]float32, s.L)
			for j := range pos {
				pos[j] = float32(j)
			}
			vis := g.Op("Less", []Value{g.Const("key_positions", []int{1, s.L}, pos), g.Reshape(keys.V, -1, 1)}) // [N, L]
			add := g.Op("Where", []Value{vis, g.Scalar(0), g.Scalar(float32(math.Inf(-1)))})
			add = g.Reshape(add, -1, 1, 1, int64(s.L))
			if m != "" {
				add = g.Add(add, m)
			}
			return add
		})
	}
	return m
}

func (r *Recorder) Attention(qkv Var, heads, headDim int, scale float32, s nn.Seq[Var]) Var {
	g := r.g
	H, hd := int64(heads), int64(headDim)
	v := g.Reshape(qkv.V, 0, 0, 3, H, hd) // [N, L, 3, H, hd]
	part := func(j int64) Value {
		p := g.Reshape(g.Slice(v, 2, j, j+1), 0, 0, H, hd) // [N, L, H, hd]
		return g.Transpose(p, 0, 2, 1, 3)                  // [N, H, L, hd]
	}
	q, k, val := part(0), part(1), part(2)
	sc := g.Mul(g.Op("MatMul", []Value{q, g.Transpose(k, 0, 1, 3, 2)}), g.Scalar(scale)) // [N, H, L, L]
	if m := r.mask(s); m != "" {
		sc = g.Add(sc, m)
	}
	a := g.Op("MatMul", []Value{g.Op("Softmax", []Value{sc}, AInt("axis", -1)), val}) // [N, H, L, hd]
	return Var{g.Reshape(g.Transpose(a, 0, 2, 1, 3), 0, 0, H*hd), heads * headDim}
}

// chunk returns chunk j of the adaLN vector mod for the rows of x: [N, L or 1, W]. With two
// parts the vector is gathered per row (part 0 for the first s.Prefix rows, part 1 after).
func (r *Recorder) chunk(x, mod Var, chunks, j int, s nn.Seq[Var]) Value {
	g := r.g
	W := x.Cols
	E := mod.Cols / (chunks * W)
	if E*chunks*W != mod.Cols || (E != 1 && E != 2) {
		panic(fmt.Sprintf("flextok/onnx: adaLN vector of %d for width %d and %d chunks", mod.Cols, W, chunks))
	}
	key := fmt.Sprintf("mod/%s/%d/%d/%d", mod.V, chunks, s.L, s.Prefix)
	m, ok := r.cache[key]
	if !ok {
		m = g.Reshape(mod.V, -1, int64(E), int64(chunks), int64(W)) // [N, E, chunks, W]
		if E == 2 {
			part := r.shared(fmt.Sprintf("row_part/%d/%d", s.L, s.Prefix), func() Value {
				idx := make([]int64, s.L)
				for i := s.Prefix; i < s.L; i++ {
					idx[i] = 1
				}
				return g.ConstInt64("row_part", []int{s.L}, idx)
			})
			m = g.Op("Gather", []Value{m, part}, AInt("axis", 1)) // [N, L, chunks, W]
		}
		r.cache[key] = m
	}
	return g.Reshape(g.Slice(m, 2, int64(j), int64(j+1)), 0, 0, -1)
}

func (r *Recorder) Modulate(x, mod Var, chunks, shift, scale int, s nn.Seq[Var]) Var {
	g := r.g
	one := g.Add(r.chunk(x, mod, chunks, scale, s), g.Scalar(1))
	return Var{g.Add(g.Mul(x.V, one), r.chunk(x, mod, chunks, shift, s)), x.Cols}
}

func (r *Recorder) GatedAdd(x, y, mod Var, chunks, gate int, s nn.Seq[Var]) Var {
	return Var{r.g.Add(x.V, r.g.Mul(r.chunk(x, mod, chunks, gate, s), y.V)), x.Cols}
}

func (r *Recorder) Add(x, y Var) Var { return Var{r.g.Add(x.V, y.V), x.Cols} }

func (r *Recorder) SiLU(x Var) Var { return Var{r.g.SiLU(x.V), x.Cols} }

// GELU: x·(1 + erf(x/√2))/2.
func (r *Recorder) GELU(x Var) Var {
	g := r.g
	e := g.Op("Erf", []Value{g.Mul(x.V, g.Scalar(float32(1/math.Sqrt2)))})
	return Var{g.Mul(g.Mul(x.V, g.Scalar(0.5)), g.Add(e, g.Scalar(1))), x.Cols}
}

func (r *Recorder) SwiGLU(a, b Var) Var { return Var{r.g.Mul(r.g.SiLU(a.V), b.V), a.Cols} }

// AddRows: Add of the table as a [R, Cols] initializer (broadcast over [N, R, Cols]).
func (r *Recorder) AddRows(x Var, table []float32, name string) Var {
	return Var{r.g.Add(x.V, r.g.Const(name, []int{len(table) / x.Cols, x.Cols}, table)), x.Cols}
}

// FillAfter: Where(position < keep, x, token) over [N, L, Cols].
func (r *Recorder) FillAfter(x, keep Var, token []float32, name string, L int) Var {
	g := r.g
	pos := r.shared(fmt.Sprintf("positions/%d", L), func() Value {
		p := make([]float32, L)
		for j := range p {
			p[j] = float32(j)
		}
		return g.Const("positions", []int{1, L}, p)
	})
	vis := g.Op("Less", []Value{pos, g.Reshape(keep.V, -1, 1)}) // [N, L]
	return Var{g.Op("Where", []Value{g.Reshape(vis, 0, 0, 1), x.V, g.Const(name, []int{x.Cols}, token)}), x.Cols}
}

// Embed: Gather of the table initializer by the ids cast to int64.
func (r *Recorder) Embed(ids Var, table []float32, rows, cols int, name string) Var {
	g := r.g
	idx := g.Op("Cast", []Value{ids.V}, AInt("to", int64(Int64)))
	if ids.Cols == 1 {
		idx = g.Op("Squeeze", []Value{idx, g.Ints(-1)})
	}
	return Var{g.Op("Gather", []Value{g.Const(name, []int{rows, cols}, table[:rows*cols]), idx}, AInt("axis", 0)), cols}
}

// Sinusoid: args = t·f as [N, F/2]; [cos | sin | 0 when dims is odd].
func (r *Recorder) Sinusoid(t Var, freqs []float32, dims int) Var {
	g := r.g
	args := g.Mul(g.Reshape(t.V, -1, 1), g.Const("freqs", []int{len(freqs)}, freqs))
	parts := []Value{g.Op("Cos", []Value{args}), g.Op("Sin", []Value{args})}
	if dims%2 == 1 {
		parts = append(parts, g.Mul(g.Slice(args, 1, 0, 1), g.Scalar(0)))
	}
	return Var{g.Concat(1, parts...), dims}
}

// RecCache is the recorder's KV cache of one attention layer: the graph values of the cached
// keys and values, [N, H, T, hd] with T dynamic (graph inputs, or an earlier layer call's
// present values). AttendCached replaces them with the present ones (past and new), which the
// caller declares as graph outputs.
type RecCache struct {
	K, V Value
}

var _ nn.CachedOps[Var, *RecLinear, *RecCache] = (*Recorder)(nil)

// AttendCached implements nn.CachedOps: the new k and v are concatenated to the cache along
// the sequence axis, and new query j sees cached keys and new keys up to j: key i is allowed
// when i <= T + j, a mask built from the cache's dynamic length.
func (r *Recorder) AttendCached(qkv Var, c *RecCache, heads, headDim int, scale float32) Var {
	g := r.g
	H, hd := int64(heads), int64(headDim)
	v := g.Reshape(qkv.V, 0, 0, 3, H, hd) // [N, m, 3, H, hd]
	part := func(j int64) Value {
		return g.Transpose(g.Reshape(g.Slice(v, 2, j, j+1), 0, 0, H, hd), 0, 2, 1, 3) // [N, H, m, hd]
	}
	q, k, val := part(0), part(1), part(2)
	past := c.K
	c.K = g.Concat(2, c.K, k)
	c.V = g.Concat(2, c.V, val)
	dim := func(x Value) Value { // the sequence length of x [N, H, S, hd] as an int64 scalar
		return g.Op("Squeeze", []Value{g.Op("Shape", []Value{x}, AInt("start", 2), AInt("end", 3)), g.Ints(0)})
	}
	T, total := dim(past), dim(c.K)
	one := g.Op("Squeeze", []Value{g.Ints(1), g.Ints(0)})
	zero := g.Op("Squeeze", []Value{g.Ints(0), g.Ints(0)})
	keys := g.Op("Range", []Value{zero, total, one})                                      // [T+m]
	qpos := g.Reshape(g.Op("Range", []Value{T, total, one}), -1, 1)                       // [m, 1]
	allowed := g.Op("LessOrEqual", []Value{keys, qpos})                                   // [m, T+m]
	mask := g.Op("Where", []Value{allowed, g.Scalar(0), g.Scalar(float32(math.Inf(-1)))}) // [m, T+m]
	sc := g.Mul(g.Op("MatMul", []Value{q, g.Transpose(c.K, 0, 1, 3, 2)}), g.Scalar(scale))
	a := g.Op("MatMul", []Value{g.Op("Softmax", []Value{g.Add(sc, mask)}, AInt("axis", -1)), c.V}) // [N, H, m, hd]
	return Var{g.Reshape(g.Transpose(a, 0, 2, 1, 3), 0, 0, H*hd), heads * headDim}
}
