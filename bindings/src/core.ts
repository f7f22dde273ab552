// The FlexTok API over one transport: a handle(bytes) → Promise<bytes> function (the module in this
// thread) or a Transport (the module in a Worker, browser.ts). Models and streams are
// objects over the service's integer handles.

import { decodeResponse, decodeStreamHeader, encodeRequest, unwrap, type StreamHeaderView } from "./codec.js";
import { FlexTokError, asFlexTokError } from "./errors.js";
import { packageStore, type PackageFiles } from "./ortweb.js";
import type { FromWorker, OrtInit, ToWorker } from "./protocol.js";
import type {
  ARInfo,
  CloseResult,
  DecodeOptions,
  EncodeResult,
  GraphPrecision,
  GraphProvider,
  ImageResult,
  ModelIdentity,
  ModelInfo,
  Op,
  OkResponse,
  Request,
  StreamDecodeOptions,
  Uint64,
  VersionResult,
} from "./types.js";

/**
 * The wasm module's entry point: a request's msgpack bytes → the response's, or a Promise of
 * them (wasm/js's handle, which serves each request on a goroutine).
 */
export type HandleFunction = (request: Uint8Array) => Uint8Array | Promise<Uint8Array>;

/** Per-call options. */
export interface CallOptions {
  /** Aborting rejects the call with code "aborted" (see the transport for what else it does). */
  signal?: AbortSignal;
  /** Progress of this call (in addition to the FlexTok's onProgress). */
  onProgress?: (p: Progress) => void;
}

/** Request-level progress (the protocol has no per-step progress). */
export type Progress =
  | { type: "start"; op: Op; seq: number }
  | {
      type: "end";
      op: Op;
      seq: number;
      ok: boolean;
      /** Wall time of the call as the caller saw it (queueing and transfers included). */
      ms: number;
      /** From the response, when it has them. */
      decode_ms?: number;
      encode_ms?: number;
      total_ms?: number;
    }
  | {
      type: "chunk";
      stream: number;
      /** Ids received so far. */
      received: number;
      /** Ids announced by the header (frames × count), when known. */
      total?: number;
      done: boolean;
      decoded: boolean;
    }
  | {
      type: "download";
      url: string;
      loaded: number;
      /** From Content-Length, when known. */
      total?: number;
      /** The bytes come from the Cache API. */
      cached: boolean;
      /** Set once the whole body is read. */
      done: boolean;
    };

/**
 * How requests reach the module. `generation` changes whenever the module is restarted (a
 * worker terminated to abort a call, or one that died): handles of an older generation are
 * gone.
 */
export interface Transport {
  readonly generation: number;
  /**
   * Runs one request. gen: the generation the request's handles belong to (undefined when it
   * names none); if the module restarted since, the call fails with "closed".
   */
  call(request: Uint8Array, opts: { signal?: AbortSignal; gen?: number }): Promise<Uint8Array>;
  /** Stops the module; pending calls fail with "closed". */
  close(): void;
  /**
   * Hands a web model package's files to the module's thread under key (their buffers may be
   * transferred: the caller gives them up), for an "open_graphs" request that names the key.
   */
  putFiles?(key: string, files: PackageFiles, verified: boolean): void;
}

/**
 * A Transport over a handle in this thread. Calls go to the module as they come, several may
 * be in flight (sdk/service is safe for concurrent use); a running call is not stopped by an
 * abort (the module computes on this thread until the call awaits JavaScript or ends).
 */
export class DirectTransport implements Transport {
  readonly generation = 0;
  private handle: HandleFunction | null;
  private readonly onClose: (() => void) | undefined;

  constructor(handle: HandleFunction, onClose?: () => void) {
    this.handle = handle;
    this.onClose = onClose;
  }

  async call(request: Uint8Array, opts: { signal?: AbortSignal }): Promise<Uint8Array> {
    await Promise.resolve(); // let progress listeners and abort handlers run first
    if (!this.handle) throw new FlexTokError("closed", "flextok: the module is closed");
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    try {
      return await this.handle(request);
    } catch (e) {
      // handle never throws or rejects unless the Go program is gone or failed.
      throw asFlexTokError(e, "worker_died", "flextok: the wasm module failed");
    }
  }

  close(): void {
    if (!this.handle) return;
    this.handle = null;
    this.onClose?.();
  }

  putFiles(key: string, files: PackageFiles, verified: boolean): void {
    packageStore.set(key, { files: new Map(files), verified });
  }
}

export function abortedError(signal: AbortSignal): FlexTokError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? r.message : r === undefined ? "" : String(r);
  return new FlexTokError("aborted", why ? `flextok: aborted: ${why}` : "flextok: aborted", { cause: r });
}

function closedError(what: string, extra = ""): FlexTokError {
  return new FlexTokError("closed", `flextok: ${what} is closed${extra}`);
}

type Bytes = Uint8Array | ArrayBuffer;

function u8(b: Bytes): Uint8Array {
  return b instanceof Uint8Array ? b : new Uint8Array(b);
}

async function bytesOf(b: Bytes | Blob): Promise<Uint8Array> {
  if (typeof Blob !== "undefined" && b instanceof Blob) return new Uint8Array(await b.arrayBuffer());
  return u8(b as Bytes);
}

/** Options of openModel. */
export interface OpenOptions extends CallOptions {
  /** config.json (bytes or its text), when the safetensors header does not carry the config. */
  config?: Bytes | string;
  /** vae/config.json (bytes or its text). */
  vaeConfig?: Bytes | string;
  /**
   * The name payloads it makes carry (default: the model's own, from its config's "name", else
   * derived from its digest). Descriptive only: payloads match models by content digest.
   */
  name?: string;
}

