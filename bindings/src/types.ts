// The one TypeScript declaration of what crosses the wasm/JS boundary: the requests and
// responses of sdk/service (its package documentation is the reference) and the token payload
// (docs/payload.md). Field names are the wire names, snake_case included. Integers are JS
// numbers; a 64-bit value that does not fit a double exactly (only a seed can) is a bigint.

/** The operations of sdk/service, protocol 1. */
export type Op =
  | "version"
  | "open"
  | "open_graphs"
  | "close"
  | "info"
  | "decode"
  | "encode"
  | "stream_open"
  | "stream_chunk"
  | "stream_close"
  | "ar_open"
  | "generate_open"
  | "generate_next"
  | "generate_close";

/** An image form a decode can return. */
export type OutputForm = "rgba" | "png" | "tensor";

/** A 64-bit unsigned integer: a number when it is a safe integer, else a bigint. */
export type Uint64 = number | bigint;

/**
 * Decode options, all optional. A value absent from the request comes from the payload's
 * hints, else from the official defaults (20 steps, guidance 7.5 with APG, seed 0).
 */
export interface DecodeOptions {
  /** Decode the first k tokens (0..count; 0 or absent: all, as the CLI's `-k 0`). */
  k?: number;
  /**
   * Side in pixels of the square image to decode: any size the model runs at (0 or absent: the
   * size the payload was encoded at, as the CLI's `--size`).
   */
  size?: number;
  /** Euler steps (1..the service's MaxSteps, 1000 by default). */
  steps?: number;
  /** Classifier-free guidance scale, finite; 1 turns guidance off. */
  guidance?: number;
  /** Adaptive projected guidance instead of plain CFG. */
  apg?: boolean;
  /** Noise seed (64 bits). */
  seed?: Uint64;
  /** Image forms to return, each at most once (default ["rgba"]). */
  output?: OutputForm[];
}

/** The options of a stream: every decode option except k. */
export type StreamDecodeOptions = Omit<DecodeOptions, "k">;

interface RequestBase {
  /** Echoed in the response. */
  id?: number;
}

export interface VersionRequest extends RequestBase {
  op: "version";
}
export interface OpenRequest extends RequestBase {
  op: "open";
  /** model.safetensors bytes; absent: the module's embedded default model, if it has one. */
  weights?: Uint8Array;
  /** config.json bytes, when the safetensors header does not carry the config. */
  config?: Uint8Array;
  /** vae/config.json bytes. */
  vae_config?: Uint8Array;
  /** The name its payloads carry (default: the model's own); not part of its identity. */
  name?: string;
}
/** Where a web model's graphs run: "auto" is WebGPU when there is an adapter, else wasm. */
export type GraphProvider = "auto" | "wasm" | "webgpu";
/** The decoder graph's precision: "auto" is fp16 on WebGPU when the package has it. */
export type GraphPrecision = "auto" | "fp32" | "fp16";
export interface OpenGraphsRequest extends RequestBase {
  op: "open_graphs";
  /** The web model package's manifest.json bytes (docs/web-package.md). */
  manifest: Uint8Array;
  /** The key under which the module's thread holds the package's files (ortweb.ts's store). */
  files: string;
  provider?: GraphProvider;
  precision?: GraphPrecision;
  name?: string;
}
export interface CloseRequest extends RequestBase {
  op: "close";
  handle: number;
}
export interface InfoRequest extends RequestBase {
  op: "info";
  handle: number;
}
export interface DecodeRequest extends RequestBase, DecodeOptions {
  op: "decode";
  handle: number;
  /** A whole token payload. */
  payload: Uint8Array;
}
export interface EncodeRequest extends RequestBase {
  op: "encode";
  handle: number;
  /** PNG, JPEG, GIF, WebP, BMP or TIFF bytes. */
  image: Uint8Array;
  /** Tokens to keep (0..the model's maximum; 0 or absent: all). */
  k?: number;
  /** Side in pixels of the square the image is encoded at (0 or absent: the model's size). */
  size?: number;
  /** Resampling filter, e.g. "catmull-rom". */
  filter?: string;
  /** Turn the image upright by its EXIF orientation first (default true). */
  exif_orientation?: boolean;
}
export interface StreamOpenRequest extends RequestBase, StreamDecodeOptions {
  op: "stream_open";
  handle: number;
  /** A stream header. */
  header: Uint8Array;
}
export interface StreamChunkRequest extends RequestBase, StreamDecodeOptions {
  op: "stream_chunk";
  stream: number;
  /** One stream chunk; absent: only decode again. */
  chunk?: Uint8Array;
  /** Decode the ids received so far (default true). */
  decode?: boolean;
}
export interface StreamCloseRequest extends RequestBase {
  op: "stream_close";
  stream: number;
}

