// Package nn is the FlexTok model written once: a small vocabulary of ops at the granularity of
// the kernels (Ops), the transformer trunk and the time conditioning written against it
// (Trunk, TimeEmbedder), and the eager executor that runs them on the Go kernels (Eager).
//
// # Overview
//
// The model code calls Ops[T, L]: T is an executor's tensor, L its bound Linear layer. Two
// executors implement it. Eager (this package) runs each op at once on sdk/internal/kernels,
// with a per-pass arena so that a pass allocates nothing after its first block. The recorder
// in native/onnx emits each op as ONNX nodes, so the exported graphs are the same definition.
// Weights are declared by name (LinearSpec) and bound by each executor when it loads a model:
// Eager packs them for its matrix-product path, the recorder turns them into initializers.
//
// Batch layouts are data (Seq): the number of sequences, which rows are patches, the mask,
// per-sequence key counts. No model code loops over items, so a recorded graph keeps a dynamic
// batch and the eager executor runs every item through each Linear as one product.
//
// docs/nn.md is the guide: the ops, the two executors, how the model is written once, and how
// to add an op.
//
// # Determinism
//
// Eager's ops are the kernels' calls that the engine made before this package existed, in the
// same order on the same buffers' values, so the portable path keeps its bits (the engine's
// golden hashes pin it) and the fast path its speed. Fused ops (QK-norm, adaLN modulate, the
// gated residual, SwiGLU, masked attention) stay single ops for that reason.
package nn
