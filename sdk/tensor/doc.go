// Package tensor is the SDK's minimal dense float32 tensor and the comparison helpers that tests
// across the project share.
//
// A [Tensor] is a shape and a row-major (C order) []float32 with exactly prod(Shape) values. It
// has no methods that compute: kernels live elsewhere. The helpers here are the vocabulary of the
// two kinds of equality the project checks: exact ([SHA256], bit for bit) and bounded
// ([MaxAbsDiff], [RelErr], [NMSE]).
package tensor
