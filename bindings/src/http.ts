// Reading the token service's streamed generation (POST /v1/generate of `flextok serve`,
// docs/server.md "Generation") with fetch() streams: the response body is a sequence of frames,
// each a 4-byte big-endian length and that many bytes; the frames are n stream headers, then
// n × k stream chunks (token position by position, samples interleaved), then n complete
// payloads; an error after the first byte is a last frame holding JSON ({"error": {...}}).
//
// This module only splits and classifies the frames: the frames themselves are the payload
// stream form of docs/payload.md, which a Model's Stream (openStream, push) decodes in the wasm
// module as they arrive. It needs no wasm and runs in browsers, workers and Node ≥ 18.

import { decodeStreamChunk, decodeStreamHeader, type StreamChunkView, type StreamHeaderView } from "./codec.js";
import { FlexTokError, type ErrorCode } from "./errors.js";

/** The media type of POST /v1/generate's response. */
export const GENERATE_STREAM_TYPE = "application/vnd.flextok.stream+msgpack";

/** The largest frame readFrames accepts by default (a complete payload of 16 samples × 256 ids is far below). */
export const MAX_FRAME_BYTES = 16 << 20;

/** Options of readFrames, readGenerateStream and fetchGenerateStream. */
export interface FrameOptions {
  /** Aborts the reading (throws code "aborted" and cancels the body, which ends the generation). */
  signal?: AbortSignal;
  /** A frame declaring more bytes than this is refused with code "too_large" (default MAX_FRAME_BYTES). */
  maxFrameBytes?: number;
}

/** One frame of the generation stream, classified by its place in the documented order. */
export type GenerateStreamEvent =
  /** Sample `sample`'s stream header: give `bytes` to Model.openStream. */
  | { type: "header"; sample: number; bytes: Uint8Array; header: StreamHeaderView }
  /**
   * Sample `sample`'s token at `position` (0-based; the stream then holds position + 1 ids): give
   * `bytes` to Stream.push. `last` on the final position.
   */
  | { type: "chunk"; sample: number; position: number; bytes: Uint8Array; chunk: StreamChunkView; last: boolean }
  /** Sample `sample`'s complete payload (the token payload form; decodePayload reads it). */
  | { type: "payload"; sample: number; bytes: Uint8Array };

function abortError(signal: AbortSignal): FlexTokError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? r.message : r === undefined ? "" : String(r);
  return new FlexTokError("aborted", why ? `flextok: aborted: ${why}` : "flextok: aborted", { cause: r });
}

/** The FlexTokError of a service error body, {"error": {code, message, field?, limit?}}. */
function serviceError(text: string, status?: number): FlexTokError {
  const where = status === undefined ? "flextok: the generation stream" : `flextok: HTTP ${status}`;
  let e: unknown;
  try {
    e = (JSON.parse(text) as { error?: unknown }).error;
  } catch {
    e = undefined;
  }
  if (e && typeof e === "object" && typeof (e as { code?: unknown }).code === "string") {
    const o = e as { code: string; message?: unknown; field?: unknown; limit?: unknown };
    const message = typeof o.message === "string" && o.message !== "" ? o.message : o.code;
    const opts: { field?: string; limit?: string; detail: string } = { detail: message };
    if (typeof o.field === "string" && o.field !== "") opts.field = o.field;
    if (typeof o.limit === "string" && o.limit !== "") opts.limit = o.limit;
    return new FlexTokError(o.code as ErrorCode, `${where}: ${message}`, opts);
  }
  const t = text.trim().slice(0, 200);
  return new FlexTokError(status === undefined ? "bad_response" : "fetch_failed", `${where}: ${t || "no error body"}`, { detail: t });
}

/**
 * Splits a body of length-prefixed frames (4-byte big-endian length, then that many bytes) into
 * frames, whatever the network's chunk boundaries: a frame split across reads is joined, several
 * frames in one read are all yielded. A frame that starts with "{" is the server's JSON error
 * frame: it is thrown as a FlexTokError with the server's code (and field and limit). A body
 * that ends inside a frame throws code "truncated"; a zero-length frame, "format". Stopping the
 * iteration early (break, return, an error in the loop) cancels the body.
 */
