package kernels

import (
	"fmt"
	"math"
	"testing"
)

// bf16Kernels lists every bf16 path this build and CPU can run: the native one (if any), the
// emulation over each fast float32 kernel and over the portable kernel.
func bf16Kernels() []bf16Kernel {
	var ks []bf16Kernel
	if k, ok := bf16Native(); ok {
		ks = append(ks, k)
	}
	for _, f := range fastKernels() {
		ks = append(ks, emulatedBF16(f))
	}
	return append(ks, emulatedBF16(portableKernel))
}

func TestRoundBF16(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, odd below: up
		{0x3f808001, 0x3f81}, // above the tie
		{0x3f807fff, 0x3f80},
		{0xbf80c000, 0xbf81}, // negative rounds by magnitude
		{0x7f7fffff, 0x7f80}, // max float32 rounds to +Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x00000001, 0x0000}, // tiny denormal to zero
		{0x80000000, 0x8000}, // -0
	} {
		if got := RoundBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("RoundBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	for _, nan := range []uint32{0x7fc00000, 0x7f800001, 0xffffffff, 0x7fffffff} {
		if got := BF16ToFloat32(RoundBF16(math.Float32frombits(nan))); !math.IsNaN(float64(got)) {
			t.Errorf("RoundBF16(NaN %#08x) widens to %v", nan, got)
		}
	}
	// Every bf16 value round-trips.
	for h := 0; h < 1<<16; h++ {
		f := BF16ToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if got := RoundBF16(f); got != uint16(h) {
			t.Fatalf("round trip of %#04x gives %#04x", h, got)
		}
	}
}

func roundSlice(s []float32) []float32 {
	r := make([]float32, len(s))
	for i, v := range s {
		r[i] = BF16ToFloat32(RoundBF16(v))
	}
	return r
}

// TestLinearBF16Bound: every bf16 path, shape and thread count gives each element within
// (K+2)·2^-24·Σ|a'b'| of the exact product of the bf16-rounded operands a', b', and within
// (2^-7 + 2^-16 + (K+2)·2^-24)·Σ|ab| of the exact product of the float32 operands.
func TestLinearBF16Bound(t *testing.T) {
	r := newRand(16)
	for _, bk := range bf16Kernels() {
		for _, s := range oddShapes {
			x := randSlice(r, s.m*s.k, 1)
			w := randSlice(r, s.n*s.k, 1)
			bias := randSlice(r, s.n, 1)
			want, sabs := refGemm(s.m, s.n, s.k, roundSlice(x), s.k, roundSlice(w), s.k, NK)
			exact, eabs := refGemm(s.m, s.n, s.k, x, s.k, w, s.k, NK)
			for i := range want {
				want[i] += float64(bias[i%s.n])
				exact[i] += float64(bias[i%s.n])
			}
			for _, th := range []int{1, 2, 3} {
				pw := &Weights{N: s.n, K: s.k, bk: &bk, d16: packWeightsBF16(bk, th, w, s.n, s.k)}
				got := make([]float32, s.m*s.n)
				for i := range got {
					got[i] = float32(math.NaN()) // LinearPacked must overwrite
				}
				LinearPacked(Opts{Threads: th}, got, x, pw, bias, s.m)
				what := fmt.Sprintf("%s %+v threads=%d", bk.name, s, th)
				within(t, what+" vs rounded", got, want, func(i int) float64 {
					return float64(s.k+2)*u*sabs[i] + u*math.Abs(want[i])
				})
				within(t, what+" vs float32", got, exact, func(i int) float64 {
					return (1.0/128+1.0/(1<<16)+float64(s.k+2)*u)*eabs[i] + u*math.Abs(exact[i])
				})
			}
		}
	}
}

// TestLinearBF16PortableIsNaive: the portable bf16 path (Opts{BF16: true}) gives the bits of
// the naive loop over the bf16-rounded operands, on every platform and thread count.
func TestLinearBF16PortableIsNaive(t *testing.T) {
	r := newRand(17)
	for _, s := range oddShapes {
		x := randSlice(r, s.m*s.k, 1)
		w := randSlice(r, s.n*s.k, 1)
		bias := randSlice(r, s.n, 1)
		want := make([]float32, s.m*s.n)
		MatMulNaive(want, roundSlice(x), roundSlice(w), bias, s.m, s.k, s.n)
		for _, th := range []int{1, 2, 3} {
			pw := PackWeights(Opts{Threads: th, BF16: true}, w, s.n, s.k)
			if pw.Path() != "bf16-on-portable" {
				t.Fatalf("portable bf16 packing has path %q", pw.Path())
			}
			if got, max := pw.Bytes(), 4*((s.n+3)/4*4)*((s.k+1)/2); got != max {
				t.Fatalf("%+v: %d bytes, want %d", s, got, max)
			}
			got := make([]float32, s.m*s.n)
			LinearPacked(Opts{Threads: th}, got, x, pw, bias, s.m)
			sameBits(t, fmt.Sprintf("%+v threads=%d", s, th), got, want)
		}
	}
}

