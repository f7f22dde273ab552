package ar

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/internal/fmath"
)

// ErrArgument marks a bad generation request (docs/ar-checkpoint.md rule 7).
var ErrArgument = errors.New("flextok/ar: invalid argument")

// Sampling are the sampling settings (LlamaGen's generate.py semantics; docs/generation.md).
// The zero value is not valid (TopP 0): start from DefaultSampling.
type Sampling struct {
	// CFG is the classifier-free guidance scale s: logits = u + s·(c − u) when s > 1 (the
	// conditional and null-class rows run in one batch); s ≤ 1: no guidance.
	CFG float64
	// GuidedTokens limits guidance to tokens 0..GuidedTokens−1 (the rest use the conditional
	// logits alone); 0 guides every token. LlamaGen's cfg_interval c ≥ 0 is GuidedTokens c+2,
	// its cfg_interval −1 is 0.
	GuidedTokens int
	// Temperature divides the logits (by max(T, 1e-5), as LlamaGen); ≥ 0.
	Temperature float64
	// TopK keeps the logits ≥ the TopK-th largest (ties kept); 0: off. ≥ 0.
	TopK int
	// TopP keeps the smallest prefix of the sorted distribution whose mass reaches TopP (Hugging
	// Face: the first entry always kept); in (0, 1], 1: off.
	TopP float64
	// Greedy picks the arg-max of the filtered distribution instead of drawing.
	Greedy bool
}

// DefaultSampling is plain sampling: no guidance, temperature 1, no filter.
func DefaultSampling() Sampling { return Sampling{Temperature: 1, TopP: 1} }

// Check validates s (rule 7).
func (s Sampling) Check() error {
	switch {
	case math.IsNaN(s.CFG) || math.IsInf(s.CFG, 0):
		return fmt.Errorf("%w: cfg scale %v: want a finite number", ErrArgument, s.CFG)
	case !(s.Temperature >= 0) || math.IsInf(s.Temperature, 0):
		return fmt.Errorf("%w: temperature %v: want ≥ 0", ErrArgument, s.Temperature)
	case s.TopK < 0:
		return fmt.Errorf("%w: top-k %d: want ≥ 0 (0: off)", ErrArgument, s.TopK)
	case !(s.TopP > 0 && s.TopP <= 1):
		return fmt.Errorf("%w: top-p %v: want in (0, 1] (1: off)", ErrArgument, s.TopP)
	case s.GuidedTokens < 0:
		return fmt.Errorf("%w: guided tokens %d: want ≥ 0 (0: every token)", ErrArgument, s.GuidedTokens)
	}
	return nil
}

// rng is the sampler's generator: the project's PCG-DXSM (flow.Normal's Uint64, bit-identical
// on every platform), one stream per sample; a uniform draw is the top 53 bits · 2^-53.
type rng struct{ n *flow.Normal }

func newRNG(seed, stream uint64) rng { return rng{flow.NewNormal(seed, stream)} }

func (r rng) uniform() float64 { return float64(r.n.Uint64()>>11) * (1.0 / (1 << 53)) }

// Filter applies temperature, top-k and top-p to logits in place (LlamaGen's order); filtered
// entries become −Inf. It is exported for the conformance test of the filter.
func Filter(logits []float32, temperature float64, topK int, topP float64, scratch []int) []int {
	t := float32(max(temperature, 1e-5))
	for i, v := range logits {
		logits[i] = v / t
	}
	b := sampleBuf{idx: scratch}
	b.truncate(logits, topK, topP)
	return b.idx
}

// sampleBuf is one sampling goroutine's scratch: the row being filtered, the indices top-p
// sorts and the copy quickselect permutes. Reused from token to token.
type sampleBuf struct {
	row []float32
	idx []int
	sel []float32
}

// truncate applies top-k and top-p to logits already divided by the temperature (Filter's
// second half).
func (b *sampleBuf) truncate(logits []float32, topK int, topP float64) {
	inf := float32(math.Inf(-1))
	if topK > 0 && topK < len(logits) {
		var kth float32
		if topK <= heapTopK {
			kth = b.kthLargestHeap(logits, topK)
		} else {
			b.sel = append(b.sel[:0], logits...)
			kth = kthLargestInPlace(b.sel, topK)
		}
		for i, v := range logits {
			if v < kth {
				logits[i] = inf
			}
		}
	}
	if topP < 1 {
		idx := b.idx[:0]
		for i, v := range logits {
			if v != inf {
				idx = append(idx, i)
			}
		}
		// descending, ties by index (a stable sort of the kept entries)
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case logits[a] > logits[b]:
				return -1
			case logits[a] < logits[b]:
				return 1
			}
			return 0
		})
		mx := float64(logits[idx[0]])
		var z float64
		for _, i := range idx {
			z += fmath.Exp(float64(logits[i]) - mx)
		}
		var cum float64
		drop := false
		for _, i := range idx {
			if drop {
				logits[i] = inf
				continue
			}
			cum += fmath.Exp(float64(logits[i])-mx) / z
			if cum > topP { // the entries after this one are dropped (the shift by one)
				drop = true
			}
		}
		b.idx = idx
	}
}

// pick draws one id from softmax(logits) (or the arg-max when greedy), in float64 with the
// SDK's portable exp: the same ids on every platform for the same logits.
func pick(logits []float32, greedy bool, r rng) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	if greedy {
		return best
	}
	mx := float64(logits[best])
	inf := float32(math.Inf(-1))
	var z float64
	for _, v := range logits {
		if v != inf { // exp(−Inf) is 0: skipping it leaves z as it was, bit for bit
			z += fmath.Exp(float64(v) - mx)
		}
	}
	u := r.uniform() * z
	var cum float64
	last := best
	for i, v := range logits {
		if v == inf {
			continue
		}
		cum += fmath.Exp(float64(v) - mx)
		last = i
		if u < cum {
			return i
		}
	}
	return last
}

// heapTopK is the largest k for which kthLargestHeap is used: one pass that compares most
// entries with the heap's minimum only, against quickselect's copy and partition passes.
const heapTopK = 1024

// kthLargestHeap returns the k-th largest value of v (1-based, 1 ≤ k ≤ len(v)) with a min-heap
// of the k largest values seen: the same order statistic as kthLargestInPlace.
func (b *sampleBuf) kthLargestHeap(v []float32, k int) float32 {
	h := append(b.sel[:0], v[:k]...)
	for i := k/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
	for _, x := range v[k:] {
		if x > h[0] {
			h[0] = x
			siftDown(h, 0)
		}
	}
	b.sel = h
	return h[0]
}

// siftDown restores the min-heap order of h below i.
func siftDown(h []float32, i int) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && h[c+1] < h[c] {
			c++
		}
		if !(h[c] < h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// kthLargestInPlace returns the k-th largest value of a (1-based) by quickselect, permuting a
// (the value is the same whichever pivots are chosen: the order statistic).
func kthLargestInPlace(a []float32, k int) float32 {
	lo, hi, want := 0, len(a)-1, k-1 // index of the answer in descending order
	for lo < hi {
		p := a[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for a[i] > p {
				i++
			}
			for a[j] < p {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return a[want]
		}
	}
	return a[want]
}
