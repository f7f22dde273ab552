// msgpack for the service protocol (requests, responses) and helpers for token payloads and
// stream messages. The payload helpers are for display and for making streams: they check
// what they need to read a payload, while the wasm module does the strict validation of
// docs/payload.md before it decodes anything.

import { decode, decodeMulti, encode } from "@msgpack/msgpack";
import { FlexTokError, type ErrorCode } from "./errors.js";
import {
  STREAM_FORMAT,
  TOKENS_FORMAT,
  type ErrorInfo,
  type Op,
  type OkResponse,
  type PayloadCond,
  type PayloadHints,
  type PayloadImage,
  type PayloadModel,
  type Request,
  type ResultOf,
  type StreamChunk,
  type StreamHeader,
  type TokenPayload,
  type Uint64,
} from "./types.js";

// ---------------------------------------------------------------------------------------------
// Requests and responses.

/** Encodes a request (absent optional fields are left out; bigint seeds as uint64). */
export function encodeRequest(req: Request): Uint8Array {
  // With useBigInt64, @msgpack/msgpack writes integers of 2^32 and over as float64: send
  // them as bigints (uint64). Size the buffer once for the bin fields (weights can be large).
  const out: Record<string, unknown> = {};
  let size = 1024;
  for (const [k, v] of Object.entries(req)) {
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 2 ** 32) out[k] = BigInt(v);
    else out[k] = v;
    if (v instanceof Uint8Array) size += v.length + 16;
  }
  return encode(out, { useBigInt64: true, ignoreUndefined: true, initialBufferSize: size });
}

function normalize(v: unknown): unknown {
  if (typeof v === "bigint") return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n ? Number(v) : v;
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = normalize(o[k]);
  }
  return v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** A decoded response, not yet checked for its op's fields. */
export type RawResponse = { id?: number; ok: true; [field: string]: unknown } | { id?: number; ok: false; error: ErrorInfo };

/** Decodes a response's bytes: a map with "ok" (and "error" when not ok). */
export function decodeResponse(bytes: Uint8Array): RawResponse {
  let v: unknown;
  try {
    v = normalize(decode(bytes, { useBigInt64: true }));
  } catch (e) {
    throw new FlexTokError("bad_response", `flextok: undecodable response: ${String(e)}`, { cause: e });
  }
  if (!isRecord(v) || typeof v.ok !== "boolean") {
    throw new FlexTokError("bad_response", "flextok: response is not a map with a boolean \"ok\"");
  }
  if (v.ok === false) {
    const e = v.error;
    if (!isRecord(e) || typeof e.code !== "string" || typeof e.message !== "string") {
      throw new FlexTokError("bad_response", "flextok: failed response without an error");
    }
  }
  return v as RawResponse;
}

/** Returns the result of a response to a request of op, or throws its FlexTokError. */
export function unwrap<O extends Op>(resp: RawResponse, op: O): OkResponse<O> {
  if (!resp.ok) throw FlexTokError.fromResponse(resp.error, op);
  return resp as unknown as OkResponse<O>;
}

/** Encodes req, runs it through handle (bytes → bytes) and returns the checked result. */
export function call<O extends Op>(
  handle: (b: Uint8Array) => Uint8Array,
  req: Request & { op: O },
): ResultOf[O] & { ok: true } {
  return unwrap(decodeResponse(handle(encodeRequest(req))), req.op);
}

// ---------------------------------------------------------------------------------------------
// Token payloads: views.

/** Codebook size: the product of the FSQ levels. */
export function codebookSize(fsq: readonly number[]): number {
  return fsq.reduce((a, b) => a * b, 1);
}

/** Bytes per id on the wire: 2 for codebooks of at most 65,536 entries, else 4. */
export function idBytes(fsq: readonly number[]): 2 | 4 {
  return codebookSize(fsq) <= 65536 ? 2 : 4;
}