export interface AROpenRequest extends RequestBase {
  op: "ar_open";
  /** The tokenizer's model handle: the AR model must have been trained for it. */
  handle: number;
  /**
   * The AR checkpoint's config.json bytes (docs/ar-checkpoint.md). config and weights both
   * absent: the AR model the module embeds (flextok-wasip1, -tags arweights), if any.
   */
  config?: Uint8Array;
  /** The AR checkpoint's model.safetensors bytes. */
  weights?: Uint8Array;
}

/**
 * Sampling options of a generation. Absent ones come from the AR config's sampling_hints,
 * else plain sampling (no guidance, temperature 1, no filter).
 */
export interface SamplingOptions {
  /** Classifier-free guidance scale, finite; > 1 guides (needs the model's null class), ≤ 1: off. */
  cfg?: number;
  /** Guide only tokens 0..guided_tokens−1 (0: every token). */
  guided_tokens?: number;
  /** ≥ 0. */
  temperature?: number;
  /** Keep the top_k largest logits (0: off), ≥ 0. */
  top_k?: number;
  /** Nucleus mass in (0, 1] (1: off). */
  top_p?: number;
  /** Take the arg-max instead of drawing. */
  greedy?: boolean;
}

export interface GenerateOpenRequest extends RequestBase, SamplingOptions {
  op: "generate_open";
  /** The AR model's handle (ar_open). */
  ar: number;
  /** A class name of the AR config's "classes", or a class id. */
  class: string | number;
  /** Samples, all of the class (1..the service's MaxSamples, 64 by default; default 1). */
  n?: number;
  /** Tokens per sample (1..the tokenizer's maximum; default: the maximum). */
  k?: number;
  /** Seed of the draws: sample i draws from stream (seed, i). */
  seed?: Uint64;
}
export interface GenerateNextRequest extends RequestBase {
  op: "generate_next";
  generation: number;
  /** At most this many token positions (≥ 1; default: all that are ready, at least one). */
  max?: number;
}
export interface GenerateCloseRequest extends RequestBase {
  op: "generate_close";
  generation: number;
}

export type Request =
  | VersionRequest
  | OpenRequest
  | OpenGraphsRequest
  | CloseRequest
  | InfoRequest
  | DecodeRequest
  | EncodeRequest
  | StreamOpenRequest
  | StreamChunkRequest
  | StreamCloseRequest
  | AROpenRequest
  | GenerateOpenRequest
  | GenerateNextRequest
  | GenerateCloseRequest;

/** The stable error codes of sdk/service, payload codes included. */
export type ServiceErrorCode =
  | "bad_request"
  | "unknown_op"
  | "unknown_handle"
  | "too_many_handles"
  | "bad_model"
  | "bad_image"
  | "unsupported"
  | "canceled"
  | "internal"
  | "tokenizer_mismatch"
  // open_graphs and the web models it opens
  | "bad_package"
  | "graph_mismatch"
  | "out_of_memory"
  | "webgpu_unavailable"
  // sdk/payload
  | "format"
  | "version"
  | "type"
  | "missing"
  | "duplicate"
  | "range"
  | "too_long"
  | "truncated"
  | "trailing"
  | "too_large"
  | "model_mismatch"
  | "stream";

