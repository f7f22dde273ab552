//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// CPU features, as the CPU and the OS report them (x/sys/cpu checks that the OS saves the
// YMM/ZMM state).
var (
	hasAVX512  = cpu.X86.HasAVX512F
	hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasBF16    = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BF16
)

// kernel12x32AVX512 computes, for r < 12 and j < 32,
//
//	c[r*ldc+j] += Σ_{p<kc} a[p*12+r] * b[p*32+j]
//
// over packed panels a (kc x 12) and b (kc x 32), with 24 ZMM accumulators and VFMADD231PS.
// kc must be >= 1. The portable reference loop is
//
//	for r := 0; r < 12; r++ {
//		for j := 0; j < 32; j++ {
//			acc := c[r*ldc+j]
//			for p := 0; p < kc; p++ { acc += float32(a[p*12+r] * b[p*32+j]) }
//			c[r*ldc+j] = acc
//		}
//	}
//
// which this kernel does not reproduce bit for bit: it fuses each multiply-add and sums the
// block in registers before adding it to c (see Gemm for the bound).
//
//go:noescape
func kernel12x32AVX512(kc int, a, b, c *float32, ldc int)

// kernel6x16AVX2 is kernel12x32AVX512 for AVX2+FMA CPUs with 6 rows and 16 columns (12 YMM
// accumulators): c[r*ldc+j] += Σ_{p<kc} a[p*6+r] * b[p*16+j] for r < 6, j < 16; the same
// reference loop with 6 and 16 in place of 12 and 32, and the same caveat.
//
//go:noescape
func kernel6x16AVX2(kc int, a, b, c *float32, ldc int)

var avx512Kernel = microKernel{mr: 12, nr: 32, kc: 256, macNs: 0.02, name: "avx512-12x32", run: func(kc int, a, b, c []float32, ldc int) {
	// The driver passes full panels; these checks keep the assembly inside the slices.
	_ = a[kc*12-1]
	_ = b[kc*32-1]
	_ = c[11*ldc+31]
	kernel12x32AVX512(kc, &a[0], &b[0], &c[0], ldc)
}}

var avx2Kernel = microKernel{mr: 6, nr: 16, kc: 256, macNs: 0.04, name: "avx2-6x16", run: func(kc int, a, b, c []float32, ldc int) {
	_ = a[kc*6-1]
	_ = b[kc*16-1]
	_ = c[5*ldc+15]
	kernel6x16AVX2(kc, &a[0], &b[0], &c[0], ldc)
}}

// kernel12x32BF16 is kernel12x32AVX512 over bf16 pairs: for r < 12 and j < 32,
//
//	c[r*ldc+j] += Σ_{q<kc} lo(a[q*12+r])·lo(b[q*32+j]) + hi(a[q*12+r])·hi(b[q*32+j])
//
// where a and b hold uint32 words of two bf16 values each (lo: the low 16 bits, K index 2q;
// hi: K index 2q+1), with VDPBF16PS (AVX512_BF16): products of bf16 values are exact in
// float32, sums are rounded to nearest even, denormal inputs and outputs are flushed to zero.
// kc (the number of pairs) must be >= 1.
//
//go:noescape
func kernel12x32BF16(kc int, a, b *uint32, c *float32, ldc int)

var avx512BF16Kernel = bf16Kernel{mr: 12, nr: 32, kc: 512, macNs: 0.011, name: "avx512bf16-12x32", native: func(kq int, a, b []uint32, c []float32, ldc int) {
	_ = a[kq*12-1]
	_ = b[kq*32-1]
	_ = c[11*ldc+31]
	kernel12x32BF16(kq, &a[0], &b[0], &c[0], ldc)
}}

// cvtBF16x32 rounds n blocks of 32 float32 at src to bf16 with VCVTNE2PS2BF16 (to nearest
// even; denormals to zero), writing 16 words per block at dst: word q = bf16(src[2q]) |
// bf16(src[2q+1])<<16. n must be >= 1; AVX512_BF16 only.
//
//go:noescape
func cvtBF16x32(dst *uint32, src *float32, n int)

// roundRowBF16 writes the bf16 words of src to dst[:ceil(len(src)/2)] (roundRowBF16Go),
// with VCVTNE2PS2BF16 when the CPU has it.
func roundRowBF16(dst []uint32, src []float32) {
	n := len(src) / 32
	if hasBF16 && n > 0 {
		_ = dst[16*n-1]
		cvtBF16x32(&dst[0], &src[0], n)
	} else {
		n = 0
	}
	roundRowBF16Go(dst[16*n:], src[32*n:])
}

// pairRowsBF16x32 writes, for q < kq, dst[q*32+j] = bf16(src[2q*32+j]) |
// bf16(src[(2q+1)*32+j])<<16 for j < 32 (RoundBF16's rounding, for every value but a
// signalling NaN, which may become an infinity). kq must be >= 1; AVX-512F.
//
//go:noescape
func pairRowsBF16x32(dst *uint32, src *float32, kq int)

// pairRowsBF16 writes the word panel of a float32 panel of 2·kq rows of nr values:
// dst[q*nr+j] = bf16(src[2q*nr+j]) | bf16(src[(2q+1)*nr+j])<<16.
func pairRowsBF16(dst []uint32, src []float32, kq, nr int) {
	if nr == 32 && kq > 0 && hasAVX512 {
		_ = dst[kq*32-1]
		_ = src[2*kq*32-1]
		pairRowsBF16x32(&dst[0], &src[0], kq)
		return
	}
	pairRowsBF16Go(dst, src, kq, nr)
}

