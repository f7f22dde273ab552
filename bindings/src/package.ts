// The browser model package (docs/web-package.md): manifest.json and the chunks of the ONNX
// graphs that `flextok export-web` writes and `flextok serve` serves under /v1/web-package/.
// fetchModelPackage downloads a package with progress events, verifies every chunk's SHA-256
// with WebCrypto, keeps verified chunks in a ChunkStore (the Cache API in browsers) so that a
// reload or an interrupted download fetches only the missing chunks, and reassembles the files.
//
// It needs no wasm and runs in browsers, workers and Node >= 20 (fetch, WebCrypto).

import { FlexTokError, type ErrorCode } from "./errors.js";
import type { ModelIdentity } from "./types.js";

/** The manifest's "format". */
export const WEB_PACKAGE_FORMAT = "flextok-web";
/** The only manifest version this package reads. */
export const WEB_PACKAGE_VERSION = 1;
/** The manifest's file name in a package. */
export const WEB_PACKAGE_MANIFEST = "manifest.json";

/** Graph roles: a package has "decoder" and "vae_decoder"; "decoder_fp16" is optional. */
export type GraphRole = "decoder" | "decoder_fp16" | "vae_decoder";

/** One downloadable piece of a file. */
export interface PackageChunk {
  name: string;
  size: number;
  sha256: string;
}

/** A file of the package: its size and SHA-256 and the chunks that concatenate to it. */
export interface PackageFile {
  size: number;
  sha256: string;
  chunks: PackageChunk[];
}

/** A graph's files: the ONNX model and its external data file (its "location"). */
export interface PackageGraph {
  graph: string;
  data: string;
  precision: "fp32" | "fp16";
}

/** manifest.json, format "flextok-web" version 1 (sdk/webpkg's Manifest). */
export interface WebPackageManifest {
  format: "flextok-web";
  version: 1;
  exporter_version: string;
  opset: number;
  /** The identity payloads made with the model carry (digest: 64 lowercase hex digits). */
  model: { name: string; digest: string; fsq_levels: number[]; max_tokens: number };
  /** The model's decode hints, or null. */
  hints: { steps: number; guidance: number | null; apg: boolean; seed: number | null } | null;
  /** The graphs' fixed sizes (native/onnx's Sizes). */
  sizes: {
    image_height: number;
    image_width: number;
    latent_channels: number;
    latent_height: number;
    latent_width: number;
    tokens: number;
    fsq_dims: number;
    decoder_fp16: boolean;
  };
  graphs: Partial<Record<GraphRole, PackageGraph>> & { decoder: PackageGraph; vae_decoder: PackageGraph };
  files: Record<string, PackageFile>;
}

const MAX_FILE_SIZE = 2 ** 40;
const MAX_SIDE = 1 << 16;
const MAX_FILES = 64;
const MAX_CHUNKS = 1 << 16;
const HEX64 = /^[0-9a-f]{64}$/;