/** The error of a failed response. */
export interface ErrorInfo {
  code: ServiceErrorCode;
  /** A Go error message starting with the package path ("flextok/payload: ..."). */
  message: string;
  detail: string;
  /** Payload errors only: the dotted path of the payload field at fault. */
  field?: string;
}

interface ResponseBase {
  id?: number;
}
export interface ErrorResponse extends ResponseBase {
  ok: false;
  error: ErrorInfo;
}

/** A model's identity, as every payload it makes carries it. */
export interface ModelIdentity {
  name: string;
  /** SHA-256 of the weights (32 bytes). */
  digest: Uint8Array;
  /** FSQ levels; their product is the codebook size. */
  fsq: number[];
  max_tokens: number;
}

/** What info (and open) return. */
export interface ModelInfo {
  model: ModelIdentity;
  /** Image size in pixels. */
  height: number;
  width: number;
  /** Codebook size. */
  codebook: number;
}

/** The image result of decode and of a decoding stream_chunk. */
export interface ImageResult {
  /** The options actually used. */
  k: number;
  steps: number;
  guidance: number;
  apg: boolean;
  seed: Uint64;
  width: number;
  height: number;
  /** width×height×4 bytes, rows top to bottom, alpha 255. */
  rgba?: Uint8Array;
  /** A PNG file. */
  png?: Uint8Array;
  /** The decoder's output [3, height, width], little-endian float32, before clamping. */
  tensor?: Uint8Array;
  /** The engine's decode, in milliseconds. */
  decode_ms: number;
  /** Web models only: time in onnxruntime-web's velocity runs (one per step), within decode_ms. */
  velocity_ms?: number;
  velocity_calls?: number;
  /** Web models only: time in onnxruntime-web's VAE decoder run, within decode_ms. */
  vae_ms?: number;
  /** The whole op, in milliseconds. */
  total_ms: number;
}

export interface VersionResult {
  /** The protocol version (1). */
  protocol: number;
  /** The payload format version [major, minor]. */
  payload: [number, number];
}
export interface OpenResult extends ModelInfo {
  handle: number;
}
/** What open_graphs returns: the model info and where its graphs run. */
export interface OpenGraphsResult extends OpenResult {
  /** The provider that runs the graphs. */
  provider: "wasm" | "webgpu";
  /** The decoder graph's precision. */
  precision: "fp32" | "fp16";
  /** Why the provider is not the one asked for ("" when it is), e.g. "no WebGPU adapter". */
  fallback: string;
}
export interface CloseResult {
  /** The model's streams closed with it. */
  streams: number;
}
export interface EncodeResult {
  /** The canonical whole payload. */
  payload: Uint8Array;
  /** Tokens. */
  count: number;
  encode_ms: number;
}
export interface StreamOpenResult {
  stream: number;
  /** Tokens announced; 0 when unknown. */
  count: number;
}
export type StreamChunkResult =
  | { received: number; done: boolean; decoded: false }
  | ({ received: number; done: boolean; decoded: true } & ImageResult);
/** stream_close returns no fields. */
export type StreamCloseResult = Record<never, never>;

/** An open AR model (ar_open). */
export interface ARInfo {
  /** The config's name ("" if none). */
  name: string;
  /** Class names (null or empty when the config names none: use ids). */
  classes: string[] | null;
  num_classes: number;
  /** Largest k: the tokenizer's register count. */
  max_tokens: number;
  vocab: number;
  /** The model has the null class: cfg > 1 works. */
  cfg: boolean;
  params: number;
}
export interface AROpenResult extends ARInfo {
  ar: number;
}
export interface GenerateOpenResult {
  generation: number;
  /** The class id. */
  class: number;
  n: number;
  k: number;
  /** One stream header per sample (docs/payload.md): open a Stream on the tokenizer with it. */
  headers: Uint8Array[];
}
export interface GenerateNextResult {
  /** Position of the first id of this response. */
  start: number;
  /** Ids per sample in this response (0 only after done). */
  count: number;
  /** ids[i]: sample i's ids start..start+count−1. */
  ids: number[][];
  /** The same ids as one stream chunk per sample (empty when count is 0). */
  chunks: Uint8Array[];
  /** All k tokens produced. */
  done: boolean;
  /** When done: each sample's whole payload. */
  payloads: Uint8Array[];
}
/** generate_close returns no fields. */
export type GenerateCloseResult = Record<never, never>;

