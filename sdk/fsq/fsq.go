package fsq

import (
	"errors"
	"fmt"
	"math"

	"github.com/flextok-sdk/flextok/sdk/internal/fmath"
)

// DefaultLevels are the FSQ levels of every released FlexTok model.
var DefaultLevels = []int{8, 8, 8, 5, 5, 5}

// Eps is the bound's margin: half_l = (L-1)·(1+Eps)/2.
const Eps = 1e-3

// MaxCodebookSize bounds the product of the levels so that ids fit in a uint32 and the float32
// index arithmetic of the official code stays exact (below 2^24).
const MaxCodebookSize = 1 << 24

// ErrLevels reports invalid quantiser levels.
var ErrLevels = errors.New("flextok/fsq: invalid levels")

// ErrIndex reports a token id outside the codebook.
var ErrIndex = errors.New("flextok/fsq: index out of range")

// Quantizer is an FSQ quantiser for a fixed list of levels. It is immutable and safe for
// concurrent use.
type Quantizer struct {
	levels    []int
	basis     []int     // cumprod([1, L_0, ..., L_{D-2}])
	halfWidth []int     // L_d / 2 (integer division)
	halfL     []float32 // (L_d - 1)·(1+eps)/2
	offset    []float32 // 0.5 for even levels, 0 for odd
	shift     []float32 // atanh(offset / halfL)
	size      int
}

// New returns a quantiser for the given levels. Each level must be at least 2 and their product
// at most MaxCodebookSize.
func New(levels []int) (*Quantizer, error) {
	if len(levels) == 0 {
		return nil, fmt.Errorf("%w: no levels", ErrLevels)
	}
	q := &Quantizer{size: 1}
	for i, l := range levels {
		if l < 2 {
			return nil, fmt.Errorf("%w: level %d is %d, want >= 2", ErrLevels, i, l)
		}
		if q.size > MaxCodebookSize/l {
			return nil, fmt.Errorf("%w: codebook size over %d", ErrLevels, MaxCodebookSize)
		}
		q.basis = append(q.basis, q.size)
		q.size *= l
		q.levels = append(q.levels, l)
		q.halfWidth = append(q.halfWidth, l/2)
		// PyTorch: (int32 levels - 1) * (1 + eps) / 2 in float32; the Python float 1.001
		// becomes a float32 scalar.
		half := float32(float32(l-1)*float32(1+Eps)) / 2
		var off float32
		if l%2 == 0 {
			off = 0.5
		}
		q.halfL = append(q.halfL, half)
		q.offset = append(q.offset, off)
		q.shift = append(q.shift, float32(fmath.Atanh(float64(off/half))))
	}
	return q, nil
}

// Default returns the quantiser with DefaultLevels.
func Default() *Quantizer {
	q, err := New(DefaultLevels)
	if err != nil {
		panic(err) // unreachable: DefaultLevels are valid
	}
	return q
}

// BoundParams returns copies of the per-dimension constants of the bound
// tanh(z + shift)·halfL − offset, for executors that compute it elsewhere (the ONNX export):
// the same float32 values Encode uses.
func (q *Quantizer) BoundParams() (shift, halfL, offset []float32) {
	return append([]float32(nil), q.shift...), append([]float32(nil), q.halfL...), append([]float32(nil), q.offset...)
}

// Levels returns a copy of the levels.
func (q *Quantizer) Levels() []int { return append([]int(nil), q.levels...) }

// Dim is the number of latent dimensions (the number of levels).
func (q *Quantizer) Dim() int { return len(q.levels) }

// CodebookSize is the product of the levels: ids are in [0, CodebookSize).
func (q *Quantizer) CodebookSize() int { return q.size }

// Basis returns a copy of the mixed-radix basis, [1, 8, 64, 512, 2560, 12800] by default.
func (q *Quantizer) Basis() []int { return append([]int(nil), q.basis...) }

func (q *Quantizer) checkLen(name string, n int) {
	if n%len(q.levels) != 0 {
		panic(fmt.Sprintf("flextok/fsq: %s has %d values, not a multiple of dim %d", name, n, len(q.levels)))
	}
}

// bounded returns tanh(z + shift)·half_l − offset for dimension d, in float32 steps.
func (q *Quantizer) bounded(z float32, d int) float32 {
	th := float32(fmath.Tanh(float64(z + q.shift[d])))
	return float32(th*q.halfL[d]) - q.offset[d]
}

