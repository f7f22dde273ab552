package kernels

import "fmt"

// ConvWeights are Conv2d weights [OutC, K] (K = InC·KH·KW, PyTorch's order) packed once as
// bfloat16 for Conv2dPacked: the bf16 path of the VAE decoder's convolutions.
type ConvWeights struct {
	OutC, K int
	bk      *bf16Kernel
	// a16 holds bk.mr-high panels of word pairs along K (packA16's layout) or, for the direct
	// kernel (direct != nil), panels of pairs of input channels (packDirectBF16's layout).
	a16    []uint32
	direct *directBF16Weights
}

// directBF16Weights says that ConvWeights are packed for a direct bf16 kernel: the weights of
// a 3x3 stride-1 convolution with inC input channels.
type directBF16Weights struct {
	dk  directKernelBF16
	inC int
}

// directKernelBF16 is directKernel over bf16 words: a and x hold words of two bf16 values of
// consecutive input channels, cn counts channel pairs, and each pair of products is exact
// with float32 sums (VDPBF16PS).
type directKernelBF16 struct {
	mr, nr int
	name   string
	run    func(cn int, a, x []uint32, c []float32, ldc, rs, ps int)
}

// PackConvWeights rounds w [outC, k] to bfloat16 and packs it for the bf16 path o selects
// (BF16Path when o.Fast and the CPU has AVX512_BF16, else the emulation over o's float32
// kernel); o.BF16 is implied. The result does not alias w.
func PackConvWeights(o Opts, w []float32, outC, k int) *ConvWeights {
	needDims("PackConvWeights", outC, k)
	need("PackConvWeights", "w", w, outC*k)
	bk := bf16KernelFor(o)
	mr, kq := bk.mr, (k+1)/2
	mp := (outC + mr - 1) / mr
	cw := &ConvWeights{OutC: outC, K: k, bk: &bk, a16: make([]uint32, mp*mr*kq)}
	parallelWork(o.threads(), mp, float64(mr*k)*nsElem, func(lo, hi int) {
		for ip := lo; ip < hi; ip++ {
			packA16Go(cw.a16[ip*mr*kq:(ip+1)*mr*kq], w, k, ip*mr, min(mr, outC-ip*mr), mr, k)
		}
	})
	return cw
}

// PackConvWeightsFor is PackConvWeights for the convolution d (its channels, kernel size and
// stride; the image size and padding do not matter). Where the direct bf16 kernel runs d (3x3,
// stride 1, on the native VDPBF16PS path: see Conv2dPacked), the weights are packed for it,
// with pairs of input channels in each word; otherwise as PackConvWeights packs them. The
// rounding of every weight and the memory are the same either way.
func PackConvWeightsFor(o Opts, w []float32, d ConvDims) *ConvWeights {
	needDims("PackConvWeightsFor", d.InC, d.OutC, d.KH, d.KW, d.Stride)
	k := d.InC * d.KH * d.KW
	bk := bf16KernelFor(o)
	dk, ok := directBF16For(bk)
	if !ok || !DirectConv || d.KH != 3 || d.KW != 3 || max(d.Stride, 1) != 1 || d.InC == 0 {
		return PackConvWeights(o, w, d.OutC, k)
	}
	need("PackConvWeightsFor", "w", w, d.OutC*k)
	mr, kp := dk.mr, (d.InC+1)/2*9
	mp := (d.OutC + mr - 1) / mr
	cw := &ConvWeights{OutC: d.OutC, K: k, bk: &bk, a16: make([]uint32, mp*mr*kp), direct: &directBF16Weights{dk: dk, inC: d.InC}}
	parallelWork(o.threads(), mp, float64(mr*k)*nsElem, func(lo, hi int) {
		for ip := lo; ip < hi; ip++ {
			packDirectBF16(cw.a16[ip*mr*kp:(ip+1)*mr*kp], w, d.InC, ip*mr, min(mr, d.OutC-ip*mr), mr)
		}
	})
	return cw
}

// packDirectBF16 writes the panel of rows [r0, r0+rows) of the 3x3 weights w [outC, inC·9]
// for a direct bf16 kernel: dst[(cp*9+t)*mr+r] = bf16(w[r0+r, 2cp, t]) | bf16(w[r0+r, 2cp+1,
// t])<<16 for tap t, zero past inC and past rows.
func packDirectBF16(dst []uint32, w []float32, inC, r0, rows, mr int) {
	for r := 0; r < mr; r++ {
		for cp := 0; cp < (inC+1)/2; cp++ {
			for t := 0; t < 9; t++ {
				var lo, hi uint16
				if r < rows {
					row := w[(r0+r)*inC*9 : (r0+r+1)*inC*9]
					lo = RoundBF16(row[2*cp*9+t])
					if 2*cp+1 < inC {
						hi = RoundBF16(row[(2*cp+1)*9+t])
					}
				}
				dst[(cp*9+t)*mr+r] = uint32(lo) | uint32(hi)<<16
			}
		}
	}
}

