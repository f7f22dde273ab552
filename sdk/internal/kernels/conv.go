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
//
// Fast path (o.Fast with an AVX-512 or AVX2+FMA kernel): 3x3 stride-1 convolutions run on the
// direct kernel of conv_direct.go instead (no im2col), with fused multiply-adds summed in
// blocks of input channels; others run the im2col product on the fast matrix kernel. Either
// is within Gemm's fast-path bound with K = InC·KH·KW.
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
	kn := kernelFor(o)
	if dk, ok := useDirect(kn, d); ok {
		convDirect(dk, planDirect(d, dk.mr, dk.nr, d.InC, 32, o.threads()), o.threads(), d, w, x, y, bias)
		return
	}
	if d.KH == 1 && d.KW == 1 && s == 1 && d.PadT == 0 && d.PadB == 0 && d.PadL == 0 && d.PadR == 0 {
		Gemm(o, d.OutC, np, k, w, k, x, hw, KN, y, np)
	} else {
		convGemm(kn, o.threads(), d, w, x, y)
	}
	if bias != nil {
		addChannelBias(o, y, bias, np)
	}
}

// convGemm computes y [OutC, pixels] = w [OutC, K] · im2col(x) [K, pixels] with kn, the
// output split by column panels (nr pixels) across threads. The weights are packed once; each
// thread packs one panel of im2col(x) at a time straight into kn's B layout (a few hundred KB
// at most, so it stays in cache) and runs every row panel over it, K block by K block. Each
// element's sum is formed in the same order as Gemm's (kc blocks in K order), so the result is
// bit for bit that of Gemm on the im2col matrix.
func convGemm(kn microKernel, threads int, d ConvDims, w, x, y []float32) {
	m, k := d.OutC, d.InC*d.KH*d.KW
	oh, ow := d.Out()
	n := oh * ow
	mr, nr := kn.mr, kn.nr
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	abuf := getBuf(mp * mr * k)
	defer putBuf(abuf)
	ap := *abuf
	parallelWork(threads, mp, float64(mr*k)*nsElem, func(lo, hi int) {
		for ip := lo; ip < hi; ip++ {
			packA(ap[ip*mr*k:(ip+1)*mr*k], w, k, ip*mr, min(mr, m-ip*mr), mr, k)
		}
	})
	s := max(d.Stride, 1)
	parallelWork(threads, np, float64(m)*float64(k)*float64(nr)*kn.macNs, func(lo, hi int) {
		bbuf := getBuf(nr * k)
		defer putBuf(bbuf)
		bp := *bbuf
		// The panel's output block is computed in a contiguous buffer (row stride nr) and
		// copied out at the end: rows of y are a whole image apart, and writing tiles there
		// directly thrashes the caches and the TLB.
		cb := make([]float32, mp*mr*nr)
		for jp := lo; jp < hi; jp++ {
			c0 := jp * nr
			cols := packPanel(bp, x, d, s, nr, k, c0, min(nr, n-c0), ow)
			clear(cb)
			for pc := 0; pc < k; pc += kn.kc {
				kb := min(kn.kc, k-pc)
				bpan := bp[pc*nr : (pc+kb)*nr]
				for ip := 0; ip < mp; ip++ {
					kn.run(kb, ap[ip*mr*k+pc*mr:ip*mr*k+(pc+kb)*mr], bpan, cb[ip*mr*nr:(ip+1)*mr*nr], nr)
				}
			}
			if cols == 32 && nr == 32 {
				for i := 0; i < m; i++ {
					*(*[32]float32)(y[i*n+c0:]) = *(*[32]float32)(cb[i*nr:])
				}
			} else {
				for i := 0; i < m; i++ {
					copy(y[i*n+c0:i*n+c0+cols], cb[i*nr:i*nr+cols])
				}
			}
		}
	})
}

// packRowSegment writes columns [j0, j0+n) of a packed panel: the taps of the n consecutive
// pixels (oy, ox...ox+n-1) of one output row of a convolution with stride s. Pixel j0+j of a
// tap reads input column ix + j·s of one input row, zero where that falls in the padding.
func packRowSegment(dst, x []float32, d ConvDims, s, nr, j0, n, oy, ox int) {
	p := 0
	for ci := 0; ci < d.InC; ci++ {
		plane := x[ci*d.InH*d.InW : (ci+1)*d.InH*d.InW]
		for dy := 0; dy < d.KH; dy++ {
			iy := oy*s - d.PadT + dy
			for dx := 0; dx < d.KW; dx++ {
				row := dst[p*nr+j0 : p*nr+j0+n]
				p++
				if iy < 0 || iy >= d.InH {
					clear(row)
					continue
				}
				ix := ox*s - d.PadL + dx // input column of pixel j is ix + j·s
				// pixels j in [lo, hi) read inside the row: ix + j·s in [0, InW)
				lo := 0
				if ix < 0 {
					lo = (-ix + s - 1) / s
				}
				hi := min(n, (d.InW-ix+s-1)/s)
				if lo >= hi {
					clear(row)
					continue
				}
				clear(row[:lo])
				in := plane[iy*d.InW:]
				if s == 1 && lo == 0 && hi == 32 {
					// The common case (output rows a multiple of 32 wide): one fixed-size
					// copy, without the general path's two clears and slicing (still a
					// memmove call; measured 5% faster on BenchmarkConv2dVAE).
					*(*[32]float32)(row) = *(*[32]float32)(in[ix:])
					continue
				}
				if s == 1 {
					copy(row[lo:hi], in[ix+lo:ix+hi])
				} else {
					for j := lo; j < hi; j++ {
						row[j] = in[ix+j*s]
					}
				}
				clear(row[hi:])
			}
		}
	}
}

// Upsample2x is nearest-neighbour 2x upsampling of x [c, h, w] into y [c, 2h, 2w].
func Upsample2x(o Opts, y, x []float32, c, h, w int) {
	needDims("Upsample2x", c, h, w)
	need("Upsample2x", "x", x, c*h*w)
	need("Upsample2x", "y", y, c*4*h*w)
	parallelWork(o.threads(), c*h, float64(4*w)*nsElem, func(lo, hi int) {
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

// packPanel writes the im2col columns c0..c0+cols−1 (output pixels, ow per output row) into
// the panel bp [k, nr] and zeroes the columns past cols; it returns cols.
func packPanel(bp, x []float32, d ConvDims, s, nr, k, c0, cols, ow int) int {
	for j := 0; j < cols; {
		oy, ox := (c0+j)/ow, (c0+j)%ow
		seg := min(cols-j, ow-ox)
		packRowSegment(bp, x, d, s, nr, j, seg, oy, ox)
		j += seg
	}
	if cols < nr {
		for p := 0; p < k; p++ {
			clear(bp[p*nr+cols : p*nr+nr])
		}
	}
	return cols
}

// addChannelBias adds bias[c] to the np values of every channel c of y [len(bias), np].
func addChannelBias(o Opts, y, bias []float32, np int) {
	parallelWork(o.threads(), len(bias), float64(np)*nsElem, func(lo, hi int) {
		for oc := lo; oc < hi; oc++ {
			b := bias[oc]
			r := y[oc*np : oc*np+np]
			for i := range r {
				r[i] += b
			}
		}
	})
}