// digit returns the rounded level index c in [0, L_d) for latent value z in dimension d.
func (q *Quantizer) digit(z float32, d int) int {
	r := math.RoundToEven(float64(q.bounded(z, d)))
	return int(r) + q.halfWidth[d]
}

// Bound writes the bounded (pre-rounding) values of z to dst. len(z) must be a multiple of Dim;
// dst must be as long as z.
func (q *Quantizer) Bound(dst, z []float32) {
	q.checkLen("z", len(z))
	D := len(q.levels)
	for i, v := range z {
		dst[i] = q.bounded(v, i%D)
	}
}

// TieDistance returns, for one latent vector z of Dim values, the smallest distance of its
// bounded values to a rounding boundary (x.5). Another executor's id for z can only differ
// from Encode's when its float rounding moves a bounded value across that boundary, so a
// differing id with a small TieDistance is explained; conformance tests use it.
func (q *Quantizer) TieDistance(z []float32) float64 {
	if len(z) != len(q.levels) {
		panic(fmt.Sprintf("flextok/fsq: TieDistance of %d values, want %d", len(z), len(q.levels)))
	}
	d := math.Inf(1)
	for i, v := range z {
		b := float64(q.bounded(v, i))
		d = math.Min(d, math.Abs(b-math.Floor(b)-0.5))
	}
	return d
}

// Quantize writes the quantised codes of z (values in [-1, 1]) to dst, as the official
// FSQ.quantize does in eval mode.
func (q *Quantizer) Quantize(dst, z []float32) {
	q.checkLen("z", len(z))
	D := len(q.levels)
	for i, v := range z {
		d := i % D
		dst[i] = float32(q.digit(v, d)-q.halfWidth[d]) / float32(q.halfWidth[d])
	}
}

// Encode writes one token id per D-dimensional latent vector of z to ids: the composition of
// Quantize and CodesToIndices. len(ids) must be len(z)/Dim.
func (q *Quantizer) Encode(ids []uint32, z []float32) {
	q.checkLen("z", len(z))
	D := len(q.levels)
	if len(ids) != len(z)/D {
		panic(fmt.Sprintf("flextok/fsq: %d ids for %d vectors", len(ids), len(z)/D))
	}
	for t := range ids {
		idx := 0
		for d := 0; d < D; d++ {
			idx += q.digit(z[t*D+d], d) * q.basis[d]
		}
		ids[t] = uint32(idx)
	}
}

// CodesToIndices converts codes (as produced by Quantize) to token ids. A code that is not on
// the grid of its dimension is an error naming the vector and dimension.
func (q *Quantizer) CodesToIndices(ids []uint32, codes []float32) error {
	q.checkLen("codes", len(codes))
	D := len(q.levels)
	if len(ids) != len(codes)/D {
		panic(fmt.Sprintf("flextok/fsq: %d ids for %d vectors", len(ids), len(codes)/D))
	}
	for t := range ids {
		idx := 0
		for d := 0; d < D; d++ {
			hw := q.halfWidth[d]
			c := codes[t*D+d]*float32(hw) + float32(hw)
			ci := int(c)
			if float32(ci) != c || ci < 0 || ci >= q.levels[d] {
				return fmt.Errorf("%w: code %v at vector %d dim %d is not a level of %d", ErrIndex, codes[t*D+d], t, d, q.levels[d])
			}
			idx += ci * q.basis[d]
		}
		ids[t] = uint32(idx)
	}
	return nil
}

// Code writes the D-dimensional code of token id to dst (the implicit codebook entry).
func (q *Quantizer) Code(dst []float32, id uint32) error {
	if uint64(id) >= uint64(q.size) {
		return fmt.Errorf("%w: id %d, codebook size %d", ErrIndex, id, q.size)
	}
	for d, l := range q.levels {
		c := (int(id) / q.basis[d]) % l
		hw := q.halfWidth[d]
		dst[d] = float32(c-hw) / float32(hw)
	}
	return nil
}

// IndicesToCodes writes the codes of ids to dst (len(dst) = len(ids)·Dim), the inverse of
// CodesToIndices. It is exact: decoding ids gives the encoder's codes bit for bit.
func (q *Quantizer) IndicesToCodes(dst []float32, ids []uint32) error {
	D := len(q.levels)
	if len(dst) != len(ids)*D {
		panic(fmt.Sprintf("flextok/fsq: dst has %d values for %d ids of dim %d", len(dst), len(ids), D))
	}
	for t, id := range ids {
		if err := q.Code(dst[t*D:(t+1)*D], id); err != nil {
			return fmt.Errorf("%w (position %d)", err, t)
		}
	}
	return nil
}