function invalid(field: string, what: string): FlexTokError {
  const where = field ? `${field}: ` : "";
  return new FlexTokError("manifest_invalid", `flextok: web package manifest: ${where}${what}`, { field, detail: what });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function int(o: Record<string, unknown>, key: string, field: string, min: number, max: number): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${field}${key}`, `${JSON.stringify(v) ?? "missing"} (want an integer from ${min} to ${max})`);
  }
  return v;
}

function str(o: Record<string, unknown>, key: string, field: string): string {
  const v = o[key];
  if (typeof v !== "string") throw invalid(`${field}${key}`, `${JSON.stringify(v) ?? "missing"} (want a string)`);
  return v;
}

function obj(o: Record<string, unknown>, key: string, field: string): Record<string, unknown> {
  const v = o[key];
  if (!isObject(v)) throw invalid(`${field}${key}`, `${v === undefined ? "missing" : JSON.stringify(v)?.slice(0, 40)} (want an object)`);
  return v;
}

/** Why name is not a plain file name of the package (the rule of sdk/webpkg), or "". */
function badName(name: string): string {
  if (name === "") return "empty name";
  if (new TextEncoder().encode(name).length > 255) return "name over 255 bytes";
  if (/[/\\:]/.test(name)) return "name contains '/', '\\' or ':'";
  if (name.includes("..")) return 'name contains ".."';
  if (name.startsWith(".")) return "name starts with '.'";
  if (name === WEB_PACKAGE_MANIFEST) return "name is the manifest's";
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return "name contains a control character";
  return "";
}

/** The name of chunk i of a file split into several chunks. */
export function chunkName(file: string, i: number): string {
  return `${file}.part${String(i).padStart(3, "0")}`;
}

/**
 * Parses and checks manifest.json as sdk/webpkg.Parse does: format and version (another version
 * throws "unsupported_version"), the model identity, hints and sizes, every file's name, size,
 * SHA-256 and chunks (sizes summing to the file's, named as the exporter names them), and that
 * every graph's files are listed. Anything else throws "manifest_invalid" naming the field.
 * Unknown keys are ignored.
 */
export function parseManifest(input: string | Uint8Array): WebPackageManifest {
  let v: unknown;
  try {
    v = JSON.parse(typeof input === "string" ? input : new TextDecoder("utf-8", { fatal: true }).decode(input));
  } catch (e) {
    throw invalid("", `not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!isObject(v)) throw invalid("", "not a JSON object");
  if (v.format !== WEB_PACKAGE_FORMAT) throw invalid("format", `${JSON.stringify(v.format) ?? "missing"} (want "${WEB_PACKAGE_FORMAT}")`);
  if (v.version !== WEB_PACKAGE_VERSION) {
    if (v.version === undefined) throw invalid("version", "missing");
    const what = `${JSON.stringify(v.version)} (this SDK reads version ${WEB_PACKAGE_VERSION})`;
    throw new FlexTokError("unsupported_version", `flextok: web package manifest: version ${what}`, { field: "version", detail: what });
  }
  if (v.exporter_version !== undefined && typeof v.exporter_version !== "string") throw invalid("exporter_version", "want a string");
  int(v, "opset", "", 1, 1000);
  const model = obj(v, "model", "");
  const name = str(model, "name", "model.");
  if (name === "" || new TextEncoder().encode(name).length > 256) throw invalid("model.name", "want 1 to 256 bytes");
  if (!HEX64.test(str(model, "digest", "model."))) throw invalid("model.digest", "want 64 lowercase hex digits");
  const levels = model.fsq_levels;
  if (!Array.isArray(levels) || levels.length < 1 || levels.length > 16 || !levels.every((l) => Number.isInteger(l) && l >= 2 && l <= 65536)) {
    throw invalid("model.fsq_levels", `${JSON.stringify(levels)?.slice(0, 60)} (want 1 to 16 integer levels of 2 to 65536)`);
  }
  if ((levels as number[]).reduce((a, b) => a * b, 1) > 2 ** 24) throw invalid("model.fsq_levels", "codebook over 2^24");
  const maxTokens = int(model, "max_tokens", "model.", 1, 65536);
  if (v.hints !== null && v.hints !== undefined) {
    const h = obj(v, "hints", "");
    if (h.steps !== undefined) int(h, "steps", "hints.", 0, 100000);
    if (h.guidance !== undefined && h.guidance !== null && !(typeof h.guidance === "number" && h.guidance > 0 && Number.isFinite(h.guidance))) {
      throw invalid("hints.guidance", `${JSON.stringify(h.guidance)} (want a number > 0)`);
    }
    if (h.apg !== undefined && typeof h.apg !== "boolean") throw invalid("hints.apg", "want a boolean");
    if (h.seed !== undefined && h.seed !== null) int(h, "seed", "hints.", 0, Number.MAX_SAFE_INTEGER);
  }
  const sizes = obj(v, "sizes", "");
  for (const k of ["image_height", "image_width", "latent_channels", "latent_height", "latent_width", "tokens", "fsq_dims"]) int(sizes, k, "sizes.", 1, MAX_SIDE);
  if (sizes.tokens !== maxTokens) throw invalid("sizes.tokens", `${String(sizes.tokens)}, but model.max_tokens is ${maxTokens}`);
  if (sizes.fsq_dims !== levels.length) throw invalid("sizes.fsq_dims", `${String(sizes.fsq_dims)}, but model.fsq_levels has ${levels.length} levels`);
  const files = obj(v, "files", "");
  const fileNames = Object.keys(files);
  if (fileNames.length < 1 || fileNames.length > MAX_FILES) throw invalid("files", `${fileNames.length} files (want 1 to ${MAX_FILES})`);
  const owner = new Map<string, string>();
  for (const fname of fileNames.sort()) {
    const field = `files[${JSON.stringify(fname)}]`;
    const why = badName(fname);
    if (why) throw invalid(field, why);
    const f = files[fname];
    if (!isObject(f)) throw invalid(field, `${JSON.stringify(f)?.slice(0, 40)} (want an object)`);
    const size = int(f, "size", `${field}.`, 0, MAX_FILE_SIZE);
    if (!HEX64.test(str(f, "sha256", `${field}.`))) throw invalid(`${field}.sha256`, "want 64 lowercase hex digits");
    const chunks = f.chunks;
    if (!Array.isArray(chunks) || chunks.length < 1 || chunks.length > MAX_CHUNKS) throw invalid(`${field}.chunks`, `want 1 to ${MAX_CHUNKS} chunks`);
    let sum = 0;
    chunks.forEach((c: unknown, i) => {
      const cf = `${field}.chunks[${i}]`;
      if (!isObject(c)) throw invalid(cf, "want an object");
      const want = chunks.length === 1 ? fname : chunkName(fname, i);
      const cname = str(c, "name", `${cf}.`);
      if (cname !== want) throw invalid(`${cf}.name`, `${JSON.stringify(cname)} (want ${JSON.stringify(want)})`);
      const other = owner.get(cname);
      if (other !== undefined) throw invalid(`${cf}.name`, `also a chunk of ${JSON.stringify(other)}`);
      if (cname !== fname && cname in files) throw invalid(`${cf}.name`, "also a file");
      owner.set(cname, fname);
      sum += int(c, "size", `${cf}.`, size === 0 ? 0 : 1, MAX_FILE_SIZE);
      if (!HEX64.test(str(c, "sha256", `${cf}.`))) throw invalid(`${cf}.sha256`, "want 64 lowercase hex digits");
    });
    if (sum !== size) throw invalid(`${field}.chunks`, `chunk sizes sum to ${sum}, but the file has ${size} bytes`);
    if (chunks.length === 1 && (chunks[0] as { sha256: string }).sha256 !== f.sha256) throw invalid(`${field}.chunks[0].sha256`, "differs from the file's, its only chunk");
  }
  const graphs = obj(v, "graphs", "");
  for (const role of ["decoder", "vae_decoder"]) if (!(role in graphs)) throw invalid("graphs", `no "${role}" graph`);
  if (("decoder_fp16" in graphs) !== (sizes.decoder_fp16 === true)) throw invalid("sizes.decoder_fp16", "disagrees with the graphs");
  for (const role of Object.keys(graphs)) {
    const field = `graphs[${JSON.stringify(role)}]`;
    const want = role === "decoder_fp16" ? "fp16" : role === "decoder" || role === "vae_decoder" ? "fp32" : "";
    if (!want) throw invalid(field, "unknown role (want decoder, decoder_fp16 or vae_decoder)");
    const g = graphs[role];
    if (!isObject(g)) throw invalid(field, `${JSON.stringify(g)?.slice(0, 40)} (want an object)`);
    if (g.precision !== want) throw invalid(`${field}.precision`, `${JSON.stringify(g.precision)} (want "${want}")`);
    for (const k of ["graph", "data"]) {
      const f = str(g, k, `${field}.`);
      if (!(f in files) || !Object.prototype.hasOwnProperty.call(files, f)) throw invalid(`${field}.${k}`, `${JSON.stringify(f)} is not in files`);
    }
    if (g.graph === g.data) throw invalid(`${field}.data`, "is also the graph");
  }
  return v as unknown as WebPackageManifest;
}