/** Reads little-endian ids (2 or 4 bytes each) into a typed array (a copy, aligned). */
export function readIds(bin: Uint8Array, width: 2 | 4, field = "ids"): Uint16Array | Uint32Array {
  if (bin.length % width !== 0) {
    throw new FlexTokError("range", `flextok/payload: ${bin.length} bytes of ids is not a whole number of ${width}-byte ids`, { field });
  }
  const dv = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const n = bin.length / width;
  if (width === 2) {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true);
    return out;
  }
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getUint32(4 * i, true);
  return out;
}

/** Writes ids little-endian, width bytes each. */
export function writeIds(ids: ArrayLike<number>, width: 2 | 4): Uint8Array {
  const out = new Uint8Array(ids.length * width);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] ?? 0;
    if (width === 2) dv.setUint16(2 * i, id, true);
    else dv.setUint32(4 * i, id, true);
  }
  return out;
}

/** A whole payload, read: ids as numbers, frames and the codebook filled in. */
export interface PayloadView extends Omit<TokenPayload, "ids" | "frames"> {
  frames: number;
  /** frames × count ids, coarse to fine. */
  ids: Uint16Array | Uint32Array;
  /** Codebook size (the product of model.fsq). */
  codebook: number;
}

/** A stream header, read. */
export interface StreamHeaderView extends Omit<StreamHeader, "frames"> {
  frames: number;
  codebook: number;
}

/** A stream chunk, read. */
export interface StreamChunkView {
  start: number;
  ids: Uint16Array | Uint32Array;
  end: boolean;
}

/** A stream (header and the chunks so far), read. */
export interface StreamView {
  header: StreamHeaderView;
  chunks: StreamChunkView[];
  /** Ids received. */
  received: number;
  /** The end arrived. */
  done: boolean;
  /** frames × count when the header announces count, else undefined. */
  total: number | undefined;
}

/** Lowercase hex of bytes (e.g. a model digest). */
export function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

function fail(code: ErrorCode, field: string, what: string): never {
  throw new FlexTokError(code, `flextok/payload: ${field || "payload"}: ${what}`, { field, detail: what });
}

function msgpackError(e: unknown): FlexTokError {
  const m = e instanceof Error ? e.message : String(e);
  const code: ErrorCode = /Insufficient data|out of bounds|Offset is outside/i.test(m)
    ? "truncated"
    : /Extra \d+ of \d+ byte/.test(m)
      ? "trailing"
      : "type";
  return new FlexTokError(code, `flextok/payload: ${m}`, { field: "", detail: m, cause: e });
}

function num(o: Record<string, unknown>, k: string, path: string, required: boolean): number | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) fail("missing", path + k, "missing");
    return undefined;
  }
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) fail("type", path + k, "not a uint");
  return v;
}

function str(o: Record<string, unknown>, k: string, path: string, required: boolean): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) fail("missing", path + k, "missing");
    return undefined;
  }
  if (typeof v !== "string") fail("type", path + k, "not a str");
  return v;
}

function map(o: Record<string, unknown>, k: string, path: string, required: boolean): Record<string, unknown> | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) fail("missing", path + k, "missing");
    return undefined;
  }
  if (!isRecord(v)) fail("type", path + k, "not a map");
  return v;
}

interface Common {
  format: string;
  version: [number, number];
  model: PayloadModel;
  image: PayloadImage;
  frames: number;
  count: number | undefined;
  cond?: PayloadCond;
  hints?: PayloadHints;
  codebook: number;
}

function checkFormat(v: unknown, format: string): asserts v is Record<string, unknown> {
  if (!isRecord(v)) fail("format", "", "not a map");
  const keys = Object.keys(v);
  if (keys[0] !== "format") fail("format", "", "format is not the first key");
  if (v.format !== format) fail("format", "format", `format ${JSON.stringify(v.format)}, want ${JSON.stringify(format)}`);
}