// TestBF16PathChoice: Opts{Fast, BF16} packs for the native kernel exactly when the CPU has
// AVX512_BF16, and BF16Path names it.
func TestBF16PathChoice(t *testing.T) {
	pw := PackWeights(Opts{Fast: true, BF16: true}, make([]float32, 64*64), 64, 64)
	_, native := bf16Native()
	t.Logf("bf16 path %q (native %v), float32 fast path %q", pw.Path(), native, FastPath())
	if pw.Path() != BF16Path() {
		t.Fatalf("packed for %q, BF16Path says %q", pw.Path(), BF16Path())
	}
	if native != (pw.Path() == "avx512bf16-12x32") {
		t.Fatalf("native %v but path %q", native, pw.Path())
	}
}

// BenchmarkLinearBF16 compares float32 and bf16 weights on the decoder's products at d12
// (M = 1024 rows: cond and uncond, 256 patches and 256 registers each), side by side: the
// float32 fast kernel, the native bf16 kernel (AVX512_BF16) and the emulated bf16 fallback
// over each float32 fast kernel (what a CPU without AVX512_BF16 runs).
func BenchmarkLinearBF16(b *testing.B) {
	const m, W = 1024, 768
	Hd := 2 * (4 * W) / 3
	r := newRand(3)
	for _, sh := range []struct {
		name string
		n, k int
	}{{"qkv", 3 * W, W}, {"fc1", Hd, W}, {"fc2", W, Hd}} {
		x := randSlice(r, m*sh.k, 1)
		w := randSlice(r, sh.n*sh.k, 0.05)
		y := make([]float32, m*sh.n)
		for _, th := range []int{1, 2} {
			o := Opts{Threads: th, Fast: true}
			pws := []*Weights{PackWeights(o, w, sh.n, sh.k)}
			for _, bk := range bf16Kernels() {
				if bk.f32.name != "portable" {
					bk := bk
					pws = append(pws, &Weights{N: sh.n, K: sh.k, bk: &bk, d16: packWeightsBF16(bk, th, w, sh.n, sh.k)})
				}
			}
			for _, pw := range pws {
				b.Run(fmt.Sprintf("%s/threads=%d/%s", sh.name, th, pw.Path()), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						LinearPacked(o, y, x, pw, nil, m)
					}
					b.ReportMetric(2*float64(m*sh.n*sh.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// TestRoundRowBF16: the row rounding of the native packing (VCVTNE2PS2BF16 where the CPU has
// it) gives RoundBF16's words for every length, ties, infinities and NaN (denormals aside,
// which the instruction flushes to zero).
func TestRoundRowBF16(t *testing.T) {
	r := newRand(5)
	for n := 0; n <= 131; n++ {
		src := randSlice(r, n, 3)
		for i := range src {
			switch i % 7 {
			case 1:
				src[i] = math.Float32frombits(math.Float32bits(src[i])&^0xffff | 0x8000) // a tie
			case 3:
				src[i] = float32(math.Inf(1 - 2*(i%2)))
			}
		}
		if n > 5 {
			src[5] = float32(math.NaN())
		}
		got := make([]uint32, (n+1)/2+1)
		want := make([]uint32, (n+1)/2+1)
		got[len(got)-1], want[len(want)-1] = 0xdeadbeef, 0xdeadbeef
		roundRowBF16(got, src)
		roundRowBF16Go(want, src)
		for q := range want {
			g, w := got[q], want[q]
			for _, h := range []uint{0, 16} {
				gh, wh := uint16(g>>h), uint16(w>>h)
				if isNaN16(gh) && isNaN16(wh) {
					continue
				}
				if gh != wh {
					t.Fatalf("n=%d word %d: %#08x, want %#08x", n, q, g, w)
				}
			}
		}
	}
}

func isNaN16(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }
