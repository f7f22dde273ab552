// Package engine is the pure-Go executor of the FlexTok model: the VAE, the register encoder
// and the rectified-flow decoder, built from a loaded checkpoint (sdk/model) and run with the
// kernels of sdk/internal/kernels.
//
// # Overview
//
// The decoder implements flow.Denoiser, so sdk/flow drives it exactly as it drives any other
// executor (ONNX Runtime in native/).
//
// # Executors
//
// Executor is the interface of every executor: *Engine here, *native.Backend in ONNX Runtime.
// The CLI and sdk/service are written against it, so a program picks the executor at run time.
// Beside it are what the executors share so that they cannot drift apart: the encode and
// decode pipelines (EncodeImages, DecodePayloads: preprocessing, payloads, hints, identity
// checks, the sampler and its noise) and the checks of a decoder's inputs (CheckTokens for
// Bind, CheckItem for Velocity). An executor supplies only its networks.
//
// # Identity and hints
//
// Every payload an Engine makes carries the model's identity (model.Model.Identity: a content
// digest, never a path) and its decode hints (the config's decode_hints). Decode accepts
// payloads of the same digest (or, from earlier SDK versions, of the same file digest),
// whatever their name. Zero DecodeOptions Steps and Guidance take the payload's hints, else
// the model's, else the official 20 steps of APG 7.5; models.LoadDefault builds the default
// model's engine.
//
// # Determinism
//
// With the zero Options (portable kernels, every CPU) the engine gives the same bits natively,
// as GOOS=js and as GOOS=wasip1, whatever the number of threads; DefaultOptions adds the fast
// AVX-512 path for servers.
package engine