function readCommon(v: unknown, format: string): Common {
  checkFormat(v, format);
  const ver = v.version;
  if (!Array.isArray(ver) || ver.length !== 2 || !ver.every((x) => typeof x === "number")) fail("type", "version", "not [major, minor]");
  if (ver[0] !== 1) fail("version", "version", `major version ${String(ver[0])}, this reader knows 1`);
  const m = map(v, "model", "", true)!;
  const fsq = m.fsq;
  if (!Array.isArray(fsq) || !fsq.every((x) => typeof x === "number" && Number.isInteger(x) && x >= 2)) fail("type", "model.fsq", "not an array of uints ≥ 2");
  const digest = m.digest;
  if (m.digest === undefined) fail("missing", "model.digest", "missing");
  if (!(digest instanceof Uint8Array)) fail("type", "model.digest", "not a bin");
  const model: PayloadModel = {
    name: str(m, "name", "model.", true)!,
    digest,
    fsq: fsq as number[],
    max_tokens: num(m, "max_tokens", "model.", true)!,
  };
  const im = map(v, "image", "", true)!;
  const image: PayloadImage = { height: num(im, "height", "image.", true)!, width: num(im, "width", "image.", true)! };
  const resize = str(im, "resize", "image.", false);
  if (resize !== undefined) image.resize = resize;
  const crop = str(im, "crop", "image.", false);
  if (crop !== undefined) image.crop = crop;
  if (im.source !== undefined) {
    const s = im.source;
    if (!Array.isArray(s) || s.length !== 2 || !s.every((x) => typeof x === "number")) fail("type", "image.source", "not [h, w]");
    image.source = [s[0] as number, s[1] as number];
  }
  const out: Common = {
    format,
    version: [ver[0] as number, ver[1] as number],
    model,
    image,
    frames: num(v, "frames", "", false) ?? 1,
    count: num(v, "count", "", false),
    codebook: codebookSize(model.fsq),
  };
  const c = map(v, "cond", "", false);
  if (c !== undefined) {
    const cond: PayloadCond = {};
    const cls = num(c, "class", "cond.", false);
    if (cls !== undefined) cond.class = cls;
    const prompt = str(c, "prompt", "cond.", false);
    if (prompt !== undefined) cond.prompt = prompt;
    out.cond = cond;
  }
  const h = map(v, "hints", "", false);
  if (h !== undefined) {
    const hints: PayloadHints = {};
    const steps = num(h, "steps", "hints.", false);
    if (steps !== undefined) hints.steps = steps;
    if (h.guidance !== undefined) {
      if (typeof h.guidance !== "number") fail("type", "hints.guidance", "not a float");
      hints.guidance = h.guidance;
    }
    if (h.apg !== undefined) {
      if (typeof h.apg !== "boolean") fail("type", "hints.apg", "not a bool");
      hints.apg = h.apg;
    }
    if (h.seed !== undefined) {
      if (typeof h.seed !== "number" && typeof h.seed !== "bigint") fail("type", "hints.seed", "not a uint");
      hints.seed = h.seed;
    }
    out.hints = hints;
  }
  return out;
}

function decodeOne(bytes: Uint8Array, format?: string): unknown {
  try {
    return normalize(decode(bytes, { useBigInt64: true }));
  } catch (e) {
    const err = msgpackError(e);
    if (err.code === "trailing" && format !== undefined) {
      // Like Go, read the first value's format before complaining about what follows it
      // (a whole stream given where a whole payload is expected is a "format" error).
      for (const v of decodeMulti(bytes, { useBigInt64: true })) {
        checkFormat(v, format);
        break;
      }
    }
    throw err;
  }
}

/**
 * Reads a whole payload's bytes into a view. Throws a FlexTokError with a payload code for
 * what it cannot read; it does not check everything the wasm module checks (ranges, limits,
 * duplicate keys).
 */
