package kernels

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

// directKernels lists the direct convolution kernels of every fast kernel this CPU supports.
func directKernels() []directKernel {
	var dks []directKernel
	for _, kn := range fastKernels() {
		if dk, ok := directKernelFor(kn); ok {
			dks = append(dks, dk)
		}
	}
	return dks
}

// refConvAt is the float64 value of output (oc, oy, ox) of conv(x, w) + bias, with
// Σ|w·x| + |bias| for the bound.
func refConvAt(x, w, bias []float32, d ConvDims, oc, oy, ox int) (y, sabs float64) {
	s := max(d.Stride, 1)
	for ci := 0; ci < d.InC; ci++ {
		for dy := 0; dy < d.KH; dy++ {
			for dx := 0; dx < d.KW; dx++ {
				iy, ix := oy*s-d.PadT+dy, ox*s-d.PadL+dx
				if iy < 0 || iy >= d.InH || ix < 0 || ix >= d.InW {
					continue
				}
				t := float64(w[((oc*d.InC+ci)*d.KH+dy)*d.KW+dx]) * float64(x[(ci*d.InH+iy)*d.InW+ix])
				y += t
				sabs += math.Abs(t)
			}
		}
	}
	if bias != nil {
		y += float64(bias[oc])
		sabs += math.Abs(float64(bias[oc]))
	}
	return y, sabs
}

// checkConvAt fails unless every output (oc, oy, ox) of got that pick selects is within
// (K+2)·u·(Σ|w·x| + |bias|) of the float64 convolution: Gemm's fast-path bound, which the
// direct kernel's blocked sums keep (each product and each addition of one output's sum is
// rounded once, and no path through the sum has more than K+2 roundings).
func checkConvAt(t *testing.T, what string, got, x, w, bias []float32, d ConvDims, pick func(oc, oy, ox int) bool) {
	t.Helper()
	oh, ow := d.Out()
	k := d.InC * d.KH * d.KW
	for oc := 0; oc < d.OutC; oc++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				if !pick(oc, oy, ox) {
					continue
				}
				want, sabs := refConvAt(x, w, bias, d, oc, oy, ox)
				g := float64(got[(oc*oh+oy)*ow+ox])
				if diff, tol := math.Abs(g-want), float64(k+2)*u*sabs; !(diff <= tol) {
					t.Fatalf("%s: y[%d,%d,%d] = %v, want %v (|diff| %.3g > bound %.3g)", what, oc, oy, ox, g, want, diff, tol)
				}
			}
		}
	}
}

// TestConvDirect: the direct 3x3 stride-1 convolution, on every direct kernel this CPU has,
// with 1 and 2 threads and several channel blocks, row groups and bands, is within the fast-path bound of the
// float64 convolution at every output: output rows narrower and wider than a tile and not a
// multiple of it, channel counts below, at and past a block, not multiples of the kernel's
// rows, asymmetric and wide padding, no padding. The thread count does not change a bit.
func TestConvDirect(t *testing.T) {
	dks := directKernels()
	if len(dks) == 0 {
		t.Skip("no direct convolution kernel on this CPU and build")
	}
	r := newRand(51)
	pad1 := func(d ConvDims) ConvDims { d.PadT, d.PadB, d.PadL, d.PadR = 1, 1, 1, 1; return d }
	cases := []ConvDims{
		pad1(ConvDims{InC: 3, InH: 9, InW: 70, OutC: 13, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 40, InH: 6, InW: 40, OutC: 14, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 1, InH: 1, InW: 1, OutC: 1, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 7, InH: 17, InW: 31, OutC: 30, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 65, InH: 4, InW: 33, OutC: 25, KH: 3, KW: 3}),
		pad1(ConvDims{InC: 12, InH: 3, InW: 32, OutC: 12, KH: 3, KW: 3}),
		{InC: 5, InH: 4, InW: 5, OutC: 25, KH: 3, KW: 3, PadT: 2, PadR: 2},
		{InC: 33, InH: 3, InW: 35, OutC: 12, KH: 3, KW: 3},
		{InC: 2, InH: 2, InW: 3, OutC: 3, KH: 3, KW: 3, PadT: 3, PadB: 2, PadL: 4, PadR: 3},
	}
	for _, d := range cases {
		oh, ow := d.Out()
		x := randSlice(r, d.InC*d.InH*d.InW, 1)
		w := randSlice(r, d.OutC*d.InC*9, 1)
		bias := randSlice(r, d.OutC, 1)
		for _, dk := range dks {
			// planDirect's plan, then channel blocks of 5, 1 and 32 with groups and bands of
			// 1 row, 2 rows in bands of 4, and 3 rows.
			plans := []directPlan{planDirect(d, dk.mr, dk.nr, d.InC, 32, 2), {5, 1, 1}, {1, 2, 4}, {32, 3, 3}}
			for _, pl := range plans {
				var first []float32
				for _, threads := range []int{1, 2} {
					for _, b := range [][]float32{bias, nil} {
						got := make([]float32, d.OutC*oh*ow)
						for i := range got {
							got[i] = float32(i) // every value must be overwritten
						}
						convDirect(dk, pl, threads, d, w, x, got, b)
						what := fmt.Sprintf("%+v %s %+v threads %d bias %v", d, dk.name, pl, threads, b != nil)
						checkConvAt(t, what, got, x, w, b, d, func(int, int, int) bool { return true })
						if b == nil {
							continue
						}
						if first == nil {
							first = got
						} else {
							sameBits(t, what+" vs 1 thread", got, first)
						}
					}
				}
			}
		}
	}
}

