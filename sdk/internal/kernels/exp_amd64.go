//go:build amd64 && !purego

package kernels

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

// softmaxVec turns a row of raw scores, all keys allowed, into probabilities in place (the
// fast path of softmaxRow) and reports whether it did: only with AVX-512 and a row length
// that is a multiple of 16.
func softmaxVec(row []float32, scale float32) bool {
	if !hasAVX512 || len(row) == 0 || len(row)%16 != 0 {
		return false
	}
	softmaxAVX512(&row[0], len(row), scale)
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