/**
 * Where verified chunks are kept between downloads, keyed by the chunk's URL (which carries its
 * SHA-256: ?sha256=). get may return bytes that were altered since: fetchModelPackage verifies
 * them again and deletes them when their hash is wrong.
 */
export interface ChunkStore {
  get(key: string): Promise<Uint8Array | undefined>;
  put(key: string, bytes: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
}

/** A ChunkStore in memory (Node, tests, or a page that wants no persistence). */
export class MemoryChunkStore implements ChunkStore {
  readonly entries = new Map<string, Uint8Array>();
  async get(key: string): Promise<Uint8Array | undefined> {
    return this.entries.get(key);
  }
  async put(key: string, bytes: Uint8Array): Promise<void> {
    this.entries.set(key, bytes.slice());
  }
  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }
}

/** The default Cache API cache name of CacheStorageChunkStore. */
export const CHUNK_CACHE_NAME = "flextok-web-package-v1";

/** A ChunkStore in the Cache API (browsers, service workers): chunks survive reloads. */
export class CacheStorageChunkStore implements ChunkStore {
  private cache: Promise<Cache> | undefined;
  constructor(
    readonly cacheName: string = CHUNK_CACHE_NAME,
    private readonly storage: CacheStorage | undefined = (globalThis as { caches?: CacheStorage }).caches,
  ) {}
  private open(): Promise<Cache> {
    if (!this.storage) return Promise.reject(new FlexTokError("fetch_failed", "flextok: the Cache API is not available here"));
    this.cache ??= this.storage.open(this.cacheName);
    return this.cache;
  }
  async get(key: string): Promise<Uint8Array | undefined> {
    const r = await (await this.open()).match(key);
    return r ? new Uint8Array(await r.arrayBuffer()) : undefined;
  }
  async put(key: string, bytes: Uint8Array): Promise<void> {
    const body = bytes.slice(); // a copy the Response may own
    await (await this.open()).put(key, new Response(body, { headers: { "Content-Type": "application/octet-stream", "Content-Length": String(body.length) } }));
  }
  async delete(key: string): Promise<void> {
    await (await this.open()).delete(key);
  }
}

