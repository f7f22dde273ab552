package kernels

import (
	"fmt"
	"math"

	"github.com/flextok-sdk/flextok/sdk/internal/fmath"
)

// MaskKind selects an attention mask.
type MaskKind uint8

const (
	// MaskFull lets every query see every key.
	MaskFull MaskKind = iota
	// MaskPrefixCausal lets query q see key k when k < Prefix or k <= q: a fully visible
	// prefix (the encoder's patch tokens) followed by causal tokens (its registers).
	MaskPrefixCausal
	// MaskFunc asks Allow(q, k) for every pair.
	MaskFunc
)

// Mask says which keys each query may attend to; the same mask applies to every sequence of
// the batch and every head. The zero value is MaskFull.
type Mask struct {
	Kind   MaskKind
	Prefix int                 // MaskPrefixCausal: length of the fully visible prefix
	Allow  func(q, k int) bool // MaskFunc: true when query q may see key k
}

// Allowed reports whether query q may attend to key k.
func (m Mask) Allowed(q, k int) bool {
	switch m.Kind {
	case MaskFull:
		return true
	case MaskPrefixCausal:
		return k < m.Prefix || k <= q
	case MaskFunc:
		return m.Allow(q, k)
	}
	panic(fmt.Sprintf("flextok/kernels: unknown mask kind %d", m.Kind))
}

// AttnDims gives the shapes of Attention. Sequence b's token t is row b*Seq+t of its tensor;
// head h occupies features [h·HeadDim, (h+1)·HeadDim) of a row.
type AttnDims struct {
	Batch, Heads, SeqQ, SeqK, HeadDim int
	// Row strides in elements of q, k, v and out; zero means Heads·HeadDim (dense). A larger
	// stride lets q, k and v be views into one fused [tokens, 3·W] qkv tensor.
	LdQ, LdK, LdV, LdO int
}

func (d *AttnDims) fill() {
	w := d.Heads * d.HeadDim
	for _, ld := range []*int{&d.LdQ, &d.LdK, &d.LdV, &d.LdO} {
		if *ld == 0 {
			*ld = w
		}
		if *ld < w {
			panic(fmt.Sprintf("flextok/kernels: Attention: row stride %d < Heads*HeadDim = %d", *ld, w))
		}
	}
}

