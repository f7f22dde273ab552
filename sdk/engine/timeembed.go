package engine

import (
	"math"

	"github.com/flextok-sdk/flextok/sdk/internal/fmath"
	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
)

// negLogMaxPeriod is -ln(max_period) for TimestepEmbedder.timestep_embedding's max_period of
// 256 (not 10000), as the float64 Python's math.log gives: 8·ln 2 rounded to float64 once
// (scaling by 8 is exact), then to float32 where it meets the float32 tensor.
var negLogMaxPeriod float64 = -8 * math.Ln2

// TimestepFrequencies returns the official TimestepEmbedder's frequencies for an embedding of
// size dims (see timestepFrequencies): other executors (the ONNX export) use the same values.
func TimestepFrequencies(dims int, maxTimestep float64) []float32 {
	return timestepFrequencies(dims, maxTimestep)
}

// timestepFrequencies returns the official TimestepEmbedder frequencies for an embedding of
// size dims, in float32 with torch's operation order:
//
//	freqs[k] = float32(1000/max_timestep) · exp(float32(-ln 256) · k / half),  k < half = dims/2
//
// each operation rounded to float32 (a Python float scalar meets a float32 tensor as a float32).
// exp is fmath.Exp rounded once, within an ulp of torch's vectorised expf.
func timestepFrequencies(dims int, maxTimestep float64) []float32 {
	half := dims / 2
	negLog := float32(negLogMaxPeriod)
	scale := float32(1000 / maxTimestep)
	f := make([]float32, half)
	for k := range f {
		a := negLog * float32(k)
		a /= float32(half)
		f[k] = scale * float32(fmath.Exp(float64(a)))
	}
	return f
}

// timestepEmbedding writes the sinusoidal embedding of t into dst (len dims):
// [cos(t·f) | sin(t·f)], with a trailing zero when dims is odd. args = float32(t·f_k);
// cos and sin are computed in float64 and rounded once (math.Sin and math.Cos are pure Go on
// every platform, so this is bit-identical everywhere).
func timestepEmbedding(dst []float32, t float32, freqs []float32) {
	half := len(freqs)
	for k, f := range freqs {
		a := float64(t * f)
		dst[k] = float32(math.Cos(a))
		dst[half+k] = float32(math.Sin(a))
	}
	for i := 2 * half; i < len(dst); i++ {
		dst[i] = 0
	}
}

// timeEmbedder is the official TimestepEmbedder: the sinusoidal embedding followed by
// Linear(F→W), SiLU, Linear(W→W).
type timeEmbedder struct {
	freqs      []float32
	dims       int
	mlp0, mlp2 linear
}

// embed returns temb [W] for the time t.
func (te *timeEmbedder) embed(o kernels.Opts, t float32) []float32 {
	e := make([]float32, te.dims)
	timestepEmbedding(e, t, te.freqs)
	h := make([]float32, te.mlp0.out)
	te.mlp0.forward(o, h, e, 1)
	kernels.SiLU(o, h, h)
	out := make([]float32, te.mlp2.out)
	te.mlp2.forward(o, out, h, 1)
	return out
}
