package kernels

import (
	"math"
	"sync"
)

// The bf16 path of the matrix products (Opts.BF16): weights packed once as bfloat16 (half
// the memory of float32), the other operand rounded to bf16 as it is packed, every product
// exact in float32 (an 8-bit by 8-bit significand fits in 24 bits) and every sum float32.
//
// Each packed word holds two bf16 values of consecutive K indices (2q in the low half, 2q+1
// in the high half), which is the operand layout of VDPBF16PS. Where the CPU has AVX512_BF16
// (amd64, detected at run time) the kernel is VDPBF16PS; elsewhere ("emulated") the words
// are widened to float32 block by block and the float32 kernel of the same Opts.Fast choice
// runs over them, so the same weights and the same rounding of the activations give results
// within the same bound on every CPU, and the portable choice (Fast false) gives the same
// bits on every platform.
//
// Error: with a', b' the bf16 roundings of the operands (relative error <= 2^-8 each, round
// to nearest even), every element is within (K+2)·2^-24·Σ|a'b'| of Σ a'b' (the float32 sums;
// see Gemm), so within (2^-7 + 2^-16 + (K+2)·2^-24)·Σ|ab| of the exact Σ ab. The native
// kernel also flushes denormal inputs and results to zero (below 2^-126, far under that
// bound for the engine's values).

// RoundBF16 rounds f to the nearest bfloat16 (ties to even) and returns its 16 bits; a NaN
// stays a (quiet) NaN.
func RoundBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// BF16ToFloat32 widens the bfloat16 bits h to float32 (exactly).
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// bf16Kernel is the micro-kernel of a bf16 product: native (VDPBF16PS over word panels) or
// emulated (f32, a float32 kernel over widened panels).
type bf16Kernel struct {
	mr, nr int
	kc     int     // K values per block (even)
	macNs  float64 // estimated ns per multiply-add on one core
	name   string
	// native computes c[r*ldc+j] += Σ_{q<kq} lo·lo + hi·hi over word panels a (kq x mr) and
	// b (kq x nr); nil for an emulated kernel.
	native func(kq int, a, b []uint32, c []float32, ldc int)
	f32    microKernel // the float32 kernel an emulated path runs
}

// emulatedBF16 is the bf16 path over the float32 kernel f.
func emulatedBF16(f microKernel) bf16Kernel {
	return bf16Kernel{mr: f.mr, nr: f.nr, kc: f.kc &^ 1, macNs: f.macNs, name: "bf16-on-" + f.name, f32: f}
}

// bf16KernelFor returns the bf16 kernel of the path o selects: VDPBF16PS when o.Fast and
// the CPU has AVX512_BF16, else the emulation over kernelFor(o).
func bf16KernelFor(o Opts) bf16Kernel {
	if o.Fast {
		if k, ok := bf16Native(); ok {
			return k
		}
	}
	return emulatedBF16(kernelFor(o))
}

// BF16Path names the bf16 path Opts{Fast: true, BF16: true} uses on this build and CPU:
// "avx512bf16-12x32" (VDPBF16PS) or "bf16-on-" and a float32 kernel's name (emulated).
func BF16Path() string { return bf16KernelFor(Opts{Fast: true, BF16: true}).name }

// packWeightsBF16 packs w [n,k] into bk.nr-wide panels of word pairs: panel jp holds
// kq = ceil(k/2) rows of nr words, word (q, j) = bf16(w[c0+j, 2q]) | bf16(w[c0+j, 2q+1])<<16
// (zero beyond k and n).
func packWeightsBF16(bk bf16Kernel, threads int, w []float32, n, k int) []uint32 {
	nr, kq := bk.nr, (k+1)/2
	np := (n + nr - 1) / nr
	d := make([]uint32, np*nr*kq)
	parallelWork(threads, np, float64(nr*k)*nsElem, func(lo, hi int) {
		for jp := lo; jp < hi; jp++ {
			pan := d[jp*nr*kq : (jp+1)*nr*kq]
			for j := 0; j < min(nr, n-jp*nr); j++ {
				row := w[(jp*nr+j)*k : (jp*nr+j+1)*k]
				for q := 0; q < k/2; q++ {
					pan[q*nr+j] = uint32(RoundBF16(row[2*q])) | uint32(RoundBF16(row[2*q+1]))<<16
				}
				if k%2 == 1 {
					pan[(kq-1)*nr+j] = uint32(RoundBF16(row[k-1]))
				}
			}
		}
	})
	return d
}