/** Options of loadModel: openModel's, with URLs for the files. */
export interface LoadOptions extends CallOptions {
  configURL?: string | URL;
  vaeConfigURL?: string | URL;
  name?: string;
  /**
   * Cache API cache to keep the downloads in, keyed by URL (default "flextok-models"); false:
   * no caching. Skipped where `caches` is undefined (Node, insecure contexts), and when the
   * cache refuses the entry (quota): the model then loads from memory.
   */
  cache?: string | false;
  /** fetch options (credentials, integrity, ...); signal comes from CallOptions. */
  fetch?: Omit<RequestInit, "signal">;
}

export interface FlexTokOptions {
  /** Progress of every call. */
  onProgress?: (p: Progress) => void;
  /**
   * Where Model.openAR() without files gets the default AR model's files (initialize sets it:
   * the files the package ships in `ar/` next to its module). Absent: openAR() asks the module
   * for the AR model it embeds (flextok-wasip1, or a GOOS=js module built with -tags arweights).
   */
  defaultAR?: DefaultARLoader;
}

/** The files of an AR checkpoint (docs/ar-checkpoint.md). */
export interface ARFiles {
  /** config.json */
  config: Uint8Array;
  /** model.safetensors */
  weights: Uint8Array;
}

/** Gets the default AR model's files (a download in the browser, a file read in Node). */
export type DefaultARLoader = (opts: CallOptions & { emit: (p: Progress) => void }) => Promise<ARFiles>;

/** Options of Model.openAR without files. */
export interface OpenAROptions extends CallOptions {
  /**
   * URL of another AR checkpoint's model.safetensors to download (with configURL) instead of
   * the default AR model.
   */
  url?: string | URL;
  /** URL of its config.json (required with url). */
  configURL?: string | URL;
  /** Cache API cache for url's downloads, as LoadOptions.cache (default "flextok-models"). */
  cache?: string | false;
  /** fetch options for url's downloads. */
  fetch?: Omit<RequestInit, "signal">;
}

/**
 * The FlexTok module: open models, then decode and encode with them. Every method rejects with
 * a FlexTokError. close() releases everything; using a closed object fails with "closed".
 */
export class FlexTok {
  private readonly transport: Transport;
  private readonly onProgress: ((p: Progress) => void) | undefined;
  /** @internal */
  readonly defaultAR: DefaultARLoader | undefined;
  private seq = 0;
  private isClosed = false;
  /** @internal */
  readonly models = new Set<Model>();

