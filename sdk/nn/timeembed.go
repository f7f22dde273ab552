package nn

import (
	"math"

	"github.com/flextok-sdk/flextok/sdk/internal/fmath"
)

// negLogMaxPeriod is -ln(max_period) for TimestepEmbedder.timestep_embedding's max_period of
// 256 (not 10000), as the float64 Python's math.log gives: 8·ln 2 rounded to float64 once
// (scaling by 8 is exact), then to float32 where it meets the float32 tensor.
var negLogMaxPeriod float64 = -8 * math.Ln2

// TimestepFrequencies returns the official TimestepEmbedder frequencies for an embedding of
// size dims, in float32 with torch's operation order:
//
//	freqs[k] = float32(1000/max_timestep) · exp(float32(-ln 256) · k / half),  k < half = dims/2
//
// each operation rounded to float32 (a Python float scalar meets a float32 tensor as a float32).
// exp is fmath.Exp rounded once, within an ulp of torch's vectorised expf. Every executor
// uses these values (the recorder stores them as a constant).
func TimestepFrequencies(dims int, maxTimestep float64) []float32 {
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
