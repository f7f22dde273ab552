package kernels

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

type mnk struct{ m, n, k int }

var oddShapes = []mnk{
	{1, 1, 1}, {1, 7, 1}, {5, 1, 3}, {1, 33, 17}, {3, 5, 7}, {4, 4, 4}, {13, 31, 1},
	{12, 32, 256}, {13, 33, 257}, {25, 65, 300}, {11, 40, 513}, {37, 29, 600}, {1, 100, 768},
}

// refGemm is C = A·B in float64, with sabs[i*n+j] = Σ|A(i,p)B(p,j)| for the error bound.
func refGemm(m, n, k int, a []float32, lda int, b []float32, ldb int, layout Layout) (c, sabs []float64) {
	c = make([]float64, m*n)
	sabs = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				var bv float32
				if layout == KN {
					bv = b[p*ldb+j]
				} else {
					bv = b[j*ldb+p]
				}
				t := float64(a[i*lda+p]) * float64(bv)
				s += t
				sa += math.Abs(t)
			}
			c[i*n+j], sabs[i*n+j] = s, sa
		}
	}
	return c, sabs
}

// TestLinearPortableIsNaive: the blocked, packed, threaded portable path gives exactly the
// bits of the naive reference loop, for every shape and thread count.
func TestLinearPortableIsNaive(t *testing.T) {
	r := newRand(1)
	for _, s := range oddShapes {
		for _, withBias := range []bool{false, true} {
			x := randSlice(r, s.m*s.k, 1)
			w := randSlice(r, s.n*s.k, 1)
			var bias []float32
			if withBias {
				bias = randSlice(r, s.n, 1)
			}
			want := make([]float32, s.m*s.n)
			MatMulNaive(want, x, w, bias, s.m, s.k, s.n)
			for _, th := range []int{1, 2, 3} {
				got := make([]float32, s.m*s.n)
				Linear(Opts{Threads: th}, got, x, w, bias, s.m, s.k, s.n)
				sameBits(t, fmt.Sprintf("%+v bias=%v threads=%d", s, withBias, th), got, want)
			}
		}
	}
}

// TestLinearAgainstFloat64: a recursive float32 sum of K rounded products differs from the
// exact sum by at most (K+1)·u·Σ|a·b| to first order (Higham, Accuracy and Stability, §3.1);
// the bias add costs one more u·|y|. We check (K+2)·u·(Σ|a·b| + |bias|), for both paths.
func TestLinearAgainstFloat64(t *testing.T) {
	r := newRand(2)
	for _, s := range oddShapes {
		x := randSlice(r, s.m*s.k, 2)
		w := randSlice(r, s.n*s.k, 0.5)
		bias := randSlice(r, s.n, 1)
		want, sabs := refGemm(s.m, s.n, s.k, x, s.k, w, s.k, NK)
		for i := range want {
			want[i] += float64(bias[i%s.n])
		}
		for _, fast := range []bool{false, true} {
			got := make([]float32, s.m*s.n)
			Linear(Opts{Threads: 2, Fast: fast}, got, x, w, bias, s.m, s.k, s.n)
			within(t, fmt.Sprintf("%+v fast=%v", s, fast), got, want, func(i int) float64 {
				return float64(s.k+2) * u * (sabs[i] + math.Abs(float64(bias[i%s.n])))
			})
		}
	}
}

// TestGemmLayoutsAndStrides checks the KN layout and leading dimensions larger than the row.
func TestGemmLayoutsAndStrides(t *testing.T) {
	r := newRand(3)
	for _, s := range oddShapes {
		for _, layout := range []Layout{NK, KN} {
			lda, ldc := s.k+3, s.n+5
			ldb := s.k + 2
			bl := (s.n-1)*ldb + s.k
			if layout == KN {
				ldb = s.n + 1
				bl = (s.k-1)*ldb + s.n
			}
			a := randSlice(r, (s.m-1)*lda+s.k, 1)
			b := randSlice(r, bl, 1)
			want, sabs := refGemm(s.m, s.n, s.k, a, lda, b, ldb, layout)
			for _, fast := range []bool{false, true} {
				c := randSlice(r, (s.m-1)*ldc+s.n+1, 1) // C is overwritten, the tail kept
				tail := c[len(c)-1]
				Gemm(Opts{Threads: 2, Fast: fast}, s.m, s.n, s.k, a, lda, b, ldb, layout, c, ldc)
				got := make([]float32, s.m*s.n)
				for i := 0; i < s.m; i++ {
					copy(got[i*s.n:(i+1)*s.n], c[i*ldc:])
				}
				within(t, fmt.Sprintf("%+v layout=%d fast=%v", s, layout, fast), got, want, func(i int) float64 {
					return float64(s.k+1) * u * sabs[i]
				})
				if c[len(c)-1] != tail {
					t.Fatalf("Gemm wrote past the last element")
				}
			}
		}
	}
}