  constructor(transport: Transport | HandleFunction, opts: FlexTokOptions = {}) {
    this.transport = typeof transport === "function" ? new DirectTransport(transport) : transport;
    this.onProgress = opts.onProgress;
    this.defaultAR = opts.defaultAR;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** @internal Emits progress to the FlexTok's and the call's listeners. */
  emit(p: Progress, opts?: CallOptions): void {
    for (const f of [this.onProgress, opts?.onProgress]) {
      if (!f) continue;
      try {
        f(p);
      } catch {
        // a listener's error is not the call's
      }
    }
  }

  /** @internal The transport's generation now. */
  get generation(): number {
    return this.transport.generation;
  }

  /**
   * Sends one request and returns its successful response, or throws its error. The low-level
   * way in; the methods below are built on it. gen: see Transport.call.
   */
  async request<O extends Op>(req: Request & { op: O }, opts: CallOptions & { gen?: number } = {}): Promise<OkResponse<O>> {
    if (this.isClosed) throw closedError("FlexTok");
    const seq = ++this.seq;
    this.emit({ type: "start", op: req.op, seq }, opts);
    const t0 = performance.now();
    let ok = false;
    let timing: { decode_ms?: number; encode_ms?: number; total_ms?: number } = {};
    try {
      const bytes = encodeRequest(req);
      const call: { signal?: AbortSignal; gen?: number } = {};
      if (opts.signal) call.signal = opts.signal;
      if (opts.gen !== undefined) call.gen = opts.gen;
      const raw = decodeResponse(await this.transport.call(bytes, call));
      if (raw.ok) {
        for (const k of ["decode_ms", "encode_ms", "total_ms"] as const) {
          const v = raw[k];
          if (typeof v === "number") timing = { ...timing, [k]: v };
        }
      }
      const r = unwrap(raw, req.op);
      ok = true;
      return r;
    } catch (e) {
      throw asFlexTokError(e, "internal", "flextok");
    } finally {
      this.emit({ type: "end", op: req.op, seq, ok, ms: performance.now() - t0, ...timing }, opts);
    }
  }

  /** The protocol and payload versions the module speaks. */
  async version(opts: CallOptions = {}): Promise<VersionResult> {
    const r = await this.request({ op: "version" }, opts);
    return { protocol: r.protocol, payload: r.payload };
  }

  /**
   * Opens a model from its files' bytes: model.safetensors, and config.json and
   * vae/config.json unless the safetensors header carries the config.
   */
  async openModel(weights: Bytes, opts: OpenOptions = {}): Promise<Model> {
    return this.open(u8(weights), opts);
  }

  /**
   * Opens the model embedded in the WebAssembly module (the SDK's default model); fails with
   * "bad_request" if the module embeds none.
   */
  async openDefault(opts: CallOptions & { name?: string } = {}): Promise<Model> {
    return this.open(undefined, opts);
  }

  /**
   * Opens a web model package (docs/web-package.md: fetchModelPackage downloads one) whose
   * networks run in onnxruntime-web in the module's thread, WebGPU where an adapter exists and
   * wasm otherwise, while payloads, the sampler and streams stay in the module: decode and
   * openStream work on it as on any model; encode answers "unsupported". The files' buffers
   * are transferred to the worker (the package is given up). Errors: "bad_package",
   * "graph_mismatch" (a file of another model, or a partial one), "webgpu_unavailable"
   * (provider "webgpu" without an adapter; "auto" falls back to wasm and says why in
   * WebModel.fallback), "out_of_memory", "unsupported" (onnxruntime-web did not load).
   */
  async openWebModel(pkg: WebModelPackage, opts: OpenWebOptions = {}): Promise<WebModel> {
    const put = this.transport.putFiles?.bind(this.transport);
    if (!put) throw new FlexTokError("unsupported", "flextok: this transport cannot hand files to the module (openWebModel needs initialize's worker or DirectTransport)");
    const files = pkg.files instanceof Map ? pkg.files : new Map(Object.entries(pkg.files));
    const key = `pkg-${++webKeys}`;
    const gen = this.transport.generation;
    const verified = pkg.verified ?? ("downloadedBytes" in pkg && "cachedBytes" in pkg);
    const manifest = pkg.manifest instanceof Uint8Array ? pkg.manifest : new TextEncoder().encode(JSON.stringify(pkg.manifest));
    put(key, files, verified);
    const req: Request = { op: "open_graphs", manifest, files: key };
    if (opts.provider !== undefined) req.provider = opts.provider;
    if (opts.precision !== undefined) req.precision = opts.precision;
    if (opts.name !== undefined) req.name = opts.name;
    let r: OkResponse<"open_graphs">;
    try {
      r = await this.request(req, { ...opts, gen });
    } finally {
      packageStore.delete(key); // DirectTransport: never leave the files behind
    }
    const info: ModelInfo = { model: r.model, height: r.height, width: r.width, codebook: r.codebook };
    const m = new WebModel(this, r.handle, gen, info, { provider: r.provider, precision: r.precision, fallback: r.fallback });
    if (this.isClosed || gen !== this.transport.generation) {
      m.markClosed(" (the module restarted)");
      throw closedError("FlexTok", " (the module restarted while the model opened)");
    }
    this.models.add(m);
    return m;
  }

  private async open(weights: Uint8Array | undefined, opts: OpenOptions): Promise<Model> {
    const enc = new TextEncoder();
    const file = (b: Bytes | string | undefined): Uint8Array | undefined =>
      b === undefined ? undefined : typeof b === "string" ? enc.encode(b) : u8(b);
    const req: Request = { op: "open" };
    if (weights) req.weights = weights;
    const config = file(opts.config);
    if (config) req.config = config;
    const vae = file(opts.vaeConfig);
    if (vae) req.vae_config = vae;
    if (opts.name !== undefined) req.name = opts.name;
    const gen = this.transport.generation;
    const r = await this.request(req, opts);
    const info: ModelInfo = { model: r.model, height: r.height, width: r.width, codebook: r.codebook };
    const m = new Model(this, r.handle, gen, info);
    if (this.isClosed || gen !== this.transport.generation) {
      m.markClosed(" (the module restarted)");
      throw closedError("FlexTok", " (the module restarted while the model opened)");
    }
    this.models.add(m);
    return m;
  }

  /**
   * Downloads a model's files (with the Cache API where there is one) and opens it. Progress:
   * "download" events with bytes loaded and Content-Length, from the network or the cache.
   */
  async loadModel(url: string | URL, opts: LoadOptions = {}): Promise<Model> {
    const get = (u: string | URL | undefined): Promise<Uint8Array | undefined> =>
      u === undefined ? Promise.resolve(undefined) : fetchCached(u, opts, (p) => this.emit(p, opts));
    const [weights, config, vaeConfig] = await Promise.all([get(url), get(opts.configURL), get(opts.vaeConfigURL)]);
    const o: OpenOptions = {};
    if (config) o.config = config;
    if (vaeConfig) o.vaeConfig = vaeConfig;
    if (opts.name !== undefined) o.name = opts.name;
    if (opts.signal) o.signal = opts.signal;
    if (opts.onProgress) o.onProgress = opts.onProgress;
    return this.openModel(weights!, o);
  }

  /** Closes every model and stops the module (a worker is terminated). Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const m of this.models) m.markClosed();
    this.models.clear();
    this.transport.close();
  }
}

/** Options of Model.encode. */
export interface EncodeOptions extends CallOptions {
  /** Tokens to keep (0 or absent: all, as the CLI's `-k 0`). */
  k?: number;
  /**
   * Side in pixels of the square the image is encoded at, any size the model runs at (0 or
   * absent: the model's size, as the CLI's `--size`); the payload records it and decodes at it.
   */
  size?: number;
  /** Resampling filter, e.g. "catmull-rom". */
  filter?: string;
  /**
   * Turn the image upright by its EXIF orientation first, as browsers show it (default true;
   * false encodes the pixels as stored, as the official demo's PIL path does).
   */
  exifOrientation?: boolean;
}

/** What Stream.push returns. */
export interface PushResult {
  /** Ids received so far. */
  received: number;
  /** The end arrived. */
  done: boolean;
  /** The image of the ids received so far, unless decode was false. */
  image?: ImageResult;
}

function decodeFields<T extends DecodeOptions>(o: T, withK: boolean): DecodeOptions {
  const out: DecodeOptions = {};
  if (withK && o.k !== undefined) out.k = o.k;
  if (o.size !== undefined) out.size = o.size;
  if (o.steps !== undefined) out.steps = o.steps;
  if (o.guidance !== undefined) out.guidance = o.guidance;
  if (o.apg !== undefined) out.apg = o.apg;
  if (o.seed !== undefined) out.seed = o.seed;
  if (o.output !== undefined) out.output = o.output;
  return out;
}

function imageOf(r: ImageResult): ImageResult {
  const out: ImageResult = {
    k: r.k,
    steps: r.steps,
    guidance: r.guidance,
    apg: r.apg,
    seed: r.seed,
    width: r.width,
    height: r.height,
    decode_ms: r.decode_ms,
    total_ms: r.total_ms,
  };
  if (r.rgba) out.rgba = r.rgba;
  if (r.png) out.png = r.png;
  if (r.tensor) out.tensor = r.tensor;
  if (r.velocity_calls) {
    out.velocity_ms = r.velocity_ms ?? 0;
    out.velocity_calls = r.velocity_calls;
    out.vae_ms = r.vae_ms ?? 0;
  }
  return out;
}

/** A web model package as openWebModel takes it. */
export interface WebModelPackage {
  /** manifest.json's bytes, or the manifest parsed (fetchModelPackage's ModelPackage.manifest). */
  manifest: Uint8Array | object;
  /** The package's files by name (at least the graphs the manifest names; chunks reassembled). */
  files: PackageFiles | Record<string, Uint8Array>;
  /**
   * Every file's SHA-256 was checked against the manifest already, so the worker need not hash
   * the graphs again. Default: true for fetchModelPackage's result (it verifies), else false.
   */
  verified?: boolean;
}

/** Options of openWebModel. */
export interface OpenWebOptions extends CallOptions {
  /** "auto" (default): WebGPU when there is an adapter, else wasm. */
  provider?: GraphProvider;
  /** "auto" (default): the fp16 decoder on WebGPU with shader-f16 when the package has it. */
  precision?: GraphPrecision;
  /** The name its payloads carry (default: the manifest's). */
  name?: string;
}

let webKeys = 0;

/** An open model. */
export class Model {
  readonly flextok: FlexTok;
  readonly handle: number;
  /** The model's identity and sizes, as open returned them. */
  readonly model: ModelIdentity;
  readonly width: number;
  readonly height: number;
  readonly codebook: number;
  private readonly gen: number;
  private closedWhy: string | null = null;
  /** @internal */
  readonly streams = new Set<Stream>();

  /** @internal */
  constructor(flextok: FlexTok, handle: number, gen: number, info: ModelInfo) {
    this.flextok = flextok;
    this.handle = handle;
    this.gen = gen;
    this.model = info.model;
    this.width = info.width;
    this.height = info.height;
    this.codebook = info.codebook;
  }

  get closed(): boolean {
    return this.closedWhy !== null || this.flextok.closed || this.gen !== this.flextok.generation;
  }

  /** @internal */
  markClosed(why = ""): void {
    if (this.closedWhy === null) this.closedWhy = why;
    for (const s of this.streams) s.markClosed(why);
    this.streams.clear();
  }

  /** @internal Throws "closed" if the model cannot be used; returns its generation. */
  check(): number {
    if (this.flextok.closed) throw closedError("FlexTok");
    if (this.gen !== this.flextok.generation) {
      this.markClosed(" (lost when the module restarted)");
    }
    if (this.closedWhy !== null) throw closedError(`model ${this.handle}`, this.closedWhy);
    return this.gen;
  }

  /** The model's info, asked again from the module. */
  async info(opts: CallOptions = {}): Promise<ModelInfo> {
    const gen = this.check();
    const r = await this.flextok.request({ op: "info", handle: this.handle }, { ...opts, gen });
    return { model: r.model, height: r.height, width: r.width, codebook: r.codebook };
  }

  /** Decodes a whole token payload (the first k tokens) to an image. */
  async decode(payload: Bytes, opts: DecodeOptions & CallOptions = {}): Promise<ImageResult> {
    const gen = this.check();
    const r = await this.flextok.request({ op: "decode", handle: this.handle, payload: u8(payload), ...decodeFields(opts, true) }, { ...opts, gen });
    return imageOf(r);
  }

  /** Encodes an image (PNG, JPEG, GIF, WebP, BMP or TIFF bytes, or a Blob/File) to a payload. */
  async encode(image: Bytes | Blob, opts: EncodeOptions = {}): Promise<EncodeResult> {
    const gen = this.check();
    const req: Request = { op: "encode", handle: this.handle, image: await bytesOf(image) };
    if (opts.k !== undefined) req.k = opts.k;
    if (opts.size !== undefined) req.size = opts.size;
    if (opts.filter !== undefined) req.filter = opts.filter;
    if (opts.exifOrientation !== undefined) req.exif_orientation = opts.exifOrientation;
    const r = await this.flextok.request(req, { ...opts, gen });
    return { payload: r.payload, count: r.count, encode_ms: r.encode_ms };
  }

  /**
   * Opens a progressive decode from a stream header; push the chunks as they arrive. opts
   * apply to every decode of the stream.
   */
  async openStream(header: Bytes, opts: StreamDecodeOptions & CallOptions = {}): Promise<Stream> {
    const gen = this.check();
    const h = u8(header);
    let view: StreamHeaderView | undefined;
    try {
      view = decodeStreamHeader(h);
    } catch {
      view = undefined; // the module gives the authoritative error
    }
    const r = await this.flextok.request({ op: "stream_open", handle: this.handle, header: h, ...decodeFields(opts, false) }, { ...opts, gen });
    const total = r.count > 0 ? r.count * (view?.frames ?? 1) : undefined;
    const s = new Stream(this, r.stream, gen, r.count, total);
    if (this.closed) {
      s.markClosed();
      throw closedError(`model ${this.handle}`);
    }
    this.streams.add(s);
    return s;
  }

  /**
   * Opens a class-conditional AR model (docs/ar-checkpoint.md) beside this tokenizer; fails
   * with "tokenizer_mismatch" if it was trained for another tokenizer, "bad_model" if the files
   * do not load. The AR model stays open when this model is closed (it keeps the tokenizer's
   * identity, not the tokenizer).
   *
   * - `openAR()`: the SDK's default AR model, made for the default tokenizer (openDefault()).
   *   Its files (17 MB) are not in flextok.wasm: initialize() reads them from `ar/` next to the
   *   module (browser: a download, Node: a file; InitializeOptions.arURL / arPath move them).
   * - `openAR({url, configURL})`: another AR checkpoint, downloaded (Cache API as loadModel).
   * - `openAR(config, weights)`: another AR checkpoint from its files' bytes.
   */
  async openAR(opts?: OpenAROptions): Promise<ARModel>;
  async openAR(config: Bytes | string, weights: Bytes, opts?: CallOptions): Promise<ARModel>;
  async openAR(a?: OpenAROptions | Bytes | string, weights?: Bytes, callOpts: CallOptions = {}): Promise<ARModel> {
    const gen = this.check();
    let files: { config: Uint8Array; weights: Uint8Array } | undefined;
    let opts: CallOptions = callOpts;
    if (typeof a === "string" || a instanceof Uint8Array || a instanceof ArrayBuffer) {
      if (weights === undefined) throw new FlexTokError("bad_request", "flextok: openAR(config, weights): weights missing");
      files = { config: typeof a === "string" ? new TextEncoder().encode(a) : u8(a), weights: u8(weights) };
    } else {
      const o: OpenAROptions = a ?? {};
      opts = o;
      const emit = (p: Progress): void => this.flextok.emit(p, o);
      if (o.url !== undefined) {
        if (o.configURL === undefined) throw new FlexTokError("bad_request", "flextok: openAR({url}) needs configURL too");
        const fo: Pick<LoadOptions, "cache" | "signal" | "fetch"> = {};
        if (o.cache !== undefined) fo.cache = o.cache;
        if (o.signal) fo.signal = o.signal;
        if (o.fetch) fo.fetch = o.fetch;
        const [w, c] = await Promise.all([fetchCached(o.url, fo, emit), fetchCached(o.configURL, fo, emit)]);
        files = { config: c, weights: w };
      } else if (this.flextok.defaultAR) {
        const lo: CallOptions & { emit: (p: Progress) => void } = { emit };
        if (o.signal) lo.signal = o.signal;
        files = await this.flextok.defaultAR(lo);
      }
      // Otherwise: ar_open without files, the AR model the module embeds (if any).
    }
    const req: Request = { op: "ar_open", handle: this.handle };
    if (files) {
      req.config = files.config;
      req.weights = files.weights;
    }
    const r = await this.flextok.request(req, { ...opts, gen });
    const info: ARInfo = {
      name: r.name,
      classes: r.classes,
      num_classes: r.num_classes,
      max_tokens: r.max_tokens,
      vocab: r.vocab,
      cfg: r.cfg,
      params: r.params,
    };
    return new ARModel(this, r.ar, gen, info);
  }

  /** Closes the model and its streams. Idempotent. */
  async close(opts: CallOptions = {}): Promise<CloseResult> {
    if (this.closed) {
      this.markClosed();
      return { streams: 0 };
    }
    const gen = this.gen;
    this.markClosed();
    this.flextok.models.delete(this);
    const r = await this.flextok.request({ op: "close", handle: this.handle }, { ...opts, gen });
    return { streams: r.streams };
  }
}

/** A progressive decode: push the chunks as they arrive, get a sharper image each time. */
export class Stream {
  readonly model: Model;
  readonly handle: number;
  /** Tokens announced by the header (0: unknown). */
  readonly count: number;
  /** frames × count when announced. */
  readonly total: number | undefined;
  private readonly gen: number;
  private closedWhy: string | null = null;
  private last = { received: 0, done: false };

  /** @internal */
  constructor(model: Model, handle: number, gen: number, count: number, total: number | undefined) {
    this.model = model;
    this.handle = handle;
    this.gen = gen;
    this.count = count;
    this.total = total;
  }

  /** Ids received so far and whether the end arrived, as of the last push. */
  get received(): number {
    return this.last.received;
  }
  get done(): boolean {
    return this.last.done;
  }

  get closed(): boolean {
    return this.closedWhy !== null || this.model.closed;
  }

  /** @internal */
  markClosed(why = ""): void {
    if (this.closedWhy === null) this.closedWhy = why;
  }

  private check(): number {
    this.model.check();
    if (this.closedWhy !== null) throw closedError(`stream ${this.handle}`, this.closedWhy);
    return this.gen;
  }

  /**
   * Adds one chunk (undefined: none, only decode again) and, unless decode is false, decodes
   * every id received so far. opts override the stream's options for this decode.
   */
  async push(chunk: Bytes | undefined, opts: StreamDecodeOptions & CallOptions & { decode?: boolean } = {}): Promise<PushResult> {
    const gen = this.check();
    const req: Request = { op: "stream_chunk", stream: this.handle, ...decodeFields(opts, false) };
    if (chunk !== undefined) req.chunk = u8(chunk);
    if (opts.decode !== undefined) req.decode = opts.decode;
    const r = await this.model.flextok.request(req, { ...opts, gen });
    this.last = { received: r.received, done: r.done };
    const p: Progress = { type: "chunk", stream: this.handle, received: r.received, done: r.done, decoded: r.decoded };
    if (this.total !== undefined) p.total = this.total;
    this.model.flextok.emit(p, opts);
    const out: PushResult = { received: r.received, done: r.done };
    if (r.decoded) out.image = imageOf(r);
    return out;
  }

  /** Closes the stream. Idempotent. */
  async close(opts: CallOptions = {}): Promise<void> {
    if (this.closed) return;
    this.markClosed();
    this.model.streams.delete(this);
    await this.model.flextok.request({ op: "stream_close", stream: this.handle }, { ...opts, gen: this.gen });
  }
}

// ---------------------------------------------------------------------------------------------
// AR generation.

/** Options of ARModel.generate (sampling options absent: the AR config's hints, else plain sampling). */
export interface GenerateOptions extends CallOptions {
  /** A class name of the AR config's classes, or a class id. */
  class: string | number;
  /** Tokens per sample, 1..maxTokens (default: maxTokens). */
  k?: number;
  /** Samples, all of the class (default 1). */
  n?: number;
  /** Classifier-free guidance scale (> 1 guides; needs info.cfg). */
  cfg?: number;
  /** Guide only the first guidedTokens tokens (0: all). */
  guidedTokens?: number;
  /** ≥ 0. */
  temperature?: number;
  /** ≥ 0 (0: off). */
  topK?: number;
  /** In (0, 1] (1: off). */
  topP?: number;
  /** Arg-max instead of drawing. */
  greedy?: boolean;
  /** Seed of the draws (64 bits; default 0): the same seed gives the same ids on every host. */
  seed?: Uint64;
  /**
   * Called as tokens arrive (one or more positions per call, in order), before the next are
   * asked for: the place to push `chunks[i]` into a Stream opened with `headers[i]` and decode
   * the image coarse to fine. A returned Promise is awaited.
   */
  onTokens?: (ev: TokensEvent) => void | Promise<void>;
  /** Token positions per generate_next at most (default: all that are ready). */
  perCall?: number;
}

/** What onTokens receives. */
export interface TokensEvent {
  /** Position of the first new id. */
  start: number;
  /** New ids per sample. */
  count: number;
  /** ids[i]: sample i's new ids. */
  ids: number[][];
  /** The new ids as one stream chunk per sample (docs/payload.md). */
  chunks: Uint8Array[];
  /** Every sample's stream header (the same array at every call). */
  headers: Uint8Array[];
  /** Ids per sample so far. */
  received: number;
  /** k: ids per sample at the end. */
  k: number;
  done: boolean;
}

/** What ARModel.generate returns. */
export interface GenerateResult {
  /** The class id. */
  class: number;
  k: number;
  /** Each sample's whole payload: ordinary payloads of the tokenizer (Model.decode them). */
  payloads: Uint8Array[];
  /** Each sample's ids. */
  ids: number[][];
  /** Each sample's stream header. */
  headers: Uint8Array[];
}

/** An open AR model: generates token payloads for the tokenizer it was opened beside. */
export class ARModel {
  /** The tokenizer model it was opened beside. */
  readonly tokenizer: Model;
  readonly handle: number;
  readonly info: ARInfo;
  private readonly gen: number;
  private isClosed = false;

  /** @internal */
  constructor(tokenizer: Model, handle: number, gen: number, info: ARInfo) {
    this.tokenizer = tokenizer;
    this.handle = handle;
    this.gen = gen;
    this.info = info;
  }

  /** Class names (empty when the config names none). */
  get classes(): string[] {
    return this.info.classes ?? [];
  }
  /** Largest k. */
  get maxTokens(): number {
    return this.info.max_tokens;
  }

  get closed(): boolean {
    const ft = this.tokenizer.flextok;
    return this.isClosed || ft.closed || this.gen !== ft.generation;
  }

  private check(): number {
    if (this.closed) throw closedError(`AR model ${this.handle}`);
    return this.gen;
  }

  /**
   * Generates n samples of k tokens of a class, handing the tokens to onTokens as they are
   * produced. Aborting (signal) rejects with "aborted" and closes the generation.
   */
  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    const gen = this.check();
    const ft = this.tokenizer.flextok;
    const req: Request = { op: "generate_open", ar: this.handle, class: opts.class };
    if (opts.k !== undefined) req.k = opts.k;
    if (opts.n !== undefined) req.n = opts.n;
    if (opts.cfg !== undefined) req.cfg = opts.cfg;
    if (opts.guidedTokens !== undefined) req.guided_tokens = opts.guidedTokens;
    if (opts.temperature !== undefined) req.temperature = opts.temperature;
    if (opts.topK !== undefined) req.top_k = opts.topK;
    if (opts.topP !== undefined) req.top_p = opts.topP;
    if (opts.greedy !== undefined) req.greedy = opts.greedy;
    if (opts.seed !== undefined) req.seed = opts.seed;
    const call: CallOptions & { gen: number } = { gen };
    if (opts.signal) call.signal = opts.signal;
    if (opts.onProgress) call.onProgress = opts.onProgress;
    const o = await ft.request(req, call);
    const ids: number[][] = o.headers.map(() => []);
    let received = 0;
    try {
      for (;;) {
        if (opts.signal?.aborted) throw abortedError(opts.signal);
        const next: Request = { op: "generate_next", generation: o.generation };
        if (opts.perCall !== undefined) next.max = opts.perCall;
        const r = await ft.request(next, call);
        r.ids.forEach((v, i) => ids[i]!.push(...v));
        received += r.count;
        if (r.count > 0 || r.done) {
          await opts.onTokens?.({ start: r.start, count: r.count, ids: r.ids, chunks: r.chunks, headers: o.headers, received, k: o.k, done: r.done });
        }
        if (r.done) return { class: o.class, k: o.k, payloads: r.payloads, ids, headers: o.headers };
      }
    } finally {
      // Done, failed or aborted: the generation's handle is no longer needed.
      if (!ft.closed && ft.generation === gen) {
        ft.request({ op: "generate_close", generation: o.generation }, { gen }).catch(() => {});
      }
    }
  }

  /** Closes the AR model (and its generations). Idempotent. */
  async close(opts: CallOptions = {}): Promise<void> {
    if (this.closed) {
      this.isClosed = true;
      return;
    }
    this.isClosed = true;
    await this.tokenizer.flextok.request({ op: "close", handle: this.handle }, { ...opts, gen: this.gen });
  }
}

// ---------------------------------------------------------------------------------------------
// Downloads with the Cache API.

/** The default Cache API cache of loadModel. */
export const MODEL_CACHE = "flextok-models";

function absolute(u: string | URL): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  return (base ? new URL(u, base) : new URL(u)).href;
}

