package flow

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/flextok-sdk/flextok/sdk/internal/fmath"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Normal is the project's seeded standard-normal generator. Its output depends only on
// (seed, stream) and is bit-identical on every platform and in the TypeScript port; see the
// package documentation (# Determinism) for the exact algorithm.
//
// A Normal is not safe for concurrent use.
type Normal struct {
	pcg      rand.PCG
	spare    float64
	hasSpare bool
}

// NewNormal returns a generator seeded with (seed, stream): the 128-bit PCG state is
// seed<<64 | stream.
func NewNormal(seed, stream uint64) *Normal {
	n := &Normal{}
	n.pcg.Seed(seed, stream)
	return n
}

// Uint64 returns the next raw output of the underlying PCG-DXSM generator. It is exported so
// that ports can check their PCG against Go's; mixing Uint64 and Float64 calls is allowed and
// simply consumes the same stream.
func (n *Normal) Uint64() uint64 { return n.pcg.Uint64() }

// Float64 returns the next standard normal value (Marsaglia's polar method, values delivered
// in pairs: the first of a pair is returned, the second is kept for the next call).
func (n *Normal) Float64() float64 {
	if n.hasSpare {
		n.hasSpare = false
		return n.spare
	}
	for {
		u := uniform11(n.pcg.Uint64())
		v := uniform11(n.pcg.Uint64())
		// Each product is rounded on its own (no FMA), as in JavaScript.
		s := float64(u*u) + float64(v*v)
		if s >= 1 || s == 0 {
			continue
		}
		a := float64(-2 * fmath.Log(s))
		f := math.Sqrt(float64(a / s))
		n.spare = float64(v * f)
		n.hasSpare = true
		return float64(u * f)
	}
}

// uniform11 maps a 64-bit draw to [-1, 1) exactly: the top 53 bits k give k*2^-52 - 1, a
// multiple of 2^-52 (both operations are exact in float64).
func uniform11(x uint64) float64 {
	return float64(float64(x>>11)*0x1p-52) - 1
}

// Fill overwrites dst with the next len(dst) normal values, each rounded from float64 to
// float32 (round to nearest even), in index order.
func (n *Normal) Fill(dst []float32) {
	for i := range dst {
		dst[i] = float32(n.Float64())
	}
}

// Noise draws the initial noise x_1 for a batch of images: one Normal seeded with
// (seed, stream), and image i takes the next prod(shapes[i]) values in row-major order, images
// in order (the official pipeline draws torch.randn per image, sequentially, from one
// generator). Every shape must be [C, h, w] with positive dimensions.
func Noise(seed, stream uint64, shapes ...[]int) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, len(shapes))
	for i, s := range shapes {
		if err := checkShape(s); err != nil {
			return nil, fmt.Errorf("flextok/flow: image %d: %w", i, err)
		}
	}
	g := NewNormal(seed, stream)
	for i, s := range shapes {
		t, err := tensor.New(s...)
		if err != nil {
			return nil, fmt.Errorf("flextok/flow: image %d: %w", i, err)
		}
		g.Fill(t.Data)
		out[i] = t
	}
	return out, nil
}

// checkShape accepts [C, h, w] with every dimension >= 1 and at most tensor.MaxElements values.
func checkShape(s []int) error {
	if len(s) != 3 {
		return fmt.Errorf("shape must be [C, h, w], got %v", s)
	}
	for _, d := range s {
		if d < 1 {
			return fmt.Errorf("shape %v has a dimension < 1", s)
		}
	}
	if _, err := tensor.NumElements(s); err != nil {
		return fmt.Errorf("shape %v has more than %d values", s, tensor.MaxElements)
	}
	return nil
}
