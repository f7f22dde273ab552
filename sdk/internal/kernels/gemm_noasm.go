//go:build !amd64 || purego

package kernels

// fastKernel reports that this build has no fast matrix-product path.
func fastKernel() (microKernel, bool) { return microKernel{}, false }

// fastKernels lists no fast kernels.
func fastKernels() []microKernel { return nil }
