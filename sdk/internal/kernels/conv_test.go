package kernels

import (
	"fmt"
	"testing"
)

// TestConvGemm: the convolution's fused im2col product gives exactly the bits of Gemm on the
// im2col matrix, for every micro-kernel and thread count, with output rows wider and narrower
// than a panel (segments inside and across rows), strides, padding on every side and a
// partial last row panel.
func TestConvGemm(t *testing.T) {
	r := newRand(31)
	cases := []ConvDims{
		{InC: 3, InH: 9, InW: 70, OutC: 13, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 2, InH: 5, InW: 64, OutC: 12, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 2, InH: 6, InW: 33, OutC: 5, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1},
		{InC: 1, InH: 4, InW: 5, OutC: 3, KH: 3, KW: 3, PadT: 2, PadL: 2},
		{InC: 2, InH: 8, InW: 96, OutC: 25, KH: 1, KW: 3, PadL: 1, PadR: 1},
		{InC: 2, InH: 7, InW: 130, OutC: 7, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1}, // Downsample2D
		{InC: 2, InH: 5, InW: 131, OutC: 4, KH: 3, KW: 3, Stride: 2, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 1, InH: 7, InW: 200, OutC: 2, KH: 2, KW: 5, Stride: 3, PadL: 4, PadR: 2},
		{InC: 40, InH: 6, InW: 40, OutC: 14, KH: 3, KW: 3, PadT: 1, PadB: 1, PadL: 1, PadR: 1}, // K = 360 > kc
	}
	kns := append([]microKernel{portableKernel}, fastKernels()...)
	for _, d := range cases {
		x := randSlice(r, d.InC*d.InH*d.InW, 1)
		oh, ow := d.Out()
		np, k := oh*ow, d.InC*d.KH*d.KW
		w := randSlice(r, d.OutC*k, 1)
		cols := make([]float32, np*k)
		for p := 0; p < np; p++ {
			im2colPixel(cols[p*k:(p+1)*k], x, d, max(d.Stride, 1), p/ow, p%ow)
		}
		for _, kn := range kns {
			want := make([]float32, d.OutC*np)
			gemmWith(kn, 1, d.OutC, np, k, w, k, cols, k, NK, want, np)
			for _, threads := range []int{1, 2, 3} {
				got := make([]float32, len(want))
				for i := range got {
					got[i] = float32(i) // every value must be overwritten
				}
				convGemm(kn, threads, d, w, x, got)
				sameBits(t, fmt.Sprintf("%+v %s threads %d", d, kn.name, threads), got, want)
			}
		}
	}
}

// im2colPixel is the reference im2col: the InC·KH·KW input values under output pixel
// (oy, ox), in weight order, zero in the padding.
func im2colPixel(dst, x []float32, d ConvDims, s, oy, ox int) {
	i := 0
	for ci := 0; ci < d.InC; ci++ {
		plane := x[ci*d.InH*d.InW : (ci+1)*d.InH*d.InW]
		for dy := 0; dy < d.KH; dy++ {
			iy := oy*s - d.PadT + dy
			if iy < 0 || iy >= d.InH {
				clear(dst[i : i+d.KW])
				i += d.KW
				continue
			}
			row := plane[iy*d.InW : (iy+1)*d.InW]
			for dx := 0; dx < d.KW; dx++ {
				ix := ox*s - d.PadL + dx
				if ix < 0 || ix >= d.InW {
					dst[i] = 0
				} else {
					dst[i] = row[ix]
				}
				i++
			}
		}
	}
}