export function decodePayload(bytes: Uint8Array): PayloadView {
  const v = decodeOne(bytes, TOKENS_FORMAT);
  const c = readCommon(v, TOKENS_FORMAT);
  const o = v as Record<string, unknown>;
  if (c.count === undefined) fail("missing", "count", "missing");
  if (o.ids === undefined) fail("missing", "ids", "missing");
  if (!(o.ids instanceof Uint8Array)) fail("type", "ids", "not a bin");
  const ids = readIds(o.ids, idBytes(c.model.fsq));
  if (ids.length !== c.count * c.frames) fail("range", "ids", `${ids.length} ids for ${c.frames} × ${c.count}`);
  const view: PayloadView = {
    format: TOKENS_FORMAT,
    version: c.version,
    model: c.model,
    image: c.image,
    frames: c.frames,
    count: c.count,
    ids,
    codebook: c.codebook,
  };
  if (c.cond) view.cond = c.cond;
  if (c.hints) view.hints = c.hints;
  return view;
}

function headerView(v: unknown): StreamHeaderView {
  const c = readCommon(v, STREAM_FORMAT);
  const view: StreamHeaderView = {
    format: STREAM_FORMAT,
    version: c.version,
    model: c.model,
    image: c.image,
    frames: c.frames,
    codebook: c.codebook,
  };
  if (c.count !== undefined) view.count = c.count;
  if (c.cond) view.cond = c.cond;
  if (c.hints) view.hints = c.hints;
  return view;
}

/** Reads one stream header (a message of its own, e.g. the first WebSocket message). */
export function decodeStreamHeader(bytes: Uint8Array): StreamHeaderView {
  return headerView(decodeOne(bytes, STREAM_FORMAT));
}

function chunkView(v: unknown, header: StreamHeaderView, field: string): StreamChunkView {
  if (!isRecord(v)) fail("type", field, "chunk is not a map");
  const start = num(v, "start", field + ".", true)!;
  if (v.ids === undefined) fail("missing", field + ".ids", "missing");
  if (!(v.ids instanceof Uint8Array)) fail("type", field + ".ids", "not a bin");
  if (v.end !== undefined && typeof v.end !== "boolean") fail("type", field + ".end", "not a bool");
  return { start, ids: readIds(v.ids, idBytes(header.model.fsq), field + ".ids"), end: v.end === true };
}

/** Reads one stream chunk (a message of its own), given its stream's header. */
export function decodeStreamChunk(bytes: Uint8Array, header: StreamHeaderView): StreamChunkView {
  return chunkView(decodeOne(bytes), header, "chunk");
}

/**
 * Reads a header followed by any number of chunks, as consecutive msgpack values (a file, or
 * a byte stream's contents so far). Chunks out of order or after the end: code "stream".
 */
export function decodeStream(bytes: Uint8Array): StreamView {
  const values: unknown[] = [];
  try {
    for (const v of decodeMulti(bytes, { useBigInt64: true })) values.push(normalize(v));
  } catch (e) {
    throw msgpackError(e);
  }
  if (values.length === 0) fail("truncated", "", "empty input");
  const header = headerView(values[0]);
  const chunks: StreamChunkView[] = [];
  let received = 0;
  let done = false;
  for (let i = 1; i < values.length; i++) {
    const f = `chunks[${i - 1}]`;
    const ch = chunkView(values[i], header, f);
    if (done) fail("stream", f, "a chunk after the end");
    if (ch.start !== received) fail("stream", f + ".start", `start ${ch.start}, want ${received}`);
    received += ch.ids.length;
    done = ch.end;
    chunks.push(ch);
  }
  return { header, chunks, received, done, total: header.count === undefined ? undefined : header.count * header.frames };
}

// ---------------------------------------------------------------------------------------------
// Canonical encoding (docs/payload.md "Canonical bytes"): for making payloads and streams in
// JS, e.g. a Node server that streams the tokens it got from somewhere else.