async function readBody(resp: Response, url: string, cached: boolean, emit: (p: Progress) => void): Promise<Uint8Array> {
  const len = Number(resp.headers.get("content-length") ?? NaN);
  const total = Number.isFinite(len) && len >= 0 ? len : undefined;
  const event = (loaded: number, done: boolean): Progress => {
    const p: Progress = { type: "download", url, loaded, cached, done };
    if (total !== undefined) p.total = total;
    return p;
  };
  if (!resp.body) {
    const b = new Uint8Array(await resp.arrayBuffer());
    emit(event(b.length, true));
    return b;
  }
  const reader = resp.body.getReader();
  const parts: Uint8Array[] = [];
  let buf = total !== undefined ? new Uint8Array(total) : undefined;
  let loaded = 0;
  emit(event(0, false));
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (buf && loaded + value.length <= buf.length) buf.set(value, loaded);
    else {
      if (buf) {
        parts.push(buf.subarray(0, loaded)); // Content-Length was wrong: fall back to parts
        buf = undefined;
      }
      parts.push(value);
    }
    loaded += value.length;
    emit(event(loaded, false));
  }
  let out: Uint8Array;
  if (buf) out = loaded === buf.length ? buf : buf.slice(0, loaded);
  else {
    out = new Uint8Array(loaded);
    let o = 0;
    for (const p of parts) (out.set(p, o), (o += p.length));
  }
  emit(event(loaded, true));
  return out;
}

