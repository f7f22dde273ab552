// Package nntest holds the per-op conformance cases of sdk/nn, ggml's test-backend-ops in
// spirit: every op of nn.Ops on random shapes, run through any executor by Apply, so that each
// executor's tests compare it with the eager portable path within the case's bound (sdk/nn's
// own tests for the fast path, native/onnx's for the recorded graph in ONNX Runtime).
package nntest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/flextok-sdk/flextok/sdk/nn"
)

// Kind says how an input is laid out.
type Kind uint8

const (
	// Rows: one row per token, N·L rows (the recorder's [N, L, Cols]).
	Rows Kind = iota
	// Mod: one adaLN vector for the batch (Eager: [1, Cols]; the recorder gets it tiled to
	// [N, Cols], one per sequence).
	Mod
	// PerSeq: one row per sequence, [N, Cols] (time values, key counts).
	PerSeq
)

// Input is one input tensor of a case.
type Input struct {
	Name string
	Kind Kind
	Cols int
	Data []float32 // Rows: N·L·Cols; Mod: Cols; PerSeq: N·Cols
}

// LinearData is a Linear layer's weights, PyTorch's [Out, In] layout; B may be nil.
type LinearData struct {
	W, B    []float32
	Out, In int
}

// Case is one op on one shape.
type Case struct {
	Name   string
	Op     string // the nn.Ops method
	N, L   int    // sequences, rows per sequence
	Prefix int
	Causal bool
	Keys   bool // Seq.Keys from input "keys"

	Heads, HeadDim int
	Eps            float32
	Chunks, A, B   int // Modulate: chunks, shift, scale; GatedAdd: chunks, gate
	Freqs          []float32
	Dims           int       // Sinusoid: embedding size; Embed: table width
	Table          []float32 // Embed: [rows, Dims]; AddRows: [L, W]; FillAfter: the token [W]

	Inputs  []Input
	Linears []LinearData

	// NMSE bounds the normalised mean squared error of an executor's output against the
	// eager portable path's (sum of squared differences over the sum of squares).
	NMSE float64
}

// OutCols is the width of the case's output.
func (c *Case) OutCols() int {
	switch c.Op {
	case "Linear":
		return c.Linears[0].Out
	case "Attention":
		return c.Heads * c.HeadDim
	case "Sinusoid", "Embed":
		return c.Dims
	}
	return c.Inputs[0].Cols
}

// OutRows is the number of output rows: N·L, or N for Sinusoid.
func (c *Case) OutRows() int {
	if c.Op == "Sinusoid" {
		return c.N
	}
	return c.N * c.L
}

// Apply runs the case's op on an executor: in holds the inputs in the case's order, lin the
// bound Linear layers.
func Apply[T, L any](ops nn.Ops[T, L], c *Case, in []T, lin []L) T {
	s := nn.Seq[T]{L: c.L, Prefix: c.Prefix, Causal: c.Causal}
	if c.Keys {
		s.Keys = &in[len(in)-1]
	}
	switch c.Op {
	case "Linear":
		return ops.Linear(in[0], lin[0])
	case "LayerNorm":
		return ops.LayerNorm(in[0], c.Eps)
	case "RMSNorm":
		return ops.RMSNorm(in[0], c.Eps)
	case "QKNorm":
		return ops.QKNorm(in[0], c.Heads, c.HeadDim, c.Eps)
	case "Attention":
		return ops.Attention(in[0], c.Heads, c.HeadDim, float32(8.0/float64(c.HeadDim)), s)
	case "Modulate":
		return ops.Modulate(in[0], in[1], c.Chunks, c.A, c.B, s)
	case "GatedAdd":
		return ops.GatedAdd(in[0], in[1], in[2], c.Chunks, c.A, s)
	case "Add":
		return ops.Add(in[0], in[1])
	case "SiLU":
		return ops.SiLU(in[0])
	case "GELU":
		return ops.GELU(in[0])
	case "SwiGLU":
		return ops.SwiGLU(in[0], in[1])
	case "Sinusoid":
		return ops.Sinusoid(in[0], c.Freqs, c.Dims)
	case "Embed":
		return ops.Embed(in[0], c.Table, len(c.Table)/c.Dims, c.Dims, "table")
	case "AddRows":
		return ops.AddRows(in[0], c.Table, "table")
	case "FillAfter":
		return ops.FillAfter(in[0], in[1], c.Table, "token", c.L)
	}
	panic("nntest: unknown op " + c.Op)
}