// bf16Driver is gemmDriver for weights packed as bf16 words (bp, n x k).
func bf16Driver(bk *bf16Kernel, threads, m, n, k int, a []float32, lda int, bp []uint32, c []float32, ldc int) {
	mr, nr := bk.mr, bk.nr
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	if w := float64(m) * float64(n) * float64(k) * bk.macNs / minWork; w < float64(threads) {
		threads = max(1, int(w))
	}
	tr := min(threads, mp)
	tc := min(max(1, threads/tr), np)
	parallel(tr*tc, tr*tc, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			ri, ci := t/tc, t%tc
			bf16Block(bk, m, n, k, a, lda, bp, c, ldc, mp*ri/tr, mp*(ri+1)/tr, np*ci/tc, np*(ci+1)/tc)
		}
	})
}

// bf16Block computes row panels [ilo, ihi) x column panels [jlo, jhi) of C = A · Bᵀ with B
// packed by packWeightsBF16. A's panels are rounded to bf16 as they are packed.
func bf16Block(bk *bf16Kernel, m, n, k int, a []float32, lda int, bp []uint32, c []float32, ldc int, ilo, ihi, jlo, jhi int) {
	mr, nr := bk.mr, bk.nr
	for i := ilo * mr; i < min(ihi*mr, m); i++ {
		clear(c[i*ldc+jlo*nr : i*ldc+min(jhi*nr, n)])
	}
	if k == 0 || ilo >= ihi || jlo >= jhi {
		return
	}
	kq := (k + 1) / 2
	t := bf16Tile{mr: mr, nr: nr, m: m, n: n, c: c, ldc: ldc, tile: make([]float32, mr*nr)}
	if bk.native != nil {
		abuf := getWords((ihi - ilo) * mr * kq)
		defer putWords(abuf)
		ap := *abuf
		for ip := ilo; ip < ihi; ip++ {
			packA16(ap[(ip-ilo)*mr*kq:(ip-ilo+1)*mr*kq], a, lda, ip*mr, min(mr, m-ip*mr), mr, k)
		}
		kcq := bk.kc / 2
		for pq := 0; pq < kq; pq += kcq {
			qb := min(kcq, kq-pq)
			for jp := jlo; jp < jhi; jp++ {
				bpan := bp[jp*nr*kq+pq*nr : jp*nr*kq+(pq+qb)*nr]
				for ip := ilo; ip < ihi; ip++ {
					apan := ap[(ip-ilo)*mr*kq+pq*mr : (ip-ilo)*mr*kq+(pq+qb)*mr]
					dst, ld := t.begin(ip*mr, jp*nr)
					bk.native(qb, apan, bpan, dst, ld)
					t.end(ip*mr, jp*nr)
				}
			}
		}
		return
	}
	// Emulated: A packed as float32 (rounded to bf16, zero-padded to 2·kq), each block of B
	// widened once and run against every row panel.
	k2 := 2 * kq
	abuf := getBuf((ihi - ilo) * mr * k2)
	defer putBuf(abuf)
	ap := *abuf
	for ip := ilo; ip < ihi; ip++ {
		dst := ap[(ip-ilo)*mr*k2 : (ip-ilo+1)*mr*k2]
		packA(dst[:mr*k], a, lda, ip*mr, min(mr, m-ip*mr), mr, k)
		clear(dst[mr*k:])
		for i, v := range dst[:mr*k] {
			dst[i] = BF16ToFloat32(RoundBF16(v))
		}
	}
	bbuf := getBuf(bk.kc * nr)
	defer putBuf(bbuf)
	bx := *bbuf
	for pc := 0; pc < k2; pc += bk.kc {
		kb := min(bk.kc, k2-pc)
		for jp := jlo; jp < jhi; jp++ {
			src := bp[jp*nr*kq+pc/2*nr : jp*nr*kq+(pc+kb)/2*nr]
			for q := 0; q < kb/2; q++ {
				lo, hi := bx[2*q*nr:(2*q+1)*nr], bx[(2*q+1)*nr:(2*q+2)*nr]
				for j, wd := range src[q*nr : (q+1)*nr] {
					lo[j] = math.Float32frombits(wd << 16)
					hi[j] = math.Float32frombits(wd &^ 0xffff)
				}
			}
			for ip := ilo; ip < ihi; ip++ {
				apan := ap[(ip-ilo)*mr*k2+pc*mr : (ip-ilo)*mr*k2+(pc+kb)*mr]
				dst, ld := t.begin(ip*mr, jp*nr)
				bk.f32.run(kb, apan, bx[:kb*nr], dst, ld)
				t.end(ip*mr, jp*nr)
			}
		}
	}
}