// bf16Native returns the VDPBF16PS kernel when the CPU has AVX512_BF16.
func bf16Native() (bf16Kernel, bool) {
	if hasBF16 {
		return avx512BF16Kernel, true
	}
	return bf16Kernel{}, false
}

// fastKernel returns the best kernel this CPU supports.
func fastKernel() (microKernel, bool) {
	switch {
	case hasAVX512:
		return avx512Kernel, true
	case hasAVX2FMA:
		return avx2Kernel, true
	}
	return microKernel{}, false
}

// fastKernels lists every fast kernel this CPU supports, best first (the tests check each).
func fastKernels() []microKernel {
	var ks []microKernel
	if hasAVX512 {
		ks = append(ks, avx512Kernel)
	}
	if hasAVX2FMA {
		ks = append(ks, avx2Kernel)
	}
	return ks
}

// conv3x3x12x32AVX512 is the direct 3x3 stride-1 convolution kernel (gen_amd64.go,
// convKernel): for r < 12 and j < 32,
//
//	c[r*ldc+j] += Σ_{ci<cn} Σ_{dy,dx<3} a[(ci*9+dy*3+dx)*12+r] * x[ci*ps+dy*rs+dx+j]
//
// where a is packA's layout of the weights of cn input channels and x points into a
// zero-padded copy of the input (row stride rs, plane stride ps, in elements). It sums each
// element's products with VFMADD231PS in (ci, dy, dx) order in a register and adds the sum to
// c. cn must be >= 1.
//
//go:noescape
func conv3x3x12x32AVX512(cn int, a, x, c *float32, ldc, rs, ps int)

// conv3x3x6x16AVX2 is conv3x3x12x32AVX512 for AVX2+FMA CPUs, with 6 and 16 in place of 12
// and 32.
//
//go:noescape
func conv3x3x6x16AVX2(cn int, a, x, c *float32, ldc, rs, ps int)

// conv3x3x12x32BF16 is conv3x3x12x32AVX512 over bf16 words: a and x hold uint32 words of two
// bf16 values of consecutive input channels (2cp in the low half, 2cp+1 in the high half), cn
// counts channel pairs and each tap is one VDPBF16PS (AVX512_BF16; see kernel12x32BF16).
//
//go:noescape
func conv3x3x12x32BF16(cn int, a, x *uint32, c *float32, ldc, rs, ps int)

// directEnd is the number of elements a direct kernel call reads from x: up to the last
// value of the nr+2 columns of the third row of the cn-th plane.
func directEnd(cn, nr, rs, ps int) int { return (cn-1)*ps + 2*rs + nr + 2 }

var avx512Direct = directKernel{mr: 12, nr: 32, name: "direct-avx512-12x32", run: func(cn int, a, x, c []float32, ldc, rs, ps int) {
	_ = a[cn*9*12-1]
	_ = x[directEnd(cn, 32, rs, ps)-1]
	_ = c[11*ldc+31]
	conv3x3x12x32AVX512(cn, &a[0], &x[0], &c[0], ldc, rs, ps)
}}

var avx2Direct = directKernel{mr: 6, nr: 16, name: "direct-avx2-6x16", run: func(cn int, a, x, c []float32, ldc, rs, ps int) {
	_ = a[cn*9*6-1]
	_ = x[directEnd(cn, 16, rs, ps)-1]
	_ = c[5*ldc+15]
	conv3x3x6x16AVX2(cn, &a[0], &x[0], &c[0], ldc, rs, ps)
}}

// directKernelFor returns the direct convolution kernel that matches the fast matrix kernel
// kn (same registers and tile), if there is one.
func directKernelFor(kn microKernel) (directKernel, bool) {
	switch kn.name {
	case avx512Kernel.name:
		return avx512Direct, true
	case avx2Kernel.name:
		return avx2Direct, true
	}
	return directKernel{}, false
}

// pairBF16x16 writes, for j < 16n, dst[j] = bf16(lo[j]) | bf16(hi[j])<<16 (RoundBF16's
// rounding, for every value but a signalling NaN, which may become an infinity). n must be
// >= 1; AVX-512F.
//
//go:noescape
func pairBF16x16(dst *uint32, lo, hi *float32, n int)

// pairBF16 writes dst[j] = bf16(lo[j]) | bf16(hi[j])<<16 for j < len(dst) (hi nil: zero high
// halves), with AVX-512 where the CPU has it.
func pairBF16(dst []uint32, lo, hi []float32) {
	n := len(dst) / 16
	if hasAVX512 && hi != nil && n > 0 {
		_ = lo[16*n-1]
		_ = hi[16*n-1]
		pairBF16x16(&dst[0], &lo[0], &hi[0], n)
	} else {
		n = 0
	}
	pairBF16Go(dst[16*n:], lo[16*n:], hiTail(hi, 16*n))
}

var avx512BF16Direct = directKernelBF16{mr: 12, nr: 32, name: "direct-avx512bf16-12x32", run: func(cn int, a, x []uint32, c []float32, ldc, rs, ps int) {
	_ = a[cn*9*12-1]
	_ = x[directEnd(cn, 32, rs, ps)-1]
	_ = c[11*ldc+31]
	conv3x3x12x32BF16(cn, &a[0], &x[0], &c[0], ldc, rs, ps)
}}

// directBF16For returns the direct convolution kernel of the bf16 kernel bk, if it has one
// (the native VDPBF16PS kernel).
func directBF16For(bk bf16Kernel) (directKernelBF16, bool) {
	if bk.native != nil && bk.name == avx512BF16Kernel.name {
		return avx512BF16Direct, true
	}
	return directKernelBF16{}, false
}