class Writer {
  private buf = new Uint8Array(256);
  private n = 0;
  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.n + k));
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
  }
  byte(...bs: number[]): void {
    this.room(bs.length);
    for (const b of bs) this.buf[this.n++] = b;
  }
  be(v: number | bigint, bytes: number): void {
    let x = BigInt(v);
    const out: number[] = [];
    for (let i = 0; i < bytes; i++) {
      out.unshift(Number(x & 0xffn));
      x >>= 8n;
    }
    this.byte(...out);
  }
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }
  uint(v: Uint64): void {
    if (typeof v === "number" && (!Number.isInteger(v) || v < 0)) throw new RangeError(`flextok/payload: ${v} is not a uint`);
    const x = BigInt(v);
    if (x < 0n || x >= 1n << 64n) throw new RangeError(`flextok/payload: ${v} is not a uint64`);
    if (x < 128n) this.byte(Number(x));
    else if (x < 256n) (this.byte(0xcc), this.be(x, 1));
    else if (x < 65536n) (this.byte(0xcd), this.be(x, 2));
    else if (x < 1n << 32n) (this.byte(0xce), this.be(x, 4));
    else (this.byte(0xcf), this.be(x, 8));
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    if (b.length < 32) this.byte(0xa0 | b.length);
    else if (b.length < 256) this.byte(0xd9, b.length);
    else if (b.length < 65536) (this.byte(0xda), this.be(b.length, 2));
    else (this.byte(0xdb), this.be(b.length, 4));
    this.raw(b);
  }
  bin(b: Uint8Array): void {
    if (b.length < 256) this.byte(0xc4, b.length);
    else if (b.length < 65536) (this.byte(0xc5), this.be(b.length, 2));
    else (this.byte(0xc6), this.be(b.length, 4));
    this.raw(b);
  }
  mapHeader(n: number): void {
    if (n < 16) this.byte(0x80 | n);
    else (this.byte(0xde), this.be(n, 2));
  }
  arrayHeader(n: number): void {
    if (n < 16) this.byte(0x90 | n);
    else (this.byte(0xdc), this.be(n, 2));
  }
  float32(f: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, f);
    this.byte(0xca);
    this.raw(b);
  }
  bool(v: boolean): void {
    this.byte(v ? 0xc3 : 0xc2);
  }
  /** Writes a map of the entries whose value is not undefined, in order. */
  map(entries: [string, (() => void) | undefined][]): void {
    const set = entries.filter((e): e is [string, () => void] => e[1] !== undefined);
    this.mapHeader(set.length);
    for (const [k, f] of set) {
      this.str(k);
      f();
    }
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.n);
  }
}

interface CommonIn {
  format: string;
  version?: [number, number];
  model: PayloadModel;
  image: PayloadImage;
  frames?: number;
  count?: number;
  cond?: PayloadCond;
  hints?: PayloadHints;
}