/** Fetches url's bytes, from the Cache API cache when it has them (and then stores them). */
export async function fetchCached(
  u: string | URL,
  opts: Pick<LoadOptions, "cache" | "signal" | "fetch">,
  emit: (p: Progress) => void = () => {},
): Promise<Uint8Array> {
  const url = absolute(u);
  const name = opts.cache === undefined ? MODEL_CACHE : opts.cache;
  let cache: Cache | undefined;
  if (name !== false && typeof caches !== "undefined") {
    try {
      cache = await caches.open(name);
    } catch {
      cache = undefined; // e.g. storage disabled
    }
  }
  try {
    const hit = cache ? await cache.match(url) : undefined;
    if (hit) return await readBody(hit, url, true, emit);
    const init: RequestInit = { ...(opts.fetch ?? {}) };
    if (opts.signal) init.signal = opts.signal;
    const resp = await fetch(url, init);
    if (!resp.ok) throw new FlexTokError("fetch_failed", `flextok: fetch ${url}: HTTP ${resp.status} ${resp.statusText}`.trimEnd());
    const bytes = await readBody(resp, url, false, emit);
    if (cache) {
      const headers = new Headers({ "content-type": resp.headers.get("content-type") ?? "application/octet-stream" });
      headers.set("content-length", String(bytes.length));
      try {
        await cache.put(url, new Response(bytes as Uint8Array<ArrayBuffer>, { headers }));
      } catch {
        // quota or eviction: the bytes are in memory, load without the cache
      }
    }
    return bytes;
  } catch (e) {
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    throw asFlexTokError(e, "fetch_failed", `flextok: fetch ${url}`);
  }
}