/** The store fetchModelPackage uses by default: the Cache API where it exists, else none. */
export function defaultChunkStore(): ChunkStore | null {
  return (globalThis as { caches?: CacheStorage }).caches ? new CacheStorageChunkStore() : null;
}

/** A progress event: after every received piece of a chunk and every chunk read from the store. */
export interface PackageProgress {
  /** The file and chunk that advanced. */
  file: string;
  chunk: string;
  /** Bytes of this file done and in all. */
  fileBytes: number;
  fileTotal: number;
  /** Bytes of the whole download (the selected files) done and in all. */
  bytes: number;
  total: number;
  /** The chunk came from the ChunkStore (no network). */
  fromCache: boolean;
}

/** Options of fetchModelPackage. */
export interface FetchModelPackageOptions {
  /** Called as bytes arrive (and for chunks read from the store). */
  onProgress?: (p: PackageProgress) => void;
  /** Aborts the download (code "aborted"); the chunks verified so far stay in the store. */
  signal?: AbortSignal;
  /** Where verified chunks are kept (default: defaultChunkStore(); null: none). */
  cache?: ChunkStore | null;
  /** The graphs to download (default: every graph of the package). */
  graphs?: GraphRole[];
  /** Chunks downloaded at once (default 4). */
  concurrency?: number;
  /** The fetch function (default globalThis.fetch). */
  fetch?: typeof fetch;
  /**
   * Also check every reassembled file's SHA-256 (default false: the chunks' hashes already
   * cover every byte; this catches a manifest whose file hash disagrees with its chunks, at
   * the cost of hashing everything a second time).
   */
  verifyFiles?: boolean;
  /**
   * The model the page needs, e.g. a payload's (decodePayload(...).model) or a ModelInfo's: a
   * package of another model (other digest, FSQ levels or length) is refused with
   * "model_mismatch" before any chunk is downloaded. A hex string compares the digest only.
   */
  model?: Pick<ModelIdentity, "digest" | "fsq" | "max_tokens"> | string;
}