// bf16Tile hands a kernel its mr x nr block of C: in place when the block is whole, else
// through a scratch tile that end copies back.
type bf16Tile struct {
	mr, nr, m, n int
	c            []float32
	ldc          int
	tile         []float32
}

func (t *bf16Tile) begin(r0, c0 int) ([]float32, int) {
	rows, cols := min(t.mr, t.m-r0), min(t.nr, t.n-c0)
	if rows == t.mr && cols == t.nr {
		return t.c[r0*t.ldc+c0 : r0*t.ldc+c0+(t.mr-1)*t.ldc+t.nr], t.ldc
	}
	clear(t.tile)
	for r := 0; r < rows; r++ {
		copy(t.tile[r*t.nr:r*t.nr+cols], t.c[(r0+r)*t.ldc+c0:])
	}
	return t.tile, t.nr
}

func (t *bf16Tile) end(r0, c0 int) {
	rows, cols := min(t.mr, t.m-r0), min(t.nr, t.n-c0)
	if rows == t.mr && cols == t.nr {
		return
	}
	for r := 0; r < rows; r++ {
		copy(t.c[(r0+r)*t.ldc+c0:(r0+r)*t.ldc+c0+cols], t.tile[r*t.nr:])
	}
}

// roundRowBF16Go writes dst[q] = bf16(src[2q]) | bf16(src[2q+1])<<16 for q < ceil(len(src)/2)
// (the high half of the last word zero when len(src) is odd).
func roundRowBF16Go(dst []uint32, src []float32) {
	for q := 0; q < len(src)/2; q++ {
		dst[q] = uint32(RoundBF16(src[2*q])) | uint32(RoundBF16(src[2*q+1]))<<16
	}
	if len(src)%2 == 1 {
		dst[len(src)/2] = uint32(RoundBF16(src[len(src)-1]))
	}
}

// packA16 writes rows [r0, r0+rows) of A rounded to bf16 into dst as word pairs,
// dst[q*mr+r] = bf16(A(r, 2q)) | bf16(A(r, 2q+1))<<16, zero beyond k and rows. Only the
// native kernel uses it, so rows are rounded with VCVTNE2PS2BF16, which also flushes
// denormal inputs to zero as VDPBF16PS does.
func packA16(dst []uint32, a []float32, lda, r0, rows, mr, k int) {
	kq := (k + 1) / 2
	rbuf := getWords(kq)
	defer putWords(rbuf)
	row := *rbuf
	for r := 0; r < rows; r++ {
		roundRowBF16(row, a[(r0+r)*lda:(r0+r)*lda+k])
		d := dst[r:]
		for q, w := range row {
			d[q*mr] = w
		}
	}
	for r := rows; r < mr; r++ {
		for q := 0; q < kq; q++ {
			dst[q*mr+r] = 0
		}
	}
}

// packA16Go is packA16 with RoundBF16 (denormals kept) for every path: weights at load.
func packA16Go(dst []uint32, a []float32, lda, r0, rows, mr, k int) {
	kq := (k + 1) / 2
	row := make([]uint32, kq)
	for r := 0; r < rows; r++ {
		roundRowBF16Go(row, a[(r0+r)*lda:(r0+r)*lda+k])
		for q, w := range row {
			dst[q*mr+r] = w
		}
	}
	for r := rows; r < mr; r++ {
		for q := 0; q < kq; q++ {
			dst[q*mr+r] = 0
		}
	}
}

var wordPool sync.Pool // of *[]uint32

func getWords(n int) *[]uint32 {
	if p, ok := wordPool.Get().(*[]uint32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]uint32, n)
	return &s
}

func putWords(p *[]uint32) { wordPool.Put(p) }