/** Deletes url from the model cache (all of it when url is undefined). */
export async function clearModelCache(url?: string | URL, cacheName: string = MODEL_CACHE): Promise<boolean> {
  if (typeof caches === "undefined") return false;
  if (url === undefined) return caches.delete(cacheName);
  const c = await caches.open(cacheName);
  return c.delete(absolute(url));
}

// ---------------------------------------------------------------------------------------------
// The module in a worker: a Web Worker (browser.ts) or a worker_threads Worker behind
// NodeWorker (node.ts). Both run worker.ts and speak protocol.ts; only the spawning differs.

/** Where initialize stands, as in onnxruntime-web: initializing, initialized or aborted/failed. */
export type InitState = "initializing" | "initialized" | "failed";

/**
 * The part of the Web Worker API that WorkerTransport uses. A browser Worker has it; node.ts's
 * NodeWorker gives it to a worker_threads Worker. ref/unref (Node only): the transport holds
 * the process open while the worker starts or a call is pending, and lets it exit when idle.
 */
export interface WorkerLike {
  onmessage: ((e: { data: FromWorker }) => void) | null;
  onerror: ((e: { message: string; preventDefault(): void }) => void) | null;
  onmessageerror: (() => void) | null;
  postMessage(message: ToWorker, transfer: Transferable[]): void;
  terminate(): void;
  ref?(): void;
  unref?(): void;
}

