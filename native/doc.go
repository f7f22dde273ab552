// Package native runs FlexTok in ONNX Runtime through cgo (github.com/yalue/onnxruntime_go),
// CUDA when present, the CPU otherwise.
//
// # Backend
//
// Backend (Load, LoadBytes, New) exports a checkpoint's encoder, decoder velocity and VAE
// decoder graphs (package native/onnx) and runs them in three sessions. It implements
// engine.Executor, as *engine.Engine does (code written against the interface, such as the CLI
// and sdk/service, runs on either), adds EncodeTensor, Bind and DecodeLatents, and makes the
// engine's payloads: the same model identity, preprocessing and options, through the engine's
// shared pipelines and input checks. It runs only the image size it was exported for
// (Options.ImageSize). Decoding drives sdk/flow's
// sampler (the same noise, CFG and APG code) with Conditioned, whose every Velocity call is one
// run over the conditional and unconditional items together. Options.FP16 runs the decoder's
// Linear layers in float16 (for GPUs).
//
// # Library
//
// ONNX Runtime is a shared library loaded at run time, once per process, by Init (NewSession
// calls it): Options.LibraryPath, else $FLEXTOK_ORT_LIB, else libonnxruntime.so through the
// dynamic loader's search path. `make setup` installs the CPU library of native/ORT_VERSION at
// .deps/ort/libonnxruntime.so; scripts/setup-ort-gpu.sh installs a CUDA build at .deps/ort-gpu.
// The library must be ONNX Runtime MinVersion or newer (the binding's C API version).
//
// # Sessions
//
// NewSession (a model file, with any external data files next to it) and NewSessionFromBytes
// (a serialised ModelProto) make a Session with fixed input and output names. Session.Run
// takes and returns Tensors (float32 or int64, row-major), is safe for concurrent use, and
// stops when its context is cancelled. Options.Provider picks the execution provider: cpu,
// cuda (an error when unavailable) or auto (CUDA, else the CPU with a logged reason).
//
// # Without cgo
//
// A CGO_ENABLED=0 build has the same API; every constructor returns ErrNoCgo. docs/native.md
// has the set-up, provider and threading details.
package native
