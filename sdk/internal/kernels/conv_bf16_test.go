package kernels

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

// TestConv2dPackedBF16: Conv2dPacked on every bf16 path and thread count is within the bf16
// bound of the float64 convolution of the rounded operands; on the portable path it gives the
// bits of Conv2d's portable path on the rounded operands. Shapes as TestConvGemm, plus a 1x1
// convolution and odd K.
func TestConv2dPackedBF16(t *testing.T) {
	r := newRand(41)
	cases := []ConvDims{
		{InC: 3, InH: 9, InW: 70, OutC: 13, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 2, InH: 6, InW: 33, OutC: 5, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1},
		{InC: 2, InH: 7, InW: 130, OutC: 7, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1},
		{InC: 1, InH: 7, InW: 200, OutC: 2, KH: 2, KW: 5, Stride: 3, PadL: 4, PadR: 2},
		{InC: 40, InH: 6, InW: 40, OutC: 14, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 37, InH: 5, InW: 50, OutC: 30, KH: 1, KW: 1},
	}
	for _, d := range cases {
		x := randSlice(r, d.InC*d.InH*d.InW, 1)
		oh, ow := d.Out()
		np, k := oh*ow, d.InC*d.KH*d.KW
		w := randSlice(r, d.OutC*k, 1)
		bias := randSlice(r, d.OutC, 1)
		xr, wr := roundSlice(x), roundSlice(w)
		cols := make([]float32, np*k)
		for p := 0; p < np; p++ {
			im2colPixel(cols[p*k:(p+1)*k], xr, d, max(d.Stride, 1), p/ow, p%ow)
		}
		want, sabs := refGemm(d.OutC, np, k, wr, k, cols, k, NK)
		for i := range want {
			want[i] += float64(bias[i/np])
		}
		exact := make([]float32, d.OutC*np)
		Conv2d(Opts{}, exact, xr, wr, bias, d)
		for _, bk := range bf16Kernels() {
			for _, th := range []int{1, 2, 3} {
				cw := &ConvWeights{OutC: d.OutC, K: k, bk: &bk}
				mp, kq := (d.OutC+bk.mr-1)/bk.mr, (k+1)/2
				cw.a16 = make([]uint32, mp*bk.mr*kq)
				for ip := 0; ip < mp; ip++ {
					packA16Go(cw.a16[ip*bk.mr*kq:], w, k, ip*bk.mr, min(bk.mr, d.OutC-ip*bk.mr), bk.mr, k)
				}
				got := make([]float32, d.OutC*np)
				for i := range got {
					got[i] = float32(i)
				}
				Conv2dPacked(Opts{Threads: th}, got, x, cw, bias, d)
				what := fmt.Sprintf("%+v %s threads %d", d, bk.name, th)
				within(t, what, got, want, func(i int) float64 { return float64(k+2)*u*sabs[i] + u*abs64(want[i]) })
				if bk.f32.name == "portable" && bk.native == nil {
					sameBits(t, what+" vs Conv2d", got, exact)
				}
			}
		}
	}
	cw := PackConvWeights(Opts{Fast: true, BF16: true}, make([]float32, 8*9), 8, 9)
	if cw.Path() != BF16Path() || cw.Bytes() != 4*((8+cw.bk.mr-1)/cw.bk.mr*cw.bk.mr)*5 {
		t.Fatalf("PackConvWeights: path %q (want %q), %d bytes", cw.Path(), BF16Path(), cw.Bytes())
	}
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// BenchmarkConv2dVAEBF16 is BenchmarkConv2dVAE's convolution with float32 weights (Conv2d)
// and bf16 weights (Conv2dPacked), side by side.
func BenchmarkConv2dVAEBF16(b *testing.B) {
	d := ConvDims{InC: 128, InH: 256, InW: 256, OutC: 128, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}
	r := newRand(32)
	x := randSlice(r, d.InC*d.InH*d.InW, 1)
	w := randSlice(r, d.OutC*d.InC*9, 1)
	y := make([]float32, d.OutC*d.InH*d.InW)
	o := Opts{Fast: true, Threads: runtime.GOMAXPROCS(0)}
	flops := 2 * float64(d.OutC*d.InH*d.InW*d.InC*9)
	b.Run("fp32", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Conv2d(o, y, x, w, nil, d)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	cw := PackConvWeights(o, w, d.OutC, d.InC*9)
	b.Run(cw.Path(), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Conv2dPacked(o, y, x, cw, nil, d)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// TestPairRowsBF16: the panel rounding (AVX-512 for 32-wide panels) gives RoundBF16's words
// for ties, denormals, infinities and quiet NaNs.
func TestPairRowsBF16(t *testing.T) {
	r := newRand(43)
	for _, nr := range []int{32, 4, 12} {
		for kq := 1; kq <= 9; kq++ {
			src := randSlice(r, 2*kq*nr, 2)
			for i := range src {
				switch i % 9 {
				case 1:
					src[i] = math.Float32frombits(math.Float32bits(src[i])&^0xffff | 0x8000)
				case 2:
					src[i] = math.Float32frombits(math.Float32bits(src[i])&^0xffff | 0x18000)
				case 4:
					src[i] = math.Float32frombits(uint32(i) * 977) // denormal
				case 5:
					src[i] = float32(math.Inf(1 - 2*(i%2)))
				case 7:
					src[i] = float32(math.NaN())
				}
			}
			got := make([]uint32, kq*nr)
			want := make([]uint32, kq*nr)
			pairRowsBF16(got, src, kq, nr)
			pairRowsBF16Go(want, src, kq, nr)
			for i := range want {
				for _, h := range []uint{0, 16} {
					gh, wh := uint16(got[i]>>h), uint16(want[i]>>h)
					if gh != wh && !(isNaN16(gh) && isNaN16(wh)) {
						t.Fatalf("nr %d kq %d word %d: %#08x, want %#08x", nr, kq, i, got[i], want[i])
					}
				}
			}
		}
	}
}