// TestFastAgainstPortable: both results are within (K+2)·u·(Σ|a·b|+|bias|) of the exact
// value (TestLinearAgainstFloat64), so they are within twice that of each other. The fast path
// sums in another order with FMAs, so only this bound, not equality, holds.
func TestFastAgainstPortable(t *testing.T) {
	if FastPath() == "" {
		t.Skip("no fast path in this build")
	}
	r := newRand(4)
	shapes := append(oddShapes, mnk{64, 96, 1024}, mnk{50, 70, 2048})
	for _, s := range shapes {
		x := randSlice(r, s.m*s.k, 1)
		w := randSlice(r, s.n*s.k, 1)
		bias := randSlice(r, s.n, 1)
		_, sabs := refGemm(s.m, s.n, s.k, x, s.k, w, s.k, NK)
		p := make([]float32, s.m*s.n)
		Linear(Opts{}, p, x, w, bias, s.m, s.k, s.n)
		for _, th := range []int{1, 2} {
			f := make([]float32, s.m*s.n)
			Linear(Opts{Threads: th, Fast: true}, f, x, w, bias, s.m, s.k, s.n)
			for i := range p {
				bound := 2 * float64(s.k+2) * u * (sabs[i] + math.Abs(float64(bias[i%s.n])))
				if d := math.Abs(float64(f[i]) - float64(p[i])); d > bound {
					t.Fatalf("%+v threads=%d [%d]: fast %v portable %v, |diff| %.3g > %.3g", s, th, i, f[i], p[i], d, bound)
				}
			}
		}
	}
}

// TestLinearPacked: pre-packed weights give exactly the bits of Linear on the same path.
func TestLinearPacked(t *testing.T) {
	r := newRand(6)
	for _, s := range oddShapes {
		x := randSlice(r, s.m*s.k, 1)
		w := randSlice(r, s.n*s.k, 1)
		bias := randSlice(r, s.n, 1)
		for _, fast := range []bool{false, true} {
			want := make([]float32, s.m*s.n)
			Linear(Opts{Fast: fast}, want, x, w, bias, s.m, s.k, s.n)
			pw := PackWeights(Opts{Threads: 2, Fast: fast}, w, s.n, s.k)
			if !fast && pw.Path() != "portable" {
				t.Fatalf("portable packing has path %q", pw.Path())
			}
			got := make([]float32, s.m*s.n)
			LinearPacked(Opts{Threads: 3}, got, x, pw, bias, s.m)
			sameBits(t, fmt.Sprintf("%+v fast=%v", s, fast), got, want)
		}
	}
}

// TestEachFastKernel runs every fast kernel the CPU supports (not only the one Gemm picks)
// against float64 with the bound of TestLinearAgainstFloat64, in both layouts.
func TestEachFastKernel(t *testing.T) {
	ks := fastKernels()
	if len(ks) == 0 {
		t.Skip("no fast kernels in this build or on this CPU")
	}
	r := newRand(7)
	shapes := append(oddShapes, mnk{30, 50, 1000})
	for _, kn := range ks {
		for _, s := range shapes {
			for _, layout := range []Layout{NK, KN} {
				a := randSlice(r, s.m*s.k, 1)
				b := randSlice(r, s.n*s.k, 1)
				ldb := s.k
				if layout == KN {
					ldb = s.n
				}
				want, sabs := refGemm(s.m, s.n, s.k, a, s.k, b, ldb, layout)
				for _, th := range []int{1, 2} {
					c := make([]float32, s.m*s.n)
					gemmWith(kn, th, s.m, s.n, s.k, a, s.k, b, ldb, layout, c, s.n)
					within(t, fmt.Sprintf("%s %+v layout=%d threads=%d", kn.name, s, layout, th), c, want, func(i int) float64 {
						return float64(s.k+1) * u * sabs[i]
					})
				}
			}
		}
	}
}

// TestGemmEmptyAndThreads: K=0 gives the bias (or zeros), empty M or N writes nothing, and
// more threads than row panels (a matrix-vector product, split by columns) keeps the bits.
func TestGemmEmptyAndThreads(t *testing.T) {
	bias := []float32{1, 2, 3}
	y := []float32{9, 9, 9, 9, 9, 9}
	Linear(Opts{Threads: 2}, y, nil, nil, bias, 2, 0, 3)
	sameBits(t, "K=0", y, []float32{1, 2, 3, 1, 2, 3})
	Linear(Opts{Threads: 2, Fast: true}, y, nil, nil, nil, 2, 0, 3)
	sameBits(t, "K=0 fast", y, make([]float32, 6))
	Linear(Opts{}, nil, nil, make([]float32, 6), nil, 0, 2, 3)
	Linear(Opts{}, nil, make([]float32, 6), nil, nil, 3, 2, 0)

	r := newRand(8)
	for _, s := range []mnk{{1, 1000, 300}, {2, 77, 129}, {5, 40, 9}} {
		x, w := randSlice(r, s.m*s.k, 1), randSlice(r, s.n*s.k, 1)
		want := make([]float32, s.m*s.n)
		MatMulNaive(want, x, w, nil, s.m, s.k, s.n)
		for _, th := range []int{2, 3, 8} {
			got := make([]float32, s.m*s.n)
			MatMul(Opts{Threads: th}, got, x, w, s.m, s.k, s.n)
			sameBits(t, fmt.Sprintf("%+v threads=%d", s, th), got, want)
		}
	}
}

func TestGemmShapePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic on short y")
		}
	}()
	Linear(Opts{}, make([]float32, 3), make([]float32, 4), make([]float32, 4), nil, 2, 2, 2)
}

func BenchmarkMatMul(b *testing.B) {
	shapes := []mnk{
		{1024, 768, 768},   // d12 attention projections
		{1024, 2048, 768},  // d12 fc1 / fc3
		{1024, 768, 2048},  // d12 fc2
		{1024, 3072, 1152}, // d18 fc1 / fc3
	}
	paths := []struct {
		name string
		fast bool
	}{{"portable", false}}
	if FastPath() != "" {
		paths = append(paths, struct {
			name string
			fast bool
		}{runtime.GOARCH, true})
	}
	for _, s := range shapes {
		r := newRand(5)
		x := randSlice(r, s.m*s.k, 1)
		w := randSlice(r, s.n*s.k, 1)
		y := make([]float32, s.m*s.n)
		for _, p := range paths {
			o := Opts{Threads: runtime.GOMAXPROCS(0), Fast: p.fast}
			flop := 2 * float64(s.m) * float64(s.n) * float64(s.k)
			b.Run(fmt.Sprintf("path=%s/M=%d,K=%d,N=%d", p.name, s.m, s.k, s.n), func(b *testing.B) {
				for b.Loop() {
					MatMul(o, y, x, w, s.m, s.k, s.n)
				}
				b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			if p.fast {
				// Weights packed once, as the engine does at load time.
				pw := PackWeights(o, w, s.n, s.k)
				b.Run(fmt.Sprintf("path=%s-packed/M=%d,K=%d,N=%d", p.name, s.m, s.k, s.n), func(b *testing.B) {
					for b.Loop() {
						LinearPacked(o, y, x, pw, nil, s.m)
					}
					b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
				// The fallback kernels, for CPUs without the best one.
				for _, kn := range fastKernels()[1:] {
					b.Run(fmt.Sprintf("path=%s/M=%d,K=%d,N=%d", kn.name, s.m, s.k, s.n), func(b *testing.B) {
						for b.Loop() {
							gemmWith(kn, o.threads(), s.m, s.n, s.k, x, s.k, w, s.k, NK, y, s.n)
						}
						b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		}
	}
}