// Attention computes multi-head scaled dot-product attention for a batch of independent
// sequences: out = softmax(scale · q kᵀ + mask) v per sequence and head.
//
// Arithmetic, per sequence and head: the scores S = q_h k_hᵀ come from Gemm (each a float32
// dot product over HeadDim in index order on the portable path), then s = S·scale in float32.
// Each query row's softmax subtracts the row maximum over allowed keys, takes
// e = float32(fmath.ExpF(float64(s - max))), sums the e in float64 in key order, rounds the sum
// once to float32 and divides each e by it; masked keys get probability exactly 0. A row with
// no allowed key yields zeros (as flex_attention does). The output out_h = P v_h comes from
// Gemm again (sum over keys in key order). Work is split across threads by (sequence, head)
// pairs, each computed on one goroutine, so thread count never changes a bit; within a pair
// the queries go in tiles of whole Gemm row panels, which changes no element's sum either.
// With o.Fast the two products use the fast Gemm path (see Gemm's bound) and the
// exponentials the vector one where the CPU has it (float32, relative error about 1e-7); rows
// whose allowed keys are the first ones (every row of MaskFull and MaskPrefixCausal) run the
// whole softmax in vector code when that prefix, rounded up to a multiple of 16, fits in the
// row: it sums the exponentials in float64 in 16 lanes instead of in key order.
func Attention(o Opts, out, q, k, v []float32, d AttnDims, scale float32, mask Mask) {
	needDims("Attention", d.Batch, d.Heads, d.SeqQ, d.SeqK, d.HeadDim)
	if mask.Kind == MaskFunc && mask.Allow == nil {
		panic("flextok/kernels: Attention: MaskFunc without Allow")
	}
	d.fill()
	w := d.Heads * d.HeadDim
	need("Attention", "q", q, strided(d.Batch*d.SeqQ, w, d.LdQ))
	need("Attention", "k", k, strided(d.Batch*d.SeqK, w, d.LdK))
	need("Attention", "v", v, strided(d.Batch*d.SeqK, w, d.LdV))
	need("Attention", "out", out, strided(d.Batch*d.SeqQ, w, d.LdO))
	if d.SeqQ == 0 || d.HeadDim == 0 {
		return
	}
	if d.SeqK == 0 {
		for t := 0; t < d.Batch*d.SeqQ; t++ {
			clear(out[t*d.LdO : t*d.LdO+w])
		}
		return
	}
	// allowed[q*SeqK+k] caches the mask once for all sequences and heads; prefix[q] is the
	// number of keys query q sees when they are the first ones, else -1.
	var allowed []bool
	var prefix []int
	if mask.Kind != MaskFull {
		allowed = make([]bool, d.SeqQ*d.SeqK)
		prefix = make([]int, d.SeqQ)
		for qi := 0; qi < d.SeqQ; qi++ {
			row := allowed[qi*d.SeqK : (qi+1)*d.SeqK]
			for ki := range row {
				row[ki] = mask.Allowed(qi, ki)
			}
			n := 0
			for n < len(row) && row[n] {
				n++
			}
			for _, a := range row[n:] {
				if a {
					n = -1
					break
				}
			}
			prefix[qi] = n
		}
	}
	kn := kernelFor(o)
	// Queries go in tiles of about 64 rows (whole micro-kernel panels), so that a tile's
	// scores stay in L2 between the two products; K and V are packed once per head.
	tile := kn.mr * ((64 + kn.mr - 1) / kn.mr)
	job := float64(d.SeqQ) * float64(d.SeqK) * (2*float64(d.HeadDim)*kn.macNs + nsExp)
	parallelWork(o.threads(), d.Batch*d.Heads, job, func(lo, hi int) {
		sbuf := getBuf(min(tile, d.SeqQ) * d.SeqK)
		kbuf := getBuf(packedLen(kn, d.SeqK, d.HeadDim))
		vbuf := getBuf(packedLen(kn, d.HeadDim, d.SeqK))
		defer putBuf(sbuf)
		defer putBuf(kbuf)
		defer putBuf(vbuf)
		s, kp, vp := *sbuf, *kbuf, *vbuf
		for job := lo; job < hi; job++ {
			b, h := job/d.Heads, job%d.Heads
			qh := q[b*d.SeqQ*d.LdQ+h*d.HeadDim:]
			kh := k[b*d.SeqK*d.LdK+h*d.HeadDim:]
			vh := v[b*d.SeqK*d.LdV+h*d.HeadDim:]
			oh := out[b*d.SeqQ*d.LdO+h*d.HeadDim:]
			packAllB(kn, 1, kp, kh, d.LdK, NK, d.SeqK, d.HeadDim)
			packAllB(kn, 1, vp, vh, d.LdV, KN, d.HeadDim, d.SeqK)
			for q0 := 0; q0 < d.SeqQ; q0 += tile {
				mt := min(tile, d.SeqQ-q0)
				gemmDriver(kn, 1, mt, d.SeqK, d.HeadDim, qh[q0*d.LdQ:], d.LdQ, kp, s, d.SeqK)
				for qi := q0; qi < q0+mt; qi++ {
					var al []bool
					n := d.SeqK
					if allowed != nil {
						al, n = allowed[qi*d.SeqK:(qi+1)*d.SeqK], prefix[qi]
					}
					softmaxRow(s[(qi-q0)*d.SeqK:(qi-q0+1)*d.SeqK], al, n, scale, o.Fast)
				}
				gemmDriver(kn, 1, mt, d.HeadDim, d.SeqK, s, d.SeqK, vp, oh[q0*d.LdO:], d.LdO)
			}
		}
	})
}

// softmaxRow turns raw scores into probabilities in place (see Attention); al == nil means all
// keys are allowed; n > 0 says that the allowed keys are the first n (-1: they are not a
// prefix); fast allows the vector code.
func softmaxRow(row []float32, al []bool, n int, scale float32, fast bool) {
	if fast && n > 0 && softmaxVec(row, n, scale) {
		return
	}
	mx := float32(math.Inf(-1))
	seen := false
	for j, v := range row {
		if al != nil && !al[j] {
			continue
		}
		v *= scale
		row[j] = v
		if !seen || v > mx {
			mx = v
			seen = true
		}
	}
	if !seen {
		clear(row)
		return
	}
	var sum float64
	done := 0
	if fast {
		done = expShiftVec(row, row, mx) // masked keys too; they are zeroed below
	}
	for j, v := range row {
		if al != nil && !al[j] {
			row[j] = 0
			continue
		}
		e := v
		if j >= done {
			e = float32(fmath.ExpF(float64(v - mx)))
			row[j] = e
		}
		sum += float64(e)
	}
	inv := float32(sum)
	for j := range row {
		row[j] /= inv
	}
}
