// Package service is the one dispatcher every front end shares: Handle takes a request as
// msgpack bytes and returns a response as msgpack bytes. The GOOS=js module (wasm/js), the
// GOOS=wasip1 module (wasm/wasip1, run by conformance/wasmhost under wazero) and native Go
// callers all go through it, so the conformance suite can compare them byte for byte.
//
// # Overview
//
//	svc := service.New(service.Options{})
//	resp := svc.Handle(req) // never panics; errors are data
//
// Models and streams are named by integer handles, never pointers. Handles are positive,
// given out in increasing order from 1 (models and streams share one counter), never reused
// by a Service, and below 2^53 (exact in a JavaScript number). The numbers of open models and
// streams are bounded (Options.MaxModels, MaxStreams).
//
// # Executors
//
// A model handle serves any engine.Executor. "open" builds one from the request's checkpoint
// bytes with Options.Load: by default the Go engine (Options.Engine), which is what the wasm
// modules run; a Go server may pass a Loader that opens the checkpoint in ONNX Runtime
// (native.LoadBytes). The Service owns these and closes them on "close" or Close, once no
// request uses them. Add registers an executor the caller has already loaded (a
// native.Backend, an Engine with other options) and gives it a handle; the caller keeps it
// and closes it after the Service is done with it.
//
//	b, _ := native.Load("/path/to/model", native.Options{})
//	h, _ := svc.Add(b) // requests now name it by handle h
//
// A web model ("open_graphs") is decode-only: its decoder and VAE graphs run in the front
// end's graph host (Options.Graphs; in the browser onnxruntime-web, one call out per sampler
// step with the conditional and unconditional items batched), while payload checks, hints,
// noise, the sampler, guidance and streams run here (engine.GraphExecutor), so "decode" and
// the stream ops work on it unchanged. "encode" answers "unsupported".
//
// # Determinism
//
// With the default Load and the zero Options.Engine, the models run the engine's portable path:
// the same request gives the same image bits natively, as GOOS=js and as GOOS=wasip1. Only
// the timing fields (decode_ms, encode_ms, total_ms) differ between runs.
//
// # Requests
//
// A request is a msgpack map with string keys and nothing after it. Every request has
//
//	op   str                 the operation (below); required
//	id   uint   (optional)   echoed in the response, to match responses to requests
//
// and the fields of its op. A key that its op does not take, a duplicate key, or a value of
// the wrong msgpack type is refused with "bad_request". Types: str is a msgpack str, bin a
// msgpack bin (never str), uint a non-negative integer in any width, float any number,
// handle any integer.
//
//	op            fields
//	version       -
//	open          weights bin (model.safetensors bytes), config bin? (config.json bytes),
//	              vae_config bin? (vae/config.json bytes), name str? (the name payloads
//	              carry; default: the model's own, from its config or its digest);
//	              without weights: the front end's default model (Options.Default), if any
//	open_graphs   manifest bin (a web model package's manifest.json, docs/web-package.md),
//	              files str (the key under which the front end holds the package's files),
//	              provider str? ("auto" default, "wasm", "webgpu"), precision str? ("auto"
//	              default: fp16 decoder on WebGPU when the package has one; "fp32", "fp16"),
//	              name str?; needs Options.Graphs (the GOOS=js module's onnxruntime-web host)
//	close         handle
//	info          handle
//	decode        handle, payload bin (a whole token payload, docs/payload.md), options
//	encode        handle, image bin (PNG, JPEG, GIF, WebP, BMP or TIFF), k uint? (tokens to
//	              keep, 0..max; 0 or absent: all), filter str?, exif_orientation bool? (default
//	              true: the image is turned upright by its EXIF orientation, as browsers show it;
//	              false: pixels as stored, as the official demo reads them)
//	stream_open   handle, header bin (a stream header, docs/payload.md), options except k
//	stream_chunk  stream, chunk bin? (one stream chunk), decode bool? (default true),
//	              options except k
//	stream_close  stream
//	ar_open       handle (the tokenizer's model handle), config bin (the AR checkpoint's
//	              config.json), weights bin (its model.safetensors; docs/ar-checkpoint.md);
//	              neither: the front end's default AR model (Options.DefaultAR), if any
//	generate_open ar (an AR handle), class str|uint (a name of the config's "classes", or an
//	              id), n uint? (samples, 1..Options.MaxSamples; default 1), k uint? (tokens
//	              per sample, 1..the tokenizer's maximum; default: the maximum), seed uint?,
//	              sampling options
//	generate_next generation, max uint? (at most this many token positions, ≥ 1)
//	generate_close generation
//
// The model's identity (carried in every payload it makes and checked in every payload it
// decodes) is the content digest of its weights and config, never a file or directory name
// (docs/payload.md, "Model identity"); the name is descriptive. config and vae_config are
// needed when the safetensors header does not carry the config (see sdk/model).
//
// Decode options, all optional; a value absent from the request comes from the payload's
// hints, else from the model's (its config's decode_hints), else from the official defaults
// (Executor.DefaultDecodeOptions: 20 steps, guidance 7.5 with APG, seed 0):
//
//	k         uint        decode the first k tokens (0..count; 0 or absent: all)
//	steps     uint        Euler steps, 1..Options.MaxSteps (default limit 1000)
//	guidance  float       classifier-free guidance scale (finite, not 0; 1 turns guidance off)
//	apg       bool        adaptive projected guidance instead of plain CFG
//	seed      uint        noise seed (64 bits)
//	output    [str]       image forms to return, each at most once, from "rgba", "png",
//	                      "tensor" (default ["rgba"])
//
// For a stream, the options of stream_open apply to every decode of the stream and those of
// a stream_chunk to its own decode, overriding them. stream_chunk adds the chunk (checked:
// in order, no gap, nothing after the end) and then, unless decode is false, decodes every
// id received so far: a prefix, so the image sharpens as chunks arrive. Without "chunk" it
// only decodes again (e.g. with other options). A chunk that is refused leaves the stream
// as it was; a chunk that is added stays added even if its decode then fails.
//
// # Generation
//
// An AR model (sdk/ar) is opened beside a tokenizer handle: ar_open refuses one trained for
// another tokenizer (ar.Model.CheckTokenizer) with code "tokenizer_mismatch", and the
// payloads it generates carry the tokenizer's identity, image size and decode hints. "close"
// with an AR handle closes it and its generations; closing the tokenizer does not close it.
//
// Generation is pull-based, so that it works the same on every host (a native caller, the
// GOOS=js module whose handle returns a Promise, the synchronous GOOS=wasip1 export):
// generate_open starts ar.Generator.Generate on a goroutine and returns a generation handle
// and each sample's stream header (docs/payload.md); each generate_next waits for at least
// one more token position (every sample's id at that position), takes those already
// produced (at most max), and returns them as ids and as one stream chunk per sample, ready
// for a stream_open/stream_chunk of the tokenizer (or any receiver of the stream form); the
// response that completes the k tokens has done true and the whole payloads. Where no Go
// code runs between calls (wasip1, a busy js event loop) the goroutine runs while
// generate_next waits, so nothing is lost; where it does, tokens are produced ahead (at
// most k positions are held). A generate_next after done answers count 0, done true and
// the payloads again. generate_close (or closing the AR model) cancels a generation that is
// still running. A canceled HandleContext ends that generate_next with "canceled", not the
// generation. The ids depend only on the request (seed, sampling, model): with max 1 every
// response is determined, which is how the conformance suite compares hosts byte for byte.
// Open generations count towards Options.MaxStreams (separately from streams); n × k is at
// most Options.MaxGenerateTokens.
//
// Sampling options, all optional; an absent one comes from the AR config's sampling_hints,
// else plain sampling (no guidance, temperature 1, no filter):
//
//	cfg           float  classifier-free guidance scale, finite; > 1 guides (needs the
//	                     model's null class), ≤ 1 does not
//	guided_tokens uint   guide tokens 0..guided_tokens−1 only (0: all)
//	temperature   float  ≥ 0
//	top_k         uint   keep the top_k largest logits (0: off)
//	top_p         float  nucleus mass in (0, 1] (1: off)
//	greedy        bool   the arg-max instead of a draw
//
// # Responses
//
// A response is a msgpack map. Its first key is "id" when the request had one, then "ok"
// (bool). A failed request gives
//
//	{"ok": false, "error": {"code": str, "message": str, "detail": str, "field": str?}}
//
// where code is stable (below), message is a Go error message starting with the package
// path ("flextok/service: ...", "flextok/payload: ..."), detail the specifics, and field
// (payload errors only) the dotted path of the payload field at fault.
//
// A successful request gives "ok": true and, by op:
//
//	version       protocol uint (1), payload [uint, uint] (the payload format version)
//	open          handle uint, then the model info below
//	open_graphs   handle uint, the model info, provider str ("wasm" or "webgpu": what runs),
//	              precision str (the decoder graph's), fallback str (why not the provider
//	              asked for; "" when it is)
//	info          model info: model {name str, digest bin (32), fsq [uint], max_tokens uint},
//	              height uint, width uint (image size in pixels), codebook uint
//	close         streams uint (the model's streams closed with it)
//	decode        image result (below)
//	encode        payload bin (canonical whole payload), count uint (tokens), encode_ms float
//	stream_open   stream uint (the stream handle), count uint (tokens announced; 0 unknown)
//	stream_chunk  received uint (ids so far), done bool (the end arrived), decoded bool,
//	              and when decoded, the image result
//	stream_close  -
//	ar_open       ar uint (the AR handle), name str, classes [str] (nil if the config names
//	              none), num_classes uint, max_tokens uint, vocab uint, cfg bool (the model
//	              has the null class), params uint
//	generate_open generation uint, class uint (the id), n uint, k uint, headers [bin] (one
//	              stream header per sample)
//	generate_next start uint (position of the first id), count uint (positions in this
//	              response), ids [[uint]] (per sample), chunks [bin] (per sample; empty when
//	              count is 0), done bool, payloads [bin] (when done: the whole payloads)
//	generate_close -
//
// Image result: k uint, steps uint, guidance float, apg bool, seed uint (the options
// actually used), width uint, height uint, then the forms asked for: rgba bin (width×height×4
// bytes, rows top to bottom, alpha 255), png bin (a PNG file), tensor bin (the decoder's
// output [3, height, width] as little-endian float32, before clamping and quantisation to
// 8 bits), then decode_ms float (the engine's decode), for web models ("open_graphs") velocity_ms
// float, velocity_calls uint and vae_ms float (the time in the graph host's networks, within
// decode_ms: one velocity call per sampler step), and total_ms float (the whole op).
//
// # Error codes
//
//	bad_request       malformed request, unknown or misplaced field, bad option value
//	unknown_op        "op" names no operation
//	unknown_handle    no open model (handle), stream (stream), AR model (ar) or generation
//	                  (generation) has this number
//	too_many_handles  Options.MaxModels or MaxStreams reached; close something
//	bad_model         weights or config that do not load (AR checkpoints included)
//	bad_image         image bytes that do not decode, or over Options.MaxImagePixels
//	unsupported       a valid input this executor does not run (payloads of several frames)
//	canceled          HandleContext's context ended
//	tokenizer_mismatch  ar_open: the AR model was trained for another tokenizer
//	internal          a bug: a recovered panic or an unexpected error
//	bad_package       open_graphs: a manifest that does not parse, or another format/version
//	graph_mismatch    a graph that is not the manifest's model's (hash, or output shapes)
//	out_of_memory     the graph host ran out of memory creating or running a session
//	webgpu_unavailable  provider "webgpu" asked for where no WebGPU adapter exists
//
// and every payload code of sdk/payload, kept as it is: format, version, type, missing,
// duplicate, range, too_long, truncated, trailing, too_large, model_mismatch, stream.
package service