func randn(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// DefaultNMSE is every case's bound unless it states its own: float32 ops whose executors
// differ in summation order, FMA and float64 intermediates land near 1e-14 (the largest seen,
// attention in ONNX Runtime, 3.6e-14; docs/nn.md has the table), so 1e-12 leaves a margin
// of about 25 and still catches a wrong index, mask or chunk, which gives NMSE near 1.
const DefaultNMSE = 1e-12

// Cases returns the conformance cases: every op, several random shapes each, from seed.
func Cases(seed uint64) []Case {
	r := rand.New(rand.NewPCG(seed, 11))
	between := func(lo, hi int) int { return lo + r.IntN(hi-lo+1) }
	var cs []Case
	add := func(c Case) {
		c.Name = fmt.Sprintf("%s/%s/N=%d/L=%d", c.Op, c.Name, c.N, c.L)
		if c.NMSE == 0 {
			c.NMSE = DefaultNMSE
		}
		cs = append(cs, c)
	}
	rows := func(name string, n, L, cols int, scale float64) Input {
		return Input{Name: name, Kind: Rows, Cols: cols, Data: randn(r, n*L*cols, scale)}
	}
	for rep := 0; rep < 3; rep++ {
		N, L := 1+rep, between(1, 40) // batches of 1, 2 and 3 sequences
		W := between(1, 96)
		for _, bias := range []bool{false, true} {
			out := between(1, 150)
			ld := LinearData{W: randn(r, out*W, 1/math.Sqrt(float64(W))), Out: out, In: W}
			if bias {
				ld.B = randn(r, out, 0.5)
			}
			add(Case{Op: "Linear", Name: fmt.Sprintf("bias=%v/%dx%d", bias, out, W), N: N, L: L, Inputs: []Input{rows("x", N, L, W, 1)}, Linears: []LinearData{ld}})
		}
		// Norms over a handful of values are ill-conditioned (x − mean cancels when the values
		// are close: with 2 per head an ORT-vs-Go NMSE of 2e-11 was seen), and no FlexTok
		// norm is that narrow, so their cases normalise 8 values or more.
		for _, op := range []string{"LayerNorm", "RMSNorm"} {
			Wn := max(W, 8)
			add(Case{Op: op, Name: fmt.Sprintf("W=%d", Wn), N: N, L: L, Eps: 1e-6, Inputs: []Input{rows("x", N, L, Wn, 2)}})
		}
		H, hd := between(1, 4), 2*between(4, 16)
		add(Case{Op: "QKNorm", Name: fmt.Sprintf("H=%d/hd=%d", H, hd), N: N, L: L, Heads: H, HeadDim: hd, Eps: 1e-6, Inputs: []Input{rows("qkv", N, L, 3*H*hd, 1.5)}})
		P := between(0, L)
		for _, m := range []struct {
			name         string
			causal, keys bool
		}{{"full", false, false}, {"causal_last", true, false}, {"keys", false, true}, {"causal_last+keys", true, true}} {
			c := Case{Op: "Attention", Name: fmt.Sprintf("%s/H=%d/hd=%d/P=%d", m.name, H, hd, P), N: N, L: L, Prefix: P, Causal: m.causal, Keys: m.keys, Heads: H, HeadDim: hd,
				Inputs: []Input{rows("qkv", N, L, 3*H*hd, 1)}}
			if m.keys {
				k := make([]float32, N)
				for i := range k {
					k[i] = float32(between(1, L))
				}
				c.Inputs = append(c.Inputs, Input{Name: "keys", Kind: PerSeq, Cols: 1, Data: k})
			}
			add(c)
		}
		for _, E := range []int{1, 2} {
			K := 6
			mod := Input{Name: "mod", Kind: Mod, Cols: E * K * W, Data: randn(r, E*K*W, 0.5)}
			add(Case{Op: "Modulate", Name: fmt.Sprintf("E=%d/W=%d/P=%d", E, W, P), N: N, L: L, Prefix: P, Chunks: K, A: 2, B: 3, Inputs: []Input{rows("x", N, L, W, 1), mod}})
			add(Case{Op: "GatedAdd", Name: fmt.Sprintf("E=%d/W=%d/P=%d", E, W, P), N: N, L: L, Prefix: P, Chunks: K, A: 1, Inputs: []Input{rows("x", N, L, W, 1), rows("y", N, L, W, 1), mod}})
		}
		add(Case{Op: "Add", Name: fmt.Sprintf("W=%d", W), N: N, L: L, Inputs: []Input{rows("x", N, L, W, 1), rows("y", N, L, W, 1)}})
		for _, op := range []string{"SiLU", "GELU"} {
			add(Case{Op: op, Name: fmt.Sprintf("W=%d", W), N: N, L: L, Inputs: []Input{rows("x", N, L, W, 4)}})
		}
		add(Case{Op: "SwiGLU", Name: fmt.Sprintf("W=%d", W), N: N, L: L, Inputs: []Input{rows("a", N, L, W, 4), rows("b", N, L, W, 2)}})
		ts := make([]float32, N)
		for i := range ts {
			ts[i] = float32(r.Float64() * 1000)
		}
		add(Case{Op: "AddRows", Name: fmt.Sprintf("W=%d", W), N: N, L: L, Table: randn(r, L*W, 1), Inputs: []Input{rows("x", N, L, W, 1)}})
		keep := make([]float32, N)
		for i := range keep {
			keep[i] = float32(between(0, L))
		}
		add(Case{Op: "FillAfter", Name: fmt.Sprintf("W=%d", W), N: N, L: L, Table: randn(r, W, 1),
			Inputs: []Input{rows("x", N, L, W, 1), {Name: "keep", Kind: PerSeq, Cols: 1, Data: keep}}})
		rowsT, cols := between(1, 300), between(1, 64)
		ids := make([]float32, N*L)
		for i := range ids {
			ids[i] = float32(r.IntN(rowsT))
		}
		add(Case{Op: "Embed", Name: fmt.Sprintf("%dx%d", rowsT, cols), N: N, L: L, Dims: cols, Table: randn(r, rowsT*cols, 1),
			Inputs: []Input{{Name: "ids", Kind: Rows, Cols: 1, Data: ids}}})
		for _, F := range []int{2 * between(1, 32), 2*between(1, 32) + 1} { // odd sizes end in a zero
			add(Case{Op: "Sinusoid", Name: fmt.Sprintf("F=%d", F), N: N, L: 1, Freqs: nn.TimestepFrequencies(F, 1000), Dims: F,
				Inputs: []Input{{Name: "t", Kind: PerSeq, Cols: 1, Data: ts}}})
		}
	}
	return cs
}

// Eager runs c on an Eager executor with options o and returns the output's data.
func Eager(c *Case, o nn.Options) []float32 {
	e := nn.NewEager(context.Background(), o)
	in := make([]nn.Tensor, len(c.Inputs))
	for i, x := range c.Inputs {
		rows := c.N * c.L
		switch x.Kind {
		case Mod:
			rows = 1
		case PerSeq:
			rows = c.N
		}
		// a copy: Add and GatedAdd accumulate into their first input
		in[i] = nn.NewTensor(append([]float32(nil), x.Data...), rows, x.Cols)
	}
	lin := make([]*nn.Linear, len(c.Linears))
	for i, l := range c.Linears {
		lin[i] = nn.Pack(o, l.W, l.B, l.Out, l.In)
	}
	return Apply(e, c, in, lin).Data
}

// NMSE is Σ(got-want)² / Σwant² (0 when both are zero).
func NMSE(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return num
	}
	return num / den
}
