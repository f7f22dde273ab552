package kernels

import "fmt"

// ConvWeights are Conv2d weights [OutC, K] (K = InC·KH·KW, PyTorch's order) packed once as
// bfloat16 for Conv2dPacked: the bf16 path of the VAE decoder's convolutions.
type ConvWeights struct {
	OutC, K int
	bk      *bf16Kernel
	a16     []uint32 // bk.mr-high panels of word pairs along K (packA16's layout)
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

// Bytes is the memory the packed weights hold.
func (cw *ConvWeights) Bytes() int { return 4 * len(cw.a16) }

// Path names the bf16 kernel the weights were packed for.
func (cw *ConvWeights) Path() string { return cw.bk.name }

// Conv2dPacked is Conv2d with weights from PackConvWeights: the input is rounded to bf16 as
// each im2col panel is packed, products and sums are float32 (bf16.go has the bound, with K =
// InC·KH·KW), then + bias in float32. Every convolution, 1x1 included, goes through im2col.
func Conv2dPacked(o Opts, y, x []float32, cw *ConvWeights, bias []float32, d ConvDims) {
	needDims("Conv2dPacked", d.InC, d.InH, d.InW, d.OutC, d.KH, d.KW, d.Stride, d.PadT, d.PadB, d.PadL, d.PadR)
	oh, ow := d.Out()
	if d.KH <= 0 || d.KW <= 0 || oh <= 0 || ow <= 0 {
		panic(fmt.Sprintf("flextok/kernels: Conv2dPacked: empty kernel or output in %+v", d))
	}
	if cw.OutC != d.OutC || cw.K != d.InC*d.KH*d.KW {
		panic(fmt.Sprintf("flextok/kernels: Conv2dPacked: weights [%d, %d] for %+v", cw.OutC, cw.K, d))
	}
	np := oh * ow
	need("Conv2dPacked", "x", x, d.InC*d.InH*d.InW)
	need("Conv2dPacked", "y", y, d.OutC*np)
	if bias != nil {
		need("Conv2dPacked", "bias", bias, d.OutC)
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
