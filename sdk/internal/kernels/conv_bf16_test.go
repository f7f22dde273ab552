package kernels

import (
	"fmt"
	"math"
	"runtime"
	"strings"
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

// BenchmarkConv2dVAEBF16 is BenchmarkConv2dVAE with bf16 weights (Conv2dPacked on the bf16
// path BF16Path names): path=im2col packs the weights with PackConvWeights (the im2col
// product), path=direct with PackConvWeightsFor (the direct kernel, where the CPU has
// AVX512_BF16; what the engine runs).
func BenchmarkConv2dVAEBF16(b *testing.B) {
	o := Opts{Fast: true, BF16: true, Threads: runtime.GOMAXPROCS(0)}
	for _, sh := range [][2]int{{512, 32}, {512, 64}, {256, 128}, {128, 256}} {
		c, hw := sh[0], sh[1]
		d := ConvDims{InC: c, InH: hw, InW: hw, OutC: c, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}
		r := newRand(32)
		x := randSlice(r, c*hw*hw, 1)
		w := randSlice(r, c*c*9, 1)
		y := make([]float32, c*hw*hw)
		flops := 2 * float64(c*hw*hw*c*9)
		for _, p := range []struct {
			name string
			cw   *ConvWeights
		}{{"im2col", PackConvWeights(o, w, c, c*9)}, {"direct", PackConvWeightsFor(o, w, d)}} {
			b.Run(fmt.Sprintf("c=%d/hw=%d/path=%s/%s", c, hw, p.name, p.cw.Path()), func(b *testing.B) {
				cpu0, ok := processCPU()
				for i := 0; i < b.N; i++ {
					Conv2dPacked(o, y, x, p.cw, nil, d)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if cpu1, ok1 := processCPU(); ok && ok1 && cpu1 > cpu0 {
					b.ReportMetric(flops*float64(b.N)/(cpu1-cpu0).Seconds()/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
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

// TestConv2dPackedDirectBF16: with weights PackConvWeightsFor packed for the direct bf16 kernel
// (3x3 stride-1 convolutions on AVX512_BF16), Conv2dPacked and the direct driver with other
// walks (channel-pair blocks, row groups and bands), on 1 and 2 threads, are within the bf16
// bound of the float64 convolution of the rounded operands at every output: odd channel counts
// (a missing last channel of a pair), rows narrower and wider than a tile, asymmetric and wide
// padding. The thread count, row group and band do not change a bit.
func TestConv2dPackedDirectBF16(t *testing.T) {
	o := Opts{Fast: true, BF16: true}
	if _, ok := directBF16For(bf16KernelFor(o)); !ok {
		t.Skip("no direct bf16 kernel on this CPU and build")
	}
	r := newRand(44)
	pad1 := func(d ConvDims) ConvDims { d.PadT, d.PadB, d.PadL, d.PadR = 1, 1, 1, 1; return d }
	cases := []ConvDims{
		pad1(ConvDims{InC: 3, InH: 9, InW: 70, OutC: 13, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 40, InH: 6, InW: 40, OutC: 14, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 1, InH: 1, InW: 1, OutC: 1, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 65, InH: 4, InW: 33, OutC: 25, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 16, InH: 5, InW: 64, OutC: 30, KH: 3, KW: 3}),
		{InC: 5, InH: 4, InW: 5, OutC: 25, KH: 3, KW: 3, PadT: 2, PadR: 2},
		{InC: 2, InH: 2, InW: 3, OutC: 3, KH: 3, KW: 3, PadT: 3, PadB: 2, PadL: 4, PadR: 3},
	}
	for _, d := range cases {
		oh, ow := d.Out()
		x := randSlice(r, d.InC*d.InH*d.InW, 1)
		w := randSlice(r, d.OutC*d.InC*9, 1)
		bias := randSlice(r, d.OutC, 1)
		xr, wr := roundSlice(x), roundSlice(w)
		cw := PackConvWeightsFor(o, w, d)
		if cw.direct == nil || cw.Path() != BF16Path() || cw.Bytes() != 4*((d.OutC+11)/12*12)*((d.InC+1)/2*9) {
			t.Fatalf("%+v: PackConvWeightsFor: path %q, %d bytes", d, cw.Path(), cw.Bytes())
		}
		first := map[int][]float32{} // by channel-pair block: the block sums are the order
		run := func(what string, channels int, f func(y []float32)) {
			got := make([]float32, d.OutC*oh*ow)
			for i := range got {
				got[i] = float32(i) // every value must be overwritten
			}
			f(got)
			checkConvAt(t, what, got, xr, wr, bias, d, func(int, int, int) bool { return true })
			if first[channels] == nil {
				first[channels] = got
			} else {
				sameBits(t, what+" vs the first", got, first[channels])
			}
		}
		def := planDirect(d, cw.direct.dk.mr, cw.direct.dk.nr, (d.InC+1)/2, 16, 2)
		for _, th := range []int{1, 2} {
			run(fmt.Sprintf("%+v Conv2dPacked threads %d", d, th), def.channels, func(y []float32) { Conv2dPacked(Opts{Threads: th}, y, x, cw, bias, d) })
			for _, pl := range []directPlan{{3, 1, 1}, {1, 2, 4}, {16, 3, 3}, {3, 2, 2}} {
				run(fmt.Sprintf("%+v %+v threads %d", d, pl, th), pl.channels, func(y []float32) { convDirectBF16(cw, pl, th, d, x, y, bias) })
			}
		}
	}
	// Weights packed for the direct kernel refuse another convolution.
	d := ConvDims{InC: 4, InH: 5, InW: 5, OutC: 2, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}
	cw := PackConvWeightsFor(o, make([]float32, 2*4*9), d)
	defer func() {
		if e := recover(); e == nil || !strings.Contains(fmt.Sprint(e), "3x3 stride-1") {
			t.Fatalf("stride 2 with direct weights: recovered %v", e)
		}
	}()
	d.Stride = 2
	Conv2dPacked(Opts{}, make([]float32, 2*9), make([]float32, 4*25), cw, nil, d)
}

// TestConv2dPackedDirectBF16VAE: at the d12 VAE decoder's 3x3 shapes, the direct bf16
// convolution (1 and 2 threads) is within the bf16 bound of the float64 convolution of the
// rounded operands at the borders and a sample of inner outputs.
func TestConv2dPackedDirectBF16VAE(t *testing.T) {
	o := Opts{Fast: true, BF16: true}
	if _, ok := directBF16For(bf16KernelFor(o)); !ok {
		t.Skip("no direct bf16 kernel on this CPU and build")
	}
	if testing.Short() {
		t.Skip("VAE shapes take seconds")
	}
	r := newRand(45)
	for _, sh := range [][2]int{{512, 32}, {512, 64}, {256, 128}, {128, 256}} {
		c, hw := sh[0], sh[1]
		d := ConvDims{InC: c, InH: hw, InW: hw, OutC: c, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}
		x := randSlice(r, c*hw*hw, 1)
		w := randSlice(r, c*c*9, 1)
		bias := randSlice(r, c, 1)
		xr, wr := roundSlice(x), roundSlice(w)
		cw := PackConvWeightsFor(o, w, d)
		pick := func(oc, oy, ox int) bool {
			if oc%37 != 5 && oc != c-1 {
				return false
			}
			edge := oy == 0 || oy == hw-1 || ox == 0 || ox == hw-1 || ox == 31 || ox == 32
			return edge || (oy*131+ox*7+oc)%97 == 0
		}
		for _, th := range []int{1, 2} {
			got := make([]float32, c*hw*hw)
			Conv2dPacked(Opts{Threads: th}, got, x, cw, bias, d)
			checkConvAt(t, fmt.Sprintf("%d channels at %dx%d threads %d", c, hw, hw, th), got, xr, wr, bias, d, pick)
		}
	}
}

// TestPairBF16: the channel-pair rounding of the padded bf16 rows (AVX-512 for 16 values at a
// time) gives RoundBF16's words for ties, denormals, infinities and quiet NaNs, any length,
// with and without a high channel.
func TestPairBF16(t *testing.T) {
	r := newRand(46)
	for n := 0; n <= 70; n++ {
		lo, hi := randSlice(r, n, 2), randSlice(r, n, 2)
		for i := range lo {
			switch i % 7 {
			case 1:
				lo[i] = math.Float32frombits(math.Float32bits(lo[i])&^0xffff | 0x8000)
			case 2:
				hi[i] = math.Float32frombits(math.Float32bits(hi[i])&^0xffff | 0x18000)
			case 3:
				lo[i] = math.Float32frombits(uint32(i) * 977) // denormal
			case 4:
				hi[i] = float32(math.Inf(1 - 2*(i%2)))
			case 6:
				lo[i] = float32(math.NaN())
			}
		}
		for _, h := range [][]float32{hi, nil} {
			got, want := make([]uint32, n), make([]uint32, n)
			pairBF16(got, lo, h)
			for j := range want {
				want[j] = uint32(RoundBF16(lo[j]))
				if h != nil {
					want[j] |= uint32(RoundBF16(h[j])) << 16
				}
			}
			for j := range want {
				for _, s := range []uint{0, 16} {
					gh, wh := uint16(got[j]>>s), uint16(want[j]>>s)
					if gh != wh && !(isNaN16(gh) && isNaN16(wh)) {
						t.Fatalf("n %d hi %v word %d: %#08x, want %#08x", n, h != nil, j, got[j], want[j])
					}
				}
			}
		}
	}
}