interface Pending {
  seq: number;
  request: Uint8Array;
  gen: number | undefined;
  signal: AbortSignal | undefined;
  onAbort: () => void;
  resolve: (b: Uint8Array) => void;
  reject: (e: FlexTokError) => void;
}

/**
 * The module in a worker (browser.ts: a Web Worker; node.ts: a worker_threads Worker), the
 * same code and messages in both. Requests queue here and go to the worker one at a time,
 * although the module's handle is asynchronous (RATIONALE: the asynchronous wasm entry): the
 * module computes without yielding, so overlapping calls would not run sooner, and with one
 * call in the worker an abort never takes another with it.
 * Aborting a queued request drops it; aborting the running one terminates the worker and
 * starts a new one (from the compiled module: no download), whose handles are new: models and
 * streams opened before are closed. A worker that dies (error, messageerror, the Go program exits)
 * fails every pending call with "worker_died" and is replaced the same way.
 */
export class WorkerTransport implements Transport {
  generation = 0;
  state: InitState = "initializing";
  /** Resolves when the current worker is ready (rejects with "load_failed"). */
  ready: Promise<void>;
  private worker: WorkerLike | null = null;
  private held: boolean | null = null;
  private queue: Pending[] = [];
  private running: Pending | null = null;
  private seq = 0;
  private closed = false;
  private isReady = false;
  private broken: FlexTokError | null = null;

  constructor(
    private readonly spawn: () => WorkerLike,
    private readonly module: WebAssembly.Module,
    private readonly wasmExecURL: string,
    private readonly ort?: OrtInit,
  ) {
    this.ready = this.start();
  }