/** A downloaded, verified package. */
export interface ModelPackage {
  /** The manifest's URL. */
  url: string;
  manifest: WebPackageManifest;
  /** Each downloaded file's reassembled bytes, by file name. */
  files: Map<string, Uint8Array>;
  /** Bytes read from the network, and from the ChunkStore. */
  downloadedBytes: number;
  cachedBytes: number;
  /** A graph's files (throws "manifest_invalid" for a role the package lacks or that was not downloaded). */
  graph(role: GraphRole): { graph: Uint8Array; data: Uint8Array; dataName: string; precision: "fp32" | "fp16" };
}

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Refuses a package of another model than want (code "model_mismatch"). */
function checkModel(m: WebPackageManifest, want: Pick<ModelIdentity, "digest" | "fsq" | "max_tokens"> | string, url: string): void {
  const got = m.model;
  const digest = typeof want === "string" ? want.toLowerCase() : hex(want.digest);
  const same =
    got.digest === digest &&
    (typeof want === "string" || (want.max_tokens === got.max_tokens && want.fsq.length === got.fsq_levels.length && want.fsq.every((l, i) => l === got.fsq_levels[i])));
  if (!same) {
    const detail = `the package at ${url} is model "${got.name}" (digest ${got.digest.slice(0, 12)}…, fsq ${got.fsq_levels.join(",")}, ${got.max_tokens} tokens); want digest ${digest.slice(0, 12)}…`;
    throw new FlexTokError("model_mismatch", `flextok: ${detail}`, { detail });
  }
}

function abortError(signal: AbortSignal): FlexTokError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? r.message : r === undefined ? "" : String(r);
  return new FlexTokError("aborted", why ? `flextok: aborted: ${why}` : "flextok: aborted", { cause: r });
}

async function sha256Hex(b: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>)));
}

async function httpError(resp: Response, what: string): Promise<FlexTokError> {
  let msg = "";
  try {
    const text = (await resp.text()).slice(0, 2000);
    try {
      const e = (JSON.parse(text) as { error?: { message?: unknown } }).error;
      msg = typeof e?.message === "string" ? e.message : text.trim();
    } catch {
      msg = text.trim();
    }
  } catch {
    // the body is gone too: the status says enough
  }
  const detail = `HTTP ${resp.status}${msg ? `: ${msg.slice(0, 200)}` : ""}`;
  return new FlexTokError("http_error", `flextok: ${what}: ${detail}`, { detail });
}

/** The URL of a chunk: beside the manifest, content addressed by ?sha256= (docs/web-package.md). */
export function chunkURL(manifestURL: string | URL, c: PackageChunk): string {
  return new URL(`${encodeURIComponent(c.name)}?sha256=${c.sha256}`, manifestURL).href;
}

/** The manifest URL of url: url itself, or url + "manifest.json" when it ends with "/". */
function manifestURL(url: string | URL): string {
  const base = typeof globalThis.location === "object" && globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(String(url), base);
  if (u.pathname.endsWith("/")) u.pathname += WEB_PACKAGE_MANIFEST;
  return u.href;
}

