//go:build !amd64 || purego

package kernels

// Without the assembly there is no vector exponential: the callers run every element on the
// portable path.

func expShiftVec(dst, src []float32, shift float32) int { return 0 }
func siluVec(dst, src []float32) int                    { return 0 }
func swigluVec(dst, a, b []float32) int                 { return 0 }

func softmaxVec(row []float32, n int, scale float32) bool { return false }

func hasAVX512Exp() bool { return false }
