// Package sdk is the pure-Go core of the FlexTok SDK. It holds no code itself; this file maps
// the packages below it.
//
// # Overview
//
//   - tokens: ordered token sequences (1..256 ids), prefixes, validation.
//   - fsq: finite scalar quantisation exactly as the official model (levels 8,8,8,5,5,5).
//   - payload: the msgpack token payload and its stream form (docs/payload.md).
//   - tensor: a minimal float32 tensor and comparison helpers.
//   - flow: the rectified-flow sampler (Euler, CFG, APG, seeded noise).
//   - model: checkpoint configs, the weight-name table, loading and checks.
//   - internal/...: kernels, portable math, safetensors and Python-literal readers.
//
// Everything under sdk/ builds for native targets and for GOOS=js and GOOS=wasip1 (GOARCH=wasm),
// and imports none of C, syscall/js, onnxruntime_go or wazero (TestImports checks this).
package sdk
