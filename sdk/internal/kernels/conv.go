package kernels

import "fmt"

// ConvDims describes a 2-D convolution of one image [InC, InH, InW] with PyTorch weights
// [OutC, InC, KH, KW] and optional bias [OutC]. Padding may be asymmetric: diffusers'
// Downsample2D pads (left 0, right 1, top 0, bottom 1) and then convolves 3x3 with stride 2
// and no padding, which is PadT=0, PadB=1, PadL=0, PadR=1 here.
type ConvDims struct {
	InC, InH, InW          int
	OutC, KH, KW           int
	Stride                 int // 0 means 1
	PadT, PadB, PadL, PadR int
}

// Out returns the output height and width.
func (d ConvDims) Out() (h, w int) {
	s := max(d.Stride, 1)
	return (d.InH+d.PadT+d.PadB-d.KH)/s + 1, (d.InW+d.PadL+d.PadR-d.KW)/s + 1
}

// Conv2d computes y [OutC, OutH, OutW] = conv(x [InC, InH, InW], w [OutC, InC·KH·KW]) + bias
// for one image (call it per image for a batch). It is a matrix product: y = w · cols, where
// cols[(ci·KH+dy)·KW+dx][pixel] is the input under the kernel tap (zero in the padding), so
// on the portable path every output is the float32 sum over ci, dy, dx in that order (PyTorch's
// weight order) of rounded products, then + bias[oc]. 1x1 stride-1 unpadded convolutions use
// x directly; others build cols in chunks of output pixels (im2col) to bound the scratch size.
func Conv2d(o Opts, y, x, w, bias []float32, d ConvDims) {
	needDims("Conv2d", d.InC, d.InH, d.InW, d.OutC, d.KH, d.KW, d.Stride, d.PadT, d.PadB, d.PadL, d.PadR)
	oh, ow := d.Out()
	if d.KH <= 0 || d.KW <= 0 || oh <= 0 || ow <= 0 {
		panic(fmt.Sprintf("flextok/kernels: Conv2d: empty kernel or output in %+v", d))
	}
	s := max(d.Stride, 1)
	k := d.InC * d.KH * d.KW
	hw := d.InH * d.InW
	np := oh * ow
	need("Conv2d", "x", x, d.InC*hw)
	need("Conv2d", "w", w, d.OutC*k)
	need("Conv2d", "y", y, d.OutC*np)
	if bias != nil {
		need("Conv2d", "bias", bias, d.OutC)
	}
	if d.KH == 1 && d.KW == 1 && s == 1 && d.PadT == 0 && d.PadB == 0 && d.PadL == 0 && d.PadR == 0 {
		Gemm(o, d.OutC, np, k, w, k, x, hw, KN, y, np)
	} else {
		// About 4 Mi floats (16 MiB) of cols per chunk, at least one row of output.
		chunk := max(ow, (4<<20)/max(k, 1))
		chunk = min(chunk, np)
		buf := getBuf(chunk * k)
		defer putBuf(buf)
		cols := *buf
		for p0 := 0; p0 < np; p0 += chunk {
			pn := min(chunk, np-p0)
			parallel(o.threads(), pn, func(lo, hi int) {
				for p := lo; p < hi; p++ {
					im2colPixel(cols[p*k:(p+1)*k], x, d, s, (p0+p)/ow, (p0+p)%ow)
				}
			})
			Gemm(o, d.OutC, pn, k, w, k, cols, k, NK, y[p0:], np)
		}
	}
	if bias != nil {
		parallel(o.threads(), d.OutC, func(lo, hi int) {
			for oc := lo; oc < hi; oc++ {
				b := bias[oc]
				r := y[oc*np : oc*np+np]
				for i := range r {
					r[i] += b
				}
			}
		})
	}
}

// im2colPixel writes the InC·KH·KW input values under output pixel (oy, ox) into dst.
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

// Upsample2x is nearest-neighbour 2x upsampling of x [c, h, w] into y [c, 2h, 2w].
func Upsample2x(o Opts, y, x []float32, c, h, w int) {
	needDims("Upsample2x", c, h, w)
	need("Upsample2x", "x", x, c*h*w)
	need("Upsample2x", "y", y, c*4*h*w)
	parallel(o.threads(), c*h, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			src := x[r*w : r*w+w]
			d0 := y[2*r*2*w : 2*r*2*w+2*w]
			for i, v := range src {
				d0[2*i], d0[2*i+1] = v, v
			}
			copy(y[(2*r+1)*2*w:(2*r+2)*2*w], d0)
		}
	})
}