function writeCommon(w: Writer, p: CommonIn, ids: Uint8Array | undefined): void {
  const { model: m, image: im, cond, hints } = p;
  const version = p.version ?? [1, 0];
  const condSet = cond !== undefined && (cond.class !== undefined || !!cond.prompt);
  const hintsSet =
    hints !== undefined && (!!hints.steps || hints.guidance !== undefined || hints.apg === true || hints.seed !== undefined);
  w.map([
    ["format", () => w.str(p.format)],
    ["version", () => (w.arrayHeader(2), w.uint(version[0]), w.uint(version[1]))],
    [
      "model",
      () =>
        w.map([
          ["name", () => w.str(m.name)],
          ["digest", () => w.bin(m.digest)],
          ["fsq", () => (w.arrayHeader(m.fsq.length), m.fsq.forEach((l) => w.uint(l)))],
          ["max_tokens", () => w.uint(m.max_tokens)],
        ]),
    ],
    [
      "image",
      () =>
        w.map([
          ["height", () => w.uint(im.height)],
          ["width", () => w.uint(im.width)],
          ["resize", im.resize ? () => w.str(im.resize!) : undefined],
          ["crop", im.crop ? () => w.str(im.crop!) : undefined],
          ["source", im.source ? () => (w.arrayHeader(2), w.uint(im.source![0]), w.uint(im.source![1])) : undefined],
        ]),
    ],
    ["frames", p.frames !== undefined && p.frames !== 1 ? () => w.uint(p.frames!) : undefined],
    ["count", p.count !== undefined ? () => w.uint(p.count!) : undefined],
    ["ids", ids ? () => w.bin(ids) : undefined],
    [
      "cond",
      condSet
        ? () =>
            w.map([
              ["class", cond!.class !== undefined ? () => w.uint(cond!.class!) : undefined],
              ["prompt", cond!.prompt ? () => w.str(cond!.prompt!) : undefined],
            ])
        : undefined,
    ],
    [
      "hints",
      hintsSet
        ? () =>
            w.map([
              ["steps", hints!.steps ? () => w.uint(hints!.steps!) : undefined],
              ["guidance", hints!.guidance !== undefined ? () => w.float32(hints!.guidance!) : undefined],
              ["apg", hints!.apg ? () => w.bool(true) : undefined],
              ["seed", hints!.seed !== undefined ? () => w.uint(hints!.seed!) : undefined],
            ])
        : undefined,
    ],
  ]);
}

function idsBin(ids: Uint8Array | Uint16Array | Uint32Array, fsq: readonly number[]): Uint8Array {
  return ids instanceof Uint8Array ? ids : writeIds(ids, idBytes(fsq));
}

/** The canonical bytes of a whole payload (from its wire form or a view). */
export function encodePayload(p: TokenPayload | PayloadView): Uint8Array {
  const w = new Writer();
  writeCommon(w, { ...p, format: TOKENS_FORMAT }, idsBin(p.ids, p.model.fsq));
  return w.bytes();
}

/** The canonical bytes of a stream header. */
export function encodeStreamHeader(h: StreamHeader | StreamHeaderView): Uint8Array {
  const w = new Writer();
  writeCommon(w, { ...h, format: STREAM_FORMAT }, undefined);
  return w.bytes();
}

/** The canonical bytes of a stream chunk of the stream whose header (model.fsq) is given. */
export function encodeStreamChunk(
  c: StreamChunk | StreamChunkView,
  header: { model: { fsq: readonly number[] } },
): Uint8Array {
  const w = new Writer();
  w.map([
    ["start", () => w.uint(c.start)],
    ["ids", () => w.bin(idsBin(c.ids, header.model.fsq))],
    ["end", c.end ? () => w.bool(true) : undefined],
  ]);
  return w.bytes();
}

/**
 * Splits a whole payload into a stream: the header and chunks of the given sizes (the rest in
 * one last chunk), canonical bytes, like Go's payload.Split.
 */
export function splitPayload(payload: Uint8Array | PayloadView, sizes: readonly number[]): { header: Uint8Array; chunks: Uint8Array[] } {
  const p = payload instanceof Uint8Array ? decodePayload(payload) : payload;
  const { ids: _ids, ...rest } = p;
  const hv: StreamHeaderView = { ...rest, format: STREAM_FORMAT };
  const header = encodeStreamHeader(hv);
  const chunks: StreamChunkView[] = [];
  let start = 0;
  for (const n of sizes) {
    if (!Number.isInteger(n) || n < 1) throw new FlexTokError("range", `flextok/payload: chunk size ${n}`, { field: "" });
    if (start >= p.ids.length) break;
    const end = Math.min(start + n, p.ids.length);
    chunks.push({ start, ids: p.ids.subarray(start, end), end: false });
    start = end;
  }
  if (start < p.ids.length) chunks.push({ start, ids: p.ids.subarray(start), end: false });
  const last = chunks[chunks.length - 1];
  if (last) last.end = true;
  return { header, chunks: chunks.map((c) => encodeStreamChunk(c, p)) };
}
