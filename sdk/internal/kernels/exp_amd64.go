//go:build amd64 && !purego

package kernels

import "math"

// The fast path's vector exponential (exp_amd64.s, AVX-512F). Each function takes n, a
// multiple of 16; the Go wrappers below do the multiple-of-16 prefix and report how many
// elements they did, and the callers finish the tail on the portable path.

//go:noescape
func expShiftAVX512(dst, src *float32, n int, shift float32)

//go:noescape
func siluAVX512(dst, src *float32, n int)

//go:noescape
func swigluAVX512(dst, a, b *float32, n int)

//go:noescape
func softmaxAVX512(row *float32, n int, scale float32)

// softmaxVec turns a row of raw scores whose first n keys are allowed (and the rest masked)
// into probabilities in place, the fast path of softmaxRow, and reports whether it did: only
// with AVX-512, 0 < n, and n rounded up to a multiple of 16 within the row. The scores from n
// to that multiple are set to −inf, whose exponential (the clamp's 1.2e-38) cannot change a
// float64 sum of at least 1; every masked key then gets exactly 0.
func softmaxVec(row []float32, n int, scale float32) bool {
	n16 := (n + 15) &^ 15
	if !hasAVX512 || n <= 0 || n16 > len(row) {
		return false
	}
	for j := n; j < n16; j++ {
		row[j] = float32(math.Inf(-1))
	}
	softmaxAVX512(&row[0], n16, scale)
	clear(row[n:])
	return true
}

// expShiftVec writes dst[i] = e^(src[i] − shift) for a prefix of the elements and returns its
// length (0 without AVX-512).
func expShiftVec(dst, src []float32, shift float32) int {
	n := min(len(dst), len(src)) &^ 15
	if !hasAVX512 || n == 0 {
		return 0
	}
	expShiftAVX512(&dst[0], &src[0], n, shift)
	return n
}

// siluVec writes dst[i] = silu(src[i]) for a prefix of the elements and returns its length.
func siluVec(dst, src []float32) int {
	n := min(len(dst), len(src)) &^ 15
	if !hasAVX512 || n == 0 {
		return 0
	}
	siluAVX512(&dst[0], &src[0], n)
	return n
}

// swigluVec writes dst[i] = silu(a[i])·b[i] for a prefix of the elements and returns its
// length.
func swigluVec(dst, a, b []float32) int {
	n := min(len(dst), len(a), len(b)) &^ 15
	if !hasAVX512 || n == 0 {
		return 0
	}
	swigluAVX512(&dst[0], &a[0], &b[0], n)
	return n
}

func hasAVX512Exp() bool { return hasAVX512 }