// Bytes is the memory the packed weights hold.
func (cw *ConvWeights) Bytes() int { return 4 * len(cw.a16) }

// Path names the bf16 path the weights were packed for (BF16Path's names; weights packed for
// the direct kernel name the path of its VDPBF16PS kernel).
func (cw *ConvWeights) Path() string { return cw.bk.name }

// Conv2dPacked is Conv2d with weights from PackConvWeights or PackConvWeightsFor: the input is
// rounded to bf16 as each im2col panel is packed, products and sums are float32 (bf16.go has
// the bound, with K = InC·KH·KW), then + bias in float32. Every convolution, 1x1 included,
// goes through im2col, except with weights PackConvWeightsFor packed for the direct kernel
// (3x3 stride-1 convolutions on AVX512_BF16): there the input is rounded to bf16 as each band
// of its rows is copied with zero padding, pairs of channels to a word, and the direct kernel
// reads the rows in place (conv_direct.go). The rounding of every operand is the same on both,
// and so is the bound; the order of the sums differs.
func Conv2dPacked(o Opts, y, x []float32, cw *ConvWeights, bias []float32, d ConvDims) {
	needDims("Conv2dPacked", d.InC, d.InH, d.InW, d.OutC, d.KH, d.KW, d.Stride, d.PadT, d.PadB, d.PadL, d.PadR)
	oh, ow := d.Out()
	if d.KH <= 0 || d.KW <= 0 || oh <= 0 || ow <= 0 {
		panic(fmt.Sprintf("flextok/kernels: Conv2dPacked: empty kernel or output in %+v", d))
	}
	if cw.OutC != d.OutC || cw.K != d.InC*d.KH*d.KW {
		panic(fmt.Sprintf("flextok/kernels: Conv2dPacked: weights [%d, %d] for %+v", cw.OutC, cw.K, d))
	}
	if cw.direct != nil && (d.KH != 3 || d.KW != 3 || max(d.Stride, 1) != 1 || d.InC != cw.direct.inC) {
		panic(fmt.Sprintf("flextok/kernels: Conv2dPacked: weights packed for a 3x3 stride-1 convolution of %d channels, used for %+v", cw.direct.inC, d))
	}
	np := oh * ow
	need("Conv2dPacked", "x", x, d.InC*d.InH*d.InW)
	need("Conv2dPacked", "y", y, d.OutC*np)
	if bias != nil {
		need("Conv2dPacked", "bias", bias, d.OutC)
	}
	if cw.direct != nil {
		convDirectBF16(cw, planDirect(d, cw.direct.dk.mr, cw.direct.dk.nr, (d.InC+1)/2, 16, o.threads()), o.threads(), d, x, y, bias)
		return
	}
	convBF16(cw.bk, o.threads(), d, cw, x, y)
	if bias != nil {
		addChannelBias(o, y, bias, np)
	}
}

// pairRowsBF16Go writes dst[q*nr+j] = bf16(src[2q*nr+j]) | bf16(src[(2q+1)*nr+j])<<16 for
// q < kq, j < nr.
func pairRowsBF16Go(dst []uint32, src []float32, kq, nr int) {
	for q := 0; q < kq; q++ {
		lo, hi := src[2*q*nr:2*q*nr+nr], src[(2*q+1)*nr:(2*q+1)*nr+nr]
		d := dst[q*nr : q*nr+nr]
		for j := range d {
			d[j] = uint32(RoundBF16(lo[j])) | uint32(RoundBF16(hi[j]))<<16
		}
	}
}

