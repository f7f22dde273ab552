//go:build !amd64 || purego

package kernels

// fastKernel reports that this build has no fast matrix-product path.
func fastKernel() (microKernel, bool) { return microKernel{}, false }

// fastKernels lists no fast kernels.
func fastKernels() []microKernel { return nil }

// bf16Native reports that this build has no native bf16 kernel.
func bf16Native() (bf16Kernel, bool) { return bf16Kernel{}, false }

// roundRowBF16 writes the bf16 words of src to dst (see roundRowBF16Go).
func roundRowBF16(dst []uint32, src []float32) { roundRowBF16Go(dst, src) }

// pairRowsBF16 writes the word panel of a float32 panel (see pairRowsBF16Go).
func pairRowsBF16(dst []uint32, src []float32, kq, nr int) { pairRowsBF16Go(dst, src, kq, nr) }

// directKernelFor reports that this build has no direct convolution kernel.
func directKernelFor(microKernel) (directKernel, bool) { return directKernel{}, false }

// pairBF16 writes dst[j] = bf16(lo[j]) | bf16(hi[j])<<16 (see pairBF16Go).
func pairBF16(dst []uint32, lo, hi []float32) { pairBF16Go(dst, lo, hi) }

// directBF16For reports that this build has no direct bf16 convolution kernel.
func directBF16For(bf16Kernel) (directKernelBF16, bool) { return directKernelBF16{}, false }