  private start(): Promise<void> {
    this.isReady = false;
    let w: WorkerLike;
    try {
      w = this.spawn();
    } catch (e) {
      this.state = "failed";
      return Promise.reject(asFlexTokError(e, "load_failed", "flextok: failed to start the worker"));
    }
    this.worker = w;
    const p = new Promise<void>((resolve, reject) => {
      w.onmessage = (e: { data: FromWorker }): void => {
        if (w !== this.worker) return;
        const m = e.data;
        switch (m.type) {
          case "ready":
            this.isReady = true;
            this.state = "initialized";
            resolve();
            this.pump();
            this.hold();
            break;
          case "init_failed":
            this.state = "failed";
            reject(new FlexTokError("load_failed", `flextok: failed to start the wasm module: ${m.message}`));
            this.die(new FlexTokError("load_failed", `flextok: failed to start the wasm module: ${m.message}`), false);
            break;
          case "result":
            this.settle(m.seq, m.response);
            break;
          case "exited":
            reject(new FlexTokError("load_failed", m.message));
            this.die(new FlexTokError("worker_died", m.message), true);
            break;
        }
      };
      w.onerror = (e: { message: string; preventDefault(): void }): void => {
        if (w !== this.worker) return;
        e.preventDefault();
        const err = `flextok: the worker failed: ${e.message || "error event"}`;
        reject(new FlexTokError("load_failed", err));
        this.die(new FlexTokError("worker_died", err), this.isReady);
      };
      w.onmessageerror = (): void => {
        if (w !== this.worker) return;
        this.die(new FlexTokError("worker_died", "flextok: a worker message could not be deserialized"), true);
      };
    });
    const msg: ToWorker = { type: "init", module: this.module, wasmExecURL: this.wasmExecURL };
    if (this.ort) msg.ort = this.ort;
    w.postMessage(msg, []);
    this.hold();
    p.catch(() => {}); // observed by ready's users
    return p;
  }

  /** Terminates the worker, fails the running call with err and every queued one, restarts if asked. */
  private die(err: FlexTokError, restart: boolean): void {
    this.worker?.terminate();
    this.worker = null;
    this.held = null;
    this.isReady = false;
    this.generation++;
    const all = this.running ? [this.running, ...this.queue] : [...this.queue];
    this.running = null;
    this.queue = [];
    for (const p of all) this.fail(p, err);
    if (restart && !this.closed) this.ready = this.start();
    else if (!this.closed) this.broken = err;
  }

  private fail(p: Pending, err: FlexTokError): void {
    p.signal?.removeEventListener("abort", p.onAbort);
    p.reject(err);
  }

  private settle(seq: number, response: Uint8Array): void {
    const p = this.running;
    if (!p || p.seq !== seq) return;
    this.running = null;
    p.signal?.removeEventListener("abort", p.onAbort);
    p.resolve(response);
    this.pump();
    this.hold();
  }

  /**
   * Node: keeps the process alive (ref) while the worker starts or a call is queued or
   * running, and not (unref) while it idles, so an open FlexTok never keeps Node from
   * exiting but an awaited call is never cut short.
   */
  private hold(): void {
    const w = this.worker;
    if (!w) return;
    const busy = !this.isReady || this.running !== null || this.queue.length > 0;
    if (busy === this.held) return;
    this.held = busy;
    if (busy) w.ref?.();
    else w.unref?.();
  }

  private pump(): void {
    while (!this.running && this.isReady && this.worker && this.queue.length > 0) {
      const p = this.queue.shift()!;
      if (p.gen !== undefined && p.gen !== this.generation) {
        this.fail(p, new FlexTokError("closed", "flextok: the model or stream was lost when the worker restarted"));
        continue;
      }
      this.running = p;
      const msg: ToWorker = { type: "call", seq: p.seq, request: p.request };
      this.worker.postMessage(msg, [p.request.buffer as ArrayBuffer]);
    }
  }

  call(request: Uint8Array, opts: { signal?: AbortSignal; gen?: number }): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new FlexTokError("closed", "flextok: the module is closed"));
    if (this.broken) return Promise.reject(this.broken);
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    if (opts.gen !== undefined && opts.gen !== this.generation) {
      return Promise.reject(new FlexTokError("closed", "flextok: the model or stream was lost when the worker restarted"));
    }
    // Transfer only a buffer the request owns entirely.
    const own = request.byteOffset === 0 && request.byteLength === request.buffer.byteLength ? request : request.slice();
    return new Promise<Uint8Array>((resolve, reject) => {
      const p: Pending = {
        seq: ++this.seq,
        request: own,
        gen: opts.gen,
        signal,
        resolve,
        reject,
        onAbort: () => {
          const err = abortedError(signal!);
          if (this.running === p) {
            // The module computes in the worker without yielding to its event loop, so no
            // message could reach it: only terminating the worker stops the call.
            this.running = null;
            p.reject(err);
            this.die(new FlexTokError("aborted", "flextok: another call was aborted; the worker restarted"), true);
            return;
          }
          const i = this.queue.indexOf(p);
          if (i >= 0) this.queue.splice(i, 1);
          p.reject(err);
          this.hold();
        },
      };
      signal?.addEventListener("abort", p.onAbort, { once: true });
      this.queue.push(p);
      this.pump();
      this.hold();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.die(new FlexTokError("closed", "flextok: the module is closed"), false);
  }

  putFiles(key: string, files: PackageFiles, verified: boolean): void {
    if (!this.worker) return; // closed or broken: the call that names key fails as well
    const transfer = new Set<ArrayBuffer>();
    for (const b of files.values()) if (b.buffer instanceof ArrayBuffer) transfer.add(b.buffer);
    const msg: ToWorker = { type: "files", key, files: [...files], verified };
    this.worker.postMessage(msg, [...transfer]);
  }
}

/** Where a web model's graphs run, as openWebModel chose. */
export interface GraphPlacement {
  provider: "wasm" | "webgpu";
  precision: "fp32" | "fp16";
  /** Why not the provider asked for ("" when it is it). */
  fallback: string;
}

/** A model opened by openWebModel: its networks run in onnxruntime-web. */
export class WebModel extends Model {
  readonly provider: "wasm" | "webgpu";
  readonly precision: "fp32" | "fp16";
  readonly fallback: string;

  /** @internal */
  constructor(flextok: FlexTok, handle: number, gen: number, info: ModelInfo, p: GraphPlacement) {
    super(flextok, handle, gen, info);
    this.provider = p.provider;
    this.precision = p.precision;
    this.fallback = p.fallback;
  }
}
