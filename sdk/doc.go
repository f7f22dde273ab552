// Package sdk is the pure-Go core of the FlexTok SDK. It holds no code itself; this file maps
// the packages below it.
//
// # Overview
//
//   - engine: the pure-Go executor: load a checkpoint, encode images to token payloads, decode
//     payloads (any prefix of their tokens) to images; and Executor, the interface that it and
//     the ONNX Runtime backend (package native, outside sdk/) implement, with the pipelines
//     and checks they share.
//   - image: image decoding, the official preprocessing to tensors and back to pixels and PNG.
//   - metrics: PSNR and SSIM of a reconstruction against its original.
//   - service: the request-bytes to response-bytes dispatcher that every front end (GOOS=js,
//     GOOS=wasip1, native) shares, over any engine.Executor.
//   - payload: the msgpack token payload and its stream form (docs/payload.md): ids, the
//     model identity they belong to, validation.
//   - fsq: finite scalar quantisation exactly as the official model (levels 8,8,8,5,5,5).
//   - tensor: a minimal float32 tensor and comparison helpers.
//   - flow: the rectified-flow sampler (Euler, CFG, APG, seeded noise).
//   - model: checkpoint configs, the weight-name table, loading, checks and the model's
//     identity (content digest, name and decode hints).
//   - internal/...: kernels, portable math, safetensors and Python-literal readers.
//
// The default model lives outside sdk/, in package models (models.LoadDefault), so that
// binaries that do not use it do not embed it.
//
// Everything under sdk/ builds for native targets and for GOOS=js and GOOS=wasip1 (GOARCH=wasm),
// and imports none of C, syscall/js, onnxruntime_go or wazero (TestImports checks this).
package sdk