/** The result fields of a successful response, by op. */
export interface ResultOf {
  version: VersionResult;
  open: OpenResult;
  open_graphs: OpenGraphsResult;
  close: CloseResult;
  info: ModelInfo;
  decode: ImageResult;
  encode: EncodeResult;
  stream_open: StreamOpenResult;
  stream_chunk: StreamChunkResult;
  stream_close: StreamCloseResult;
  ar_open: AROpenResult;
  generate_open: GenerateOpenResult;
  generate_next: GenerateNextResult;
  generate_close: GenerateCloseResult;
}

/** A successful response to a request of op O. */
export type OkResponse<O extends Op> = ResponseBase & { ok: true } & ResultOf[O];

/** The response to a request of op O. */
export type Response<O extends Op = Op> = OkResponse<O> | ErrorResponse;

// ---------------------------------------------------------------------------------------------
// The token payload, format 1.0 (docs/payload.md).

export const TOKENS_FORMAT = "flextok/tokens";
export const STREAM_FORMAT = "flextok/stream";

/** `model`: the model that made the tokens. */
export interface PayloadModel {
  /** 1–256 bytes of UTF-8. */
  name: string;
  /** SHA-256 of the weights (32 bytes). */
  digest: Uint8Array;
  /** 1–16 FSQ levels ≥ 2; their product (≤ 2^24) is the codebook size. */
  fsq: number[];
  /** 1–65,536. */
  max_tokens: number;
}

/** `image`: the image the tokens stand for. */
export interface PayloadImage {
  height: number;
  width: number;
  /** The resampling filter used, e.g. "catmull-rom"; absent: none. */
  resize?: string;
  /** e.g. "center"; absent: none. */
  crop?: string;
  /** The original size [h, w]. */
  source?: [number, number];
}

/** `cond`: conditioning of a generated image (at least one field). */
export interface PayloadCond {
  class?: number;
  prompt?: string;
}

/** `hints`: decode suggestions. */
export interface PayloadHints {
  steps?: number;
  guidance?: number;
  apg?: boolean;
  seed?: Uint64;
}

/** A whole payload as it is on the wire (ids: little-endian bin). */
export interface TokenPayload {
  format: typeof TOKENS_FORMAT;
  /** [major, minor]: [1, 0]. */
  version: [number, number];
  model: PayloadModel;
  image: PayloadImage;
  /** Default 1. */
  frames?: number;
  /** Tokens per frame. */
  count: number;
  /** frames × count ids, 2 bytes each (codebook ≤ 65,536) else 4, little-endian. */
  ids: Uint8Array;
  cond?: PayloadCond;
  hints?: PayloadHints;
}

/** A stream header as it is on the wire: a whole payload's fields without ids. */
export interface StreamHeader {
  format: typeof STREAM_FORMAT;
  version: [number, number];
  model: PayloadModel;
  image: PayloadImage;
  frames?: number;
  /** Tokens per frame, if known (required when frames > 1). */
  count?: number;
  cond?: PayloadCond;
  hints?: PayloadHints;
}

/** A stream chunk as it is on the wire. */
export interface StreamChunk {
  /** Position of the chunk's first id in the whole id sequence. */
  start: number;
  /** At least one id, encoded as in the whole payload. */
  ids: Uint8Array;
  /** Present (true) only on the last chunk. */
  end?: true;
}
