//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// hasAVX512 is true when the CPU and the OS support AVX-512F (the ZMM state is enabled).
var hasAVX512 = cpu.X86.HasAVX512F

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

var avx512Kernel = microKernel{mr: 12, nr: 32, kc: 256, name: "avx512-12x32", run: func(kc int, a, b, c []float32, ldc int) {
	// The driver passes full panels; these checks keep the assembly inside the slices.
	_ = a[kc*12-1]
	_ = b[kc*32-1]
	_ = c[11*ldc+31]
	kernel12x32AVX512(kc, &a[0], &b[0], &c[0], ldc)
}}

func fastKernel() (microKernel, bool) {
	if hasAVX512 {
		return avx512Kernel, true
	}
	return microKernel{}, false
}
