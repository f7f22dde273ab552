package kernels

import (
	"math"
	"testing"
)

// TestVectorExp: the fast path's vector exponential, SiLU and SwiGLU against float64
// references: relative error at most 4e-7 (about 3 float32 ulps) where the result is a normal
// float32, and the saturation ends (0 and the clamp) where it is not. Without AVX-512 (or
// with -tags purego) the functions do nothing and the test checks that.
func TestVectorExp(t *testing.T) {
	r := newRand(41)
	n := 4096 + 16
	x := randSlice(r, n, 30) // uniform in [-30, 30]
	copy(x, []float32{0, -0, 1, -1, 88, -87, 88.3, -87.3, 1e-8, -1e-8, 0.5, -0.5, 20, -20, 87.9, -86.9})
	got := make([]float32, n)
	done := expShiftVec(got, x, 0.25)
	if !hasAVX512Exp() {
		if done != 0 {
			t.Fatalf("expShiftVec did %d elements without AVX-512", done)
		}
		t.Skip("no vector exponential on this build or CPU")
	}
	if done != n {
		t.Fatalf("expShiftVec did %d of %d", done, n)
	}
	const tol = 4e-7
	rel := func(g float32, w float64) float64 { return math.Abs(float64(g)-w) / math.Abs(w) }
	worst := 0.0
	for i, v := range x {
		w := math.Exp(float64(v - 0.25)) // the subtraction is float32, as on the fast path
		if w < 1.2e-38 {                 // below the normal float32 range: the clamp gives ~1e-38
			continue
		}
		worst = max(worst, rel(got[i], w))
		if rel(got[i], w) > tol {
			t.Fatalf("exp(%v - 0.25) = %v, want %v", v, got[i], w)
		}
	}
	t.Logf("exp: max relative error %.2g", worst)
	b := randSlice(r, n, 2)
	sw := make([]float32, n)
	if siluVec(got, x) != n || swigluVec(sw, x, b) != n {
		t.Fatal("siluVec or swigluVec did not do every element")
	}
	worst = 0
	for i, v := range x {
		w := float64(v) / (1 + math.Exp(-float64(v)))
		if math.Abs(w) < 1e-30 {
			if math.Abs(float64(got[i])) > 1e-30 {
				t.Fatalf("silu(%v) = %v, want about %v", v, got[i], w)
			}
			continue
		}
		worst = max(worst, rel(got[i], w))
		if rel(got[i], w) > tol || rel(sw[i], w*float64(b[i])) > 2*tol && math.Abs(w*float64(b[i])) > 1e-30 {
			t.Fatalf("silu(%v) = %v, swiglu %v; want %v, %v", v, got[i], sw[i], w, w*float64(b[i]))
		}
	}
	t.Logf("silu: max relative error %.2g", worst)
}

// TestVectorSoftmax: the fast path's row softmax against a float64 softmax of the same float32
// differences s − max (as Attention defines them): each probability within 1e-6 relative (the
// vector exponential's error plus the sum's and the division's roundings), over rows with
// scores spread from 0 to ±80.
func TestVectorSoftmax(t *testing.T) {
	r := newRand(42)
	for _, n := range []int{16, 48, 512, 1024} {
		for _, spread := range []float32{0.01, 3, 80} {
			row := randSlice(r, n, spread)
			in := append([]float32(nil), row...)
			const scale = 0.125
			if !softmaxVec(row, n, scale) {
				if hasAVX512Exp() {
					t.Fatalf("softmaxVec refused n = %d", n)
				}
				t.Skip("no vector softmax on this build or CPU")
			}
			mx := float32(math.Inf(-1))
			for _, v := range in {
				mx = max(mx, v*scale)
			}
			var sum float64
			for _, v := range in {
				sum += math.Exp(float64(v*scale - mx))
			}
			for i, v := range in {
				w := math.Exp(float64(v*scale-mx)) / sum
				if w < 1e-37 {
					continue
				}
				if e := math.Abs(float64(row[i])-w) / w; e > 1e-6 {
					t.Fatalf("n=%d spread=%v: p[%d] = %v, want %v (rel. error %.2g)", n, spread, i, row[i], w, e)
				}
			}
		}
	}
	// A prefix of allowed keys: the rest padded with −inf to the multiple of 16, then zeroed.
	row := randSlice(r, 64, 5)
	in := append([]float32(nil), row...)
	if !softmaxVec(row, 37, 1) {
		t.Fatal("softmaxVec refused a prefix of 37 of 64")
	}
	want := append([]float32(nil), in[:48]...)
	softmaxVec(want, 48, 1) // reference: the same keys, then renormalised below
	var sum float64
	for j, p := range row {
		if j >= 37 && p != 0 {
			t.Fatalf("masked key %d has probability %v", j, p)
		}
		sum += float64(p)
	}
	if math.Abs(sum-1) > 1e-6 {
		t.Fatalf("probabilities of a prefix sum to %v", sum)
	}
	for j := range 37 {
		if r := float64(row[j]) / float64(want[j]); j > 0 && math.Abs(r-float64(row[0])/float64(want[0])) > 1e-6 {
			t.Fatalf("prefix probabilities are not proportional to the full row's at %d", j)
		}
	}
	if softmaxVec(make([]float32, 24), 24, 1) || softmaxVec(make([]float32, 24), 20, 1) || softmaxVec(nil, 0, 1) {
		t.Fatal("softmaxVec must refuse prefixes whose multiple of 16 overruns the row")
	}
}
