// Package ar is class-conditional autoregressive (AR) generation over FlexTok token ids
// (issue #12): the checkpoint reader (docs/ar-checkpoint.md: LlamaGen's GPT c2i names and
// layouts, 1-D rotary positions, config.json naming the tokenizer the model was trained for),
// the model written once against the op vocabulary of sdk/nn (Forward: RMSNorm pre-norm
// blocks, Rotary with grouped-query heads, AttendCached with a KV cache, SwiGLU, the head over
// the codebook), and the sampler (LlamaGen's generate.py semantics).
//
//	m, err := ar.Load("models/ar")                       // every loader rule of the spec
//	g, err := ar.NewGenerator(m, ar.Options{Tokenizer: eng}) // refuses a tokenizer it was not trained for
//	s := ar.DefaultSampling()
//	s.CFG, s.TopK = 3, 100
//	ps, err := g.Generate(ctx, ar.Request{Classes: []int{2, 2}, K: 32, Sampling: s, Seed: 1,
//		OnToken: func(n int, ids []uint32) error { ...; return nil }}) // tokens as produced
//
// Generate returns ordinary payloads of the tokenizer (Cond.Class set): `flextok decode`
// decodes them.
//
// # Determinism
//
// Sample i of a request draws from the stream (Seed, i) of the project's PCG-DXSM generator
// (sdk/flow's, bit-identical on every platform): one uniform in [0, 1) per token, the top 53
// bits of a draw times 2^-53. The softmax and the draw run in float64 with the SDK's portable
// exp (sdk/internal/fmath), so on the portable path (nn.Options{} — the kernels are
// bit-identical natively, with -tags purego, under GOOS=js and wasip1) the same seed gives the
// same ids everywhere (TestSeedGolden). The fast path's logits differ in the last bits, so its
// sampled ids may differ; its greedy ids equal the reference's (TestGreedy).
package ar
