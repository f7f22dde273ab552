// Package onnx exports a FlexTok model as ONNX graphs (opset 17, IR 8), built in Go from the
// same model.Config and weight names the pure-Go engine (sdk/engine) reads: there is no second
// model definition in Python and no hand-edited graph. Three graphs cover the pipeline:
//
//	Encoder          image [N, 3, H, W] in [-1, 1] → z [N, R, D], ids [N, R] int64
//	Decoder          x_t [N, C, h, w], t [N], ids [N, R] int64, k [N] int64 → v [N, C, h, w]
//	VAEDecoderGraph  latents [N, C, h, w] → image [N, 3, H, W] (unclamped)
//
// N is dynamic; spatial sizes are the model's (ModelSizes). In the decoder, k[i] = 0 asks for
// the unconditional velocity (the null condition in every register), so the conditional and
// unconditional passes of classifier-free guidance run as one batch.
//
// The transformer trunks, the heads and the time embedding are not written here: Recorder
// implements sdk/nn's op vocabulary by emitting ONNX nodes, and the graphs record sdk/nn's model
// definition, the one the engine runs eagerly (docs/nn.md), as are the patch and register
// embeddings and the null condition. What remains here is the graph plumbing around it:
// patchify, sequence assembly, FSQ, the VAE.
//
// Graph and its layer helpers (Linear, LayerNorm, SiLU, ...) build a ModelProto with the
// protobuf types of onnxpb, generated from the pinned onnx.proto. Save writes a graph with its
// weights in an external data file (any size); Marshal gives one message for graphs under
// MaxInline; ExportAll writes all three and a manifest (flextok export-onnx).
//
// The tests run every graph in ONNX Runtime against the Go engine, on the embedded default
// model, the official reference checkpoints and the config variants of tools/mkcheckpoint, run
// every op of the recorder against the engine's kernels (TestRecordedOps), and validate every
// graph with the official onnx checker (full_check).
package onnx