// TestConvDirectVAE: at the VAE's 3x3 shapes (d12: 512 channels at 32x32 and 64x64, 256 at
// 128x128, 128 at 256x256), the direct convolution on every direct kernel, 1 and 2 threads,
// is within the fast-path bound of the float64 convolution at the borders and at a sample of
// inner outputs, and Conv2d's fast path runs it.
func TestConvDirectVAE(t *testing.T) {
	dks := directKernels()
	if len(dks) == 0 {
		t.Skip("no direct convolution kernel on this CPU and build")
	}
	if testing.Short() {
		t.Skip("VAE shapes take seconds")
	}
	r := newRand(52)
	for _, sh := range [][2]int{{512, 32}, {512, 64}, {256, 128}, {128, 256}} {
		c, hw := sh[0], sh[1]
		d := ConvDims{InC: c, InH: hw, InW: hw, OutC: c, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}
		x := randSlice(r, c*hw*hw, 1)
		w := randSlice(r, c*c*9, 1)
		bias := randSlice(r, c, 1)
		pick := func(oc, oy, ox int) bool {
			if oc%37 != 5 && oc != c-1 {
				return false
			}
			edge := oy == 0 || oy == hw-1 || ox == 0 || ox == hw-1 || ox == 31 || ox == 32
			return edge || (oy*131+ox*7+oc)%97 == 0
		}
		fast := make([]float32, c*hw*hw)
		Conv2d(Opts{Fast: true, Threads: 2}, fast, x, w, bias, d)
		for _, dk := range dks {
			for _, threads := range []int{1, 2} {
				got := make([]float32, c*hw*hw)
				convDirect(dk, planDirect(d, dk.mr, dk.nr, d.InC, 32, threads), threads, d, w, x, got, bias)
				what := fmt.Sprintf("%d channels at %dx%d %s threads %d", c, hw, hw, dk.name, threads)
				checkConvAt(t, what, got, x, w, bias, d, pick)
				if dk.name == dks[0].name {
					sameBits(t, what+" vs Conv2d", fast, got)
				}
			}
		}
	}
}

// TestConv2dPortableUnchanged: Conv2d's portable path is still the im2col product on the
// portable kernel, bit for bit, for the 3x3 stride-1 shapes the fast path runs directly.
func TestConv2dPortableUnchanged(t *testing.T) {
	r := newRand(53)
	for _, d := range []ConvDims{
		{InC: 7, InH: 17, InW: 31, OutC: 30, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 5, InH: 4, InW: 5, OutC: 25, KH: 3, KW: 3, PadT: 2, PadR: 2},
	} {
		oh, ow := d.Out()
		x := randSlice(r, d.InC*d.InH*d.InW, 1)
		w := randSlice(r, d.OutC*d.InC*9, 1)
		want := make([]float32, d.OutC*oh*ow)
		convGemm(portableKernel, 1, d, w, x, want)
		for _, threads := range []int{1, 2} {
			got := make([]float32, len(want))
			Conv2d(Opts{Threads: threads}, got, x, w, nil, d)
			sameBits(t, fmt.Sprintf("%+v threads %d", d, threads), got, want)
		}
	}
}

// BenchmarkConv2dVAE runs the d12 VAE's 3x3 convolutions (channels at resolution: 512@32x32
// and 512@64x64 in the decoder's first blocks, 256@128x128, 128@256x256 at full resolution),
// one image, GOMAXPROCS threads, on the fast path's two algorithms side by side: path=im2col
// (the im2col product on the fast matrix kernel) and path=direct (the direct kernel; what
// Conv2d runs). GFLOP/s counts the multiply-adds as two; GFLOP/cpu-s divides by the process's
// CPU time instead of the wall time (per core, and blind to waits for a core on a busy machine).
func BenchmarkConv2dVAE(b *testing.B) {
	kn, ok := fastKernel()
	if !ok {
		b.Skip("no fast kernel on this CPU and build")
	}
	threads := runtime.GOMAXPROCS(0)
	for _, sh := range [][2]int{{512, 32}, {512, 64}, {256, 128}, {128, 256}} {
		c, hw := sh[0], sh[1]
		d := ConvDims{InC: c, InH: hw, InW: hw, OutC: c, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}
		r := newRand(32)
		x := randSlice(r, c*hw*hw, 1)
		w := randSlice(r, c*c*9, 1)
		y := make([]float32, c*hw*hw)
		flops := 2 * float64(c*hw*hw*c*9)
		paths := []struct {
			name string
			run  func()
		}{{"im2col", func() { convGemm(kn, threads, d, w, x, y) }}}
		if dk, ok := directKernelFor(kn); ok {
			paths = append(paths, struct {
				name string
				run  func()
			}{"direct", func() { convDirect(dk, planDirect(d, dk.mr, dk.nr, d.InC, 32, threads), threads, d, w, x, y, nil) }})
		}
		for _, p := range paths {
			b.Run(fmt.Sprintf("c=%d/hw=%d/path=%s", c, hw, p.name), func(b *testing.B) {
				cpu0, ok := processCPU()
				for i := 0; i < b.N; i++ {
					p.run()
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if cpu1, ok1 := processCPU(); ok && ok1 && cpu1 > cpu0 {
					b.ReportMetric(flops*float64(b.N)/(cpu1-cpu0).Seconds()/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
}
