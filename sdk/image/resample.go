package image

import "math"

// This file is a transcription of Pillow's src/libImaging/Resample.c (ImagingResample for 8-bit
// images), so that with the same input pixels it gives the same output pixels bit for bit:
// separable convolution, horizontal pass first, an 8-bit intermediate, fixed-point coefficients
// with 22 fractional bits, and the filter stretched by the scale factor when shrinking
// (antialiasing). torchvision's Resize on a PIL image calls exactly this with the bilinear filter.
//
// Products are wrapped in explicit float64 conversions so that no compiler fuses them into FMA
// (Go may on arm64); the C code is compiled without FMA on x86-64.

// precisionBits is PRECISION_BITS: 32 - 8 bits of result - 2 bits of headroom.
const precisionBits = 32 - 8 - 2

type resampleFilter struct {
	name    string
	kernel  func(x float64) float64
	support float64
}

// bicubicKernel is Pillow's bicubic_filter with a = -0.5: the Catmull-Rom spline.
func bicubicKernel(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64(float64((a+2.0)*x)-(a+3.0))*x)*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64((x-5)*x)+8)*x)-4) * a
	}
	return 0
}

// bilinearKernel is Pillow's bilinear_filter (a triangle).
func bilinearKernel(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

var (
	filterCatmullRom = resampleFilter{FilterCatmullRom, bicubicKernel, 2}
	filterBilinear   = resampleFilter{FilterBilinear, bilinearKernel, 1}
)

// coeffs is Pillow's precompute_coeffs followed by normalize_coeffs_8bpc, for the box
// [0, inSize). For output index i the taps are bounds[2i] (first input index) and bounds[2i+1]
// (count), with weights kk[i*ksize : i*ksize+count].
func coeffs(inSize, outSize int, f resampleFilter) (bounds []int, kk []int32, ksize int) {
	// in0 = 0 and in1 = inSize are C floats; their difference is exact below 2^24.
	scale := float64(float32(inSize)) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := f.support * filterscale
	ksize = int(math.Ceil(support))*2 + 1
	bounds = make([]int, 2*outSize)
	kk = make([]int32, outSize*ksize)
	k := make([]float64, ksize)
	inv := 1 / filterscale
	for xx := 0; xx < outSize; xx++ {
		center := float64(float64(xx)+0.5) * scale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w := f.kernel(float64(float64(x+xmin)-center+0.5) * inv)
			k[x] = w
			ww += w
		}
		for x := 0; x < xmax; x++ {
			if ww != 0 {
				k[x] /= ww
			}
			// normalize_coeffs_8bpc: round half away from zero, C truncating conversion.
			v := float64(k[x] * (1 << precisionBits))
			if k[x] < 0 {
				kk[xx*ksize+x] = int32(-0.5 + v)
			} else {
				kk[xx*ksize+x] = int32(0.5 + v)
			}
		}
		bounds[2*xx], bounds[2*xx+1] = xmin, xmax
	}
	return bounds, kk, ksize
}

// clip8 is Pillow's clip8: the fixed-point sum shifted down and clamped to 0..255.
func clip8(ss int32) uint8 {
	v := ss >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// resampleCrop resizes the packed RGB image src (w×h) to rw×rh with filter f, exactly as
// Pillow's Image.resize((rw, rh), filter) would, and returns only the window of cw×ch pixels at
// (left, top) of the result, computing nothing outside it (each output pixel depends only on
// its own coefficients, so the window equals a crop of the full result).
func resampleCrop(src []uint8, w, h, rw, rh, left, top, cw, ch int, f resampleFilter) []uint8 {
	needH := rw != w
	needV := rh != h

	// Rows of the source (or of the horizontal pass) the vertical pass reads.
	var vb []int
	var vk []int32
	var vks int
	y0, y1 := top, top+ch
	if needV {
		vb, vk, vks = coeffs(h, rh, f)
		y0 = vb[2*top]
		y1 = vb[2*(top+ch-1)] + vb[2*(top+ch-1)+1]
	}

	// Horizontal pass (or a plain copy) of rows y0..y1, output columns left..left+cw.
	tmp := make([]uint8, (y1-y0)*cw*3)
	if needH {
		hb, hk, hks := coeffs(w, rw, f)
		for y := y0; y < y1; y++ {
			in := src[y*w*3 : (y+1)*w*3]
			out := tmp[(y-y0)*cw*3 : (y-y0+1)*cw*3]
			for xx := 0; xx < cw; xx++ {
				xmin, n := hb[2*(left+xx)], hb[2*(left+xx)+1]
				k := hk[(left+xx)*hks : (left+xx)*hks+n]
				p := in[xmin*3 : (xmin+n)*3]
				var s0, s1, s2 int32 = 1 << (precisionBits - 1), 1 << (precisionBits - 1), 1 << (precisionBits - 1)
				for x, kx := range k {
					s0 += int32(p[3*x]) * kx
					s1 += int32(p[3*x+1]) * kx
					s2 += int32(p[3*x+2]) * kx
				}
				out[3*xx], out[3*xx+1], out[3*xx+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
	} else {
		for y := y0; y < y1; y++ {
			copy(tmp[(y-y0)*cw*3:(y-y0+1)*cw*3], src[(y*w+left)*3:(y*w+left+cw)*3])
		}
	}
	if !needV {
		return tmp
	}

	// Vertical pass.
	out := make([]uint8, ch*cw*3)
	stride := cw * 3
	for yy := 0; yy < ch; yy++ {
		ymin, n := vb[2*(top+yy)]-y0, vb[2*(top+yy)+1]
		k := vk[(top+yy)*vks : (top+yy)*vks+n]
		row := out[yy*stride : (yy+1)*stride]
		for i := range row {
			var s int32 = 1 << (precisionBits - 1)
			for y, ky := range k {
				s += int32(tmp[(ymin+y)*stride+i]) * ky
			}
			row[i] = clip8(s)
		}
	}
	return out
}