/**
 * Downloads the browser model package whose manifest.json is at url (or, for a URL ending in
 * "/", at url + "manifest.json"), e.g. `flextok serve`'s "/v1/web-package/manifest.json".
 *
 * Each chunk is read from the ChunkStore when it holds a copy whose SHA-256 is right, else
 * fetched (at most `concurrency` at once) from its content-addressed URL, checked for length and
 * SHA-256, and put in the store before the next is counted done: an interrupted download
 * (abort, a network error, a closed tab) resumes with only the missing chunks. Files are
 * reassembled in place (with verifyFiles, their whole SHA-256 is checked too).
 *
 * Throws FlexTokError: "manifest_invalid" or "unsupported_version" (the manifest),
 * "http_error" (a non-2xx status), "fetch_failed" (no response), "truncated" (a chunk's body
 * shorter than listed or cut off), "hash_mismatch" (a chunk or file whose bytes are not the
 * listed ones), "aborted", "out_of_memory" (a file too large to allocate), "model_mismatch"
 * (opts.model names another model).
 */
export async function fetchModelPackage(url: string | URL, opts: FetchModelPackageOptions = {}): Promise<ModelPackage> {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const signal = opts.signal;
  const store = opts.cache === undefined ? defaultChunkStore() : opts.cache;
  const murl = manifestURL(url);
  if (signal?.aborted) throw abortError(signal);

  let resp: Response;
  try {
    resp = await doFetch(murl, signal ? { signal } : {});
  } catch (e) {
    if (signal?.aborted) throw abortError(signal);
    throw new FlexTokError("fetch_failed", `flextok: fetching ${murl}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (!resp.ok) throw await httpError(resp, `fetching ${murl}`);
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(await resp.arrayBuffer());
  } catch (e) {
    if (signal?.aborted) throw abortError(signal);
    throw new FlexTokError("truncated", `flextok: reading ${murl}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const manifest = parseManifest(raw);
  if (opts.model !== undefined) checkModel(manifest, opts.model, murl);

  const roles = opts.graphs ?? (Object.keys(manifest.graphs) as GraphRole[]);
  const wanted: string[] = [];
  for (const role of roles) {
    const g = manifest.graphs[role];
    if (!g) throw new FlexTokError("manifest_invalid", `flextok: the web package at ${murl} has no ${role} graph`, { field: "graphs" });
    for (const f of [g.graph, g.data]) if (!wanted.includes(f)) wanted.push(f);
  }

  const files = new Map<string, Uint8Array>();
  let total = 0;
  for (const name of wanted) total += manifest.files[name]!.size;
  const fileDone = new Map<string, number>();
  let done = 0;
  let downloadedBytes = 0;
  let cachedBytes = 0;
  const jobs: { file: string; offset: number; chunk: PackageChunk }[] = [];
  for (const name of wanted) {
    const f = manifest.files[name]!;
    try {
      files.set(name, new Uint8Array(f.size));
    } catch (e) {
      throw new FlexTokError("out_of_memory", `flextok: cannot allocate ${f.size} bytes for ${name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    fileDone.set(name, 0);
    let off = 0;
    for (const c of f.chunks) {
      jobs.push({ file: name, offset: off, chunk: c });
      off += c.size;
    }
  }

  const inner = new AbortController();
  const onAbort = () => inner.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const progress = (file: string, chunk: string, n: number, fromCache: boolean) => {
    done += n;
    fileDone.set(file, fileDone.get(file)! + n);
    opts.onProgress?.({ file, chunk, fileBytes: fileDone.get(file)!, fileTotal: manifest.files[file]!.size, bytes: done, total, fromCache });
  };

  const one = async (job: { file: string; offset: number; chunk: PackageChunk }): Promise<void> => {
    const { file, offset, chunk: c } = job;
    const dst = files.get(file)!.subarray(offset, offset + c.size);
    const key = chunkURL(murl, c);
    if (store) {
      let cached: Uint8Array | undefined;
      try {
        cached = await store.get(key);
      } catch {
        cached = undefined; // a broken store is a miss
      }
      if (cached && cached.length === c.size && (await sha256Hex(cached)) === c.sha256) {
        dst.set(cached);
        cachedBytes += c.size;
        progress(file, c.name, c.size, true);
        return;
      }
      if (cached) await store.delete(key).catch(() => undefined);
    }
    let r: Response;
    try {
      r = await doFetch(key, { signal: inner.signal });
    } catch (e) {
      if (inner.signal.aborted) throw signal?.aborted ? abortError(signal) : e;
      throw new FlexTokError("fetch_failed", `flextok: fetching chunk ${c.name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (!r.ok) throw await httpError(r, `fetching chunk ${c.name}`);
    let got = 0;
    try {
      if (!r.body) throw new Error("no body");
      const reader = r.body.getReader();
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        if (got + value.length > c.size) {
          await reader.cancel().catch(() => undefined);
          throw new FlexTokError("hash_mismatch", `flextok: chunk ${c.name}: more than the ${c.size} bytes the manifest lists`, { detail: "too long" });
        }
        dst.set(value, got);
        got += value.length;
        progress(file, c.name, value.length, false); // a failed chunk fails the whole call

      }
    } catch (e) {
      if (e instanceof FlexTokError) throw e;
      if (inner.signal.aborted) throw signal?.aborted ? abortError(signal) : e;
      throw new FlexTokError("truncated", `flextok: chunk ${c.name}: cut off after ${got} of ${c.size} bytes: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (got < c.size) {
      throw new FlexTokError("truncated", `flextok: chunk ${c.name}: ${got} of ${c.size} bytes`, { detail: `${got} of ${c.size} bytes` });
    }
    const h = await sha256Hex(dst);
    if (h !== c.sha256) {
      throw new FlexTokError("hash_mismatch", `flextok: chunk ${c.name}: sha256 ${h}, the manifest lists ${c.sha256}`, { detail: h });
    }
    downloadedBytes += c.size;
    if (store) await store.put(key, dst).catch(() => undefined); // a full store only costs the resume
  };

  // A pool of workers over the job list; the first failure stops the others.
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < jobs.length) {
      const job = jobs[next++]!;
      try {
        await one(job);
      } catch (e) {
        if (failure === undefined) {
          failure = e;
          inner.abort(e);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 4, jobs.length)) }, worker));
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (signal?.aborted) throw abortError(signal);
  if (failure !== undefined) {
    if (failure instanceof FlexTokError) throw failure;
    throw new FlexTokError("fetch_failed", `flextok: ${failure instanceof Error ? failure.message : String(failure)}`, { cause: failure });
  }
  for (const name of opts.verifyFiles ? wanted : []) {
    const h = await sha256Hex(files.get(name)!);
    if (h !== manifest.files[name]!.sha256) {
      throw new FlexTokError("hash_mismatch", `flextok: file ${name}: reassembled sha256 ${h}, the manifest lists ${manifest.files[name]!.sha256}`, { detail: h });
    }
  }
  return {
    url: murl,
    manifest,
    files,
    downloadedBytes,
    cachedBytes,
    graph(role: GraphRole) {
      const g = manifest.graphs[role];
      const graph = g && files.get(g.graph);
      const data = g && files.get(g.data);
      if (!g || !graph || !data) {
        throw new FlexTokError("manifest_invalid", `flextok: the web package has no ${role} graph${g ? " downloaded" : ""}`, { field: "graphs" });
      }
      return { graph, data, dataName: g.data, precision: g.precision };
    },
  };
}

/** The codes fetchModelPackage throws (for exhaustive handling in a page). */
export const PACKAGE_ERROR_CODES: readonly ErrorCode[] = [
  "manifest_invalid",
  "unsupported_version",
  "http_error",
  "fetch_failed",
  "truncated",
  "hash_mismatch",
  "aborted",
  "out_of_memory",
  "model_mismatch",
];
