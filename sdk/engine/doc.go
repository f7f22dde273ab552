// Package engine is the pure-Go executor of the FlexTok model: the VAE, the register encoder
// and the rectified-flow decoder, built from a loaded checkpoint (sdk/model) and run with the
// kernels of sdk/internal/kernels.
//
// # Overview
//
// The decoder implements flow.Denoiser, so sdk/flow drives it exactly as it drives any other
// executor (ONNX Runtime in native/).
//
// # Determinism
//
// With the zero Options the engine gives the same bits natively, as GOOS=js and as GOOS=wasip1.
package engine