export async function* readFrames(body: ReadableStream<Uint8Array>, opts: FrameOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  const max = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
  const signal = opts.signal;
  if (signal?.aborted) throw abortError(signal);
  const reader = body.getReader();
  let onAbort: (() => void) | undefined;
  const aborted =
    signal &&
    new Promise<never>((_, reject) => {
      onAbort = () => reject(abortError(signal));
      signal.addEventListener("abort", onAbort, { once: true });
    });
  aborted?.catch(() => {}); // observed below; never an unhandled rejection
  let buf: Uint8Array = new Uint8Array(0); // unread bytes
  let finished = false;
  let total = 0;
  try {
    for (;;) {
      // Yield every whole frame in the buffer.
      let off = 0;
      while (buf.length - off >= 4) {
        const len = ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
        if (len === 0) throw new FlexTokError("format", `flextok: the generation stream: an empty frame at byte ${total + off}`);
        if (len > max) {
          throw new FlexTokError("too_large", `flextok: the generation stream: a frame of ${len} bytes at byte ${total + off} (at most ${max})`);
        }
        if (buf.length - off - 4 < len) break;
        const frame = buf.slice(off + 4, off + 4 + len);
        off += 4 + len;
        if (frame[0] === 0x7b) throw serviceError(new TextDecoder().decode(frame));
        yield frame;
        if (signal?.aborted) throw abortError(signal);
      }
      if (off > 0) {
        buf = buf.slice(off);
        total += off;
      }
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await (aborted ? Promise.race([reader.read(), aborted]) : reader.read());
      } catch (e) {
        if (e instanceof FlexTokError) throw e;
        // A connection that broke, or a fetch aborted by the caller's own signal.
        const m = e instanceof Error ? e.message : String(e);
        const code = e instanceof Error && e.name === "AbortError" ? "aborted" : "fetch_failed";
        throw new FlexTokError(code, `flextok: the generation stream: ${m}`, { detail: m, cause: e });
      }
      if (r.done) {
        finished = true;
        if (buf.length > 0) {
          const have = buf.length < 4 ? `${buf.length} of its 4 length bytes` : `${buf.length - 4} of its ${((buf[0]! << 24) | (buf[1]! << 16) | (buf[2]! << 8) | buf[3]!) >>> 0} bytes`;
          throw new FlexTokError("truncated", `flextok: the generation stream ended inside a frame at byte ${total} (${have})`);
        }
        return;
      }
      const v = r.value;
      if (v.length === 0) continue;
      if (buf.length === 0) buf = v;
      else {
        const b = new Uint8Array(buf.length + v.length);
        b.set(buf);
        b.set(v, buf.length);
        buf = b;
      }
    }
  } finally {
    if (onAbort) signal!.removeEventListener("abort", onAbort);
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/**
 * Reads a POST /v1/generate response: checks its status (a non-2xx is thrown as the server's
 * JSON error, with its code, field and limit) and type, then yields its frames classified by
 * their place in the documented order: n "header" events, n × k "chunk" events (position by
 * position, sample by sample), n "payload" events. n is the X-Flextok-Samples header (read by
 * the leading stream headers when a cross-origin response hides it), k each header's count.
 * Chunk frames are checked against their place (their start must be their position: "stream"
 * otherwise); a body that ends before the last payload throws "truncated", frames after it
 * "trailing"; the server's error frame, its code (e.g. "canceled" with limit
 * "request_timeout").
 *
 * Hand the headers to Model.openStream and the chunks to Stream.push: the image sharpens as
 * the tokens arrive (the demo page's Generate mode, on the server).
 */
export async function* readGenerateStream(response: Response, opts: FrameOptions = {}): AsyncGenerator<GenerateStreamEvent, void, undefined> {
  if (!response.ok) {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // the body failed too: report the status
    }
    throw serviceError(text, response.status);
  }
  const type = (response.headers.get("Content-Type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== GENERATE_STREAM_TYPE) {
    response.body?.cancel().catch(() => {});
    throw new FlexTokError("bad_response", `flextok: the generation stream: Content-Type ${JSON.stringify(type)}, want ${GENERATE_STREAM_TYPE}`);
  }
  if (!response.body) throw new FlexTokError("truncated", "flextok: the generation stream: no body");
  const declared = response.headers.get("X-Flextok-Samples");
  let n = declared === null ? -1 : Number(declared);
  if (declared !== null && !(Number.isInteger(n) && n >= 1)) {
    response.body.cancel().catch(() => {});
    throw new FlexTokError("bad_response", `flextok: the generation stream: X-Flextok-Samples ${JSON.stringify(declared)}`);
  }
  const headers: StreamHeaderView[] = [];
  let k = 0;
  let index = 0; // frames after the headers
  let pending: Uint8Array | null = null; // the first frame after the headers, when n was read from them
  const frames = readFrames(response.body, opts);
  const describe = () => (n < 0 ? "before any stream header" : `after ${headers.length} headers, ${Math.min(index, n * k)} of ${n * k} chunks and ${Math.max(0, index - n * k)} of ${n} payloads`);
  const next = async (): Promise<Uint8Array | null> => {
    if (pending) {
      const p = pending;
      pending = null;
      return p;
    }
    const r = await frames.next();
    return r.done ? null : r.value;
  };
  try {
    for (;;) {
      const f = await next();
      if (f === null) {
        if (n > 0 && headers.length === n && index === n * k + n) return;
        throw new FlexTokError("truncated", `flextok: the generation stream ended ${describe()}`);
      }
      if (n < 0 || headers.length < n) {
        let h: StreamHeaderView;
        try {
          h = decodeStreamHeader(f);
        } catch (e) {
          if (n < 0 && headers.length > 0) {
            // No X-Flextok-Samples: the headers ended here.
            n = headers.length;
            pending = f;
            continue;
          }
          throw e;
        }
        if (h.count === undefined || h.count < 1) {
          throw new FlexTokError("stream", `flextok: the generation stream: header ${headers.length} does not announce its token count`, { field: "count" });
        }
        if (headers.length === 0) k = h.count;
        else if (h.count !== k) throw new FlexTokError("stream", `flextok: the generation stream: header ${headers.length} announces ${h.count} tokens, header 0 ${k}`, { field: "count" });
        yield { type: "header", sample: headers.length, bytes: f, header: h };
        headers.push(h);
        continue;
      }
      if (index < n * k) {
        const position = Math.floor(index / n);
        const sample = index % n;
        const chunk = decodeStreamChunk(f, headers[sample]!);
        if (chunk.start !== position || chunk.ids.length !== 1) {
          throw new FlexTokError("stream", `flextok: the generation stream: frame ${n + index} (sample ${sample}, token ${position}) holds ids ${chunk.start}..${chunk.start + chunk.ids.length - 1}`, { field: "start" });
        }
        index++;
        yield { type: "chunk", sample, position, bytes: f, chunk, last: position === k - 1 };
        continue;
      }
      if (index < n * k + n) {
        const sample = index - n * k;
        index++;
        yield { type: "payload", sample, bytes: f };
        continue;
      }
      throw new FlexTokError("trailing", `flextok: the generation stream: a frame after the ${n} complete payloads`);
    }
  } finally {
    await frames.return(undefined);
  }
}

/** The JSON body of POST /v1/generate (docs/server.md; absent fields take the model's defaults). */
export interface GenerateRequestBody {
  class: string | number;
  n?: number;
  k?: number;
  cfg?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  greedy?: boolean;
  seed?: number;
  model?: string;
}

/**
 * POSTs body to url (a /v1/generate URL) and reads the response with readGenerateStream. A fetch
 * that fails is "fetch_failed" (or "aborted" when opts.signal fired). opts.fetch replaces the
 * global fetch.
 */
export async function* fetchGenerateStream(
  url: string | URL,
  body: GenerateRequestBody,
  opts: FrameOptions & { fetch?: typeof fetch; headers?: Record<string, string> } = {},
): AsyncGenerator<GenerateStreamEvent, void, undefined> {
  const f = opts.fetch ?? globalThis.fetch;
  let resp: Response;
  try {
    const init: RequestInit = {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: GENERATE_STREAM_TYPE, ...opts.headers },
      body: JSON.stringify(body),
    };
    if (opts.signal) init.signal = opts.signal;
    resp = await f(url, init);
  } catch (e) {
    if (opts.signal?.aborted) throw abortError(opts.signal);
    const m = e instanceof Error ? e.message : String(e);
    throw new FlexTokError("fetch_failed", `flextok: POST ${String(url)}: ${m}`, { detail: m, cause: e });
  }
  yield* readGenerateStream(resp, opts);
}