// convBF16 is convGemm over bf16 weights: each thread packs one im2col panel at a time as
// float32 (packRowSegment), rounds it to bf16 (as words for the native kernel, in place for the
// emulated one) and runs every row panel over it, K block by K block.
func convBF16(bk *bf16Kernel, threads int, d ConvDims, cw *ConvWeights, x, y []float32) {
	m, k := d.OutC, d.InC*d.KH*d.KW
	oh, ow := d.Out()
	n := oh * ow
	mr, nr := bk.mr, bk.nr
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	kq := (k + 1) / 2
	k2 := 2 * kq
	var a32 []float32 // the emulated kernel's float32 A panels (widened weights)
	if bk.native == nil {
		abuf := getBuf(mp * mr * k2)
		defer putBuf(abuf)
		a32 = *abuf
		parallelWork(threads, mp, float64(mr*k)*nsElem, func(lo, hi int) {
			for i := lo * mr * kq; i < hi*mr*kq; i++ {
				q, r := i/mr%kq, i%mr
				ip := i / (mr * kq)
				w := cw.a16[i]
				a32[ip*mr*k2+2*q*mr+r] = BF16ToFloat32(uint16(w))
				a32[ip*mr*k2+(2*q+1)*mr+r] = BF16ToFloat32(uint16(w >> 16))
			}
		})
	}
	s := max(d.Stride, 1)
	parallelWork(threads, np, float64(m)*float64(k)*float64(nr)*bk.macNs, func(lo, hi int) {
		bbuf := getBuf(nr * k2)
		defer putBuf(bbuf)
		bp := *bbuf
		clear(bp[k*nr:]) // the pad row of an odd K
		var bw []uint32
		if bk.native != nil {
			wbuf := getWords(nr * kq)
			defer putWords(wbuf)
			bw = *wbuf
		}
		cb := make([]float32, mp*mr*nr)
		for jp := lo; jp < hi; jp++ {
			c0 := jp * nr
			cols := packPanel(bp, x, d, s, nr, k, c0, min(nr, n-c0), ow)
			clear(cb)
			if bk.native != nil {
				pairRowsBF16(bw, bp, kq, nr)
				kcq := bk.kc / 2
				for pq := 0; pq < kq; pq += kcq {
					qb := min(kcq, kq-pq)
					bpan := bw[pq*nr : (pq+qb)*nr]
					for ip := 0; ip < mp; ip++ {
						bk.native(qb, cw.a16[ip*mr*kq+pq*mr:ip*mr*kq+(pq+qb)*mr], bpan, cb[ip*mr*nr:(ip+1)*mr*nr], nr)
					}
				}
			} else {
				for i, v := range bp[:k*nr] {
					bp[i] = BF16ToFloat32(RoundBF16(v))
				}
				for pc := 0; pc < k2; pc += bk.kc {
					kb := min(bk.kc, k2-pc)
					bpan := bp[pc*nr : (pc+kb)*nr]
					for ip := 0; ip < mp; ip++ {
						bk.f32.run(kb, a32[ip*mr*k2+pc*mr:ip*mr*k2+(pc+kb)*mr], bpan, cb[ip*mr*nr:(ip+1)*mr*nr], nr)
					}
				}
			}
			for i := 0; i < m; i++ {
				copy(y[i*n+c0:i*n+c0+cols], cb[i*nr:i*nr+cols])
			}
		}
	})
}

// convDirectBF16 is convDirect over bf16 weights packed for the direct kernel, walked as pl
// says (pl.channels counts pairs of channels): y = conv(x, w) + bias (bias may be nil).
func convDirectBF16(cw *ConvWeights, pl directPlan, threads int, d ConvDims, x, y, bias []float32) {
	dk := cw.direct.dk
	pad := func(xp []uint32, rs, ps, r0, rows int) { padRowsBF16(xp, x, d, rs, ps, r0, rows) }
	directDriver(dk.mr, dk.nr, dk.run, pl, threads, d, (d.InC+1)/2, cw.a16, pad, getWords, putWords, y, bias)
}

// padRowsBF16 is padRows over bf16 words: rows [r0, r0+rows) of the zero-padded input of
// every pair of channels cp, word (r, c) = bf16(x[2cp] at (r, c)) | bf16(x[2cp+1] at (r, c))<<16
// (zero for a missing last channel), into xp: pair cp's rows at xp[cp*ps:], rs words each.
func padRowsBF16(xp []uint32, x []float32, d ConvDims, rs, ps, r0, rows int) {
	hw := d.InH * d.InW
	padBand(xp, (d.InC+1)/2, d, rs, ps, r0, rows, func(dst []uint32, cp, off int) {
		lo := x[2*cp*hw+off:]
		var hi []float32 // nil for a missing last channel
		if 2*cp+1 < d.InC {
			hi = x[(2*cp+1)*hw+off:]
		}
		pairBF16(dst, lo[:len(dst)], hi)
	})
}

// hiTail is hi[off:], or nil for a nil hi (a missing channel).
func hiTail(hi []float32, off int) []float32 {
	if hi == nil {
		return nil
	}
	return hi[off:]
}

// pairBF16Go writes dst[j] = bf16(lo[j]) | bf16(hi[j])<<16 for j < len(dst), with zero high
// halves when hi is nil.
func pairBF16Go(dst []uint32, lo, hi []float32) {
	lo = lo[:len(dst)]
	if hi == nil {
		for j, v := range lo {
			dst[j] = uint32(RoundBF16(v))
		}
		return
	}
	hi = hi[:len(dst)]
	for j, v := range lo {
		dst[j] = uint32(RoundBF16(v)) | uint32(RoundBF16(hi[j]))<<16
	}
}
