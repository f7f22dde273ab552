// readFrames / readGenerateStream / fetchGenerateStream: the frames of POST /v1/generate
// (docs/server.md) split whatever the network's chunk boundaries, the JSON error frame and
// error responses as typed errors, a truncated body as "truncated". No wasm needed: the
// bodies are built from the payload test vectors with the codec (n samples × k tokens).
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  FlexTokError,
  GENERATE_STREAM_TYPE,
  decodePayload,
  encodePayload,
  fetchGenerateStream,
  readFrames,
  readGenerateStream,
  splitPayload,
  type GenerateStreamEvent,
} from "../src/node.js";
import { VECTORS, read } from "./util.js";

function frame(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + b.length);
  new DataView(out.buffer).setUint32(0, b.length);
  out.set(b, 4);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A body as the server sends it: n headers, n × k chunks (position by position), n payloads. */
function generation(n: number, k: number) {
  const base = decodePayload(read(join(VECTORS, "tokens_256.msgpack")));
  const samples = Array.from({ length: n }, (_, s) => {
    const ids = base.ids.slice(s * k, s * k + k);
    const view = { ...base, count: k, ids };
    const payload = encodePayload(view);
    const { header, chunks } = splitPayload(view, Array(k).fill(1));
    return { payload, header, chunks, ids: Array.from(ids) };
  });
  const frames: Uint8Array[] = [];
  for (const s of samples) frames.push(s.header);
  for (let t = 0; t < k; t++) for (const s of samples) frames.push(s.chunks[t]!);
  for (const s of samples) frames.push(s.payload);
  return { samples, frames, body: concat(frames.map(frame)) };
}

/** A ReadableStream giving body cut at the given offsets (one read per piece). */
function streamOf(body: Uint8Array, cuts: number[] = []): ReadableStream<Uint8Array> {
  const at = [0, ...cuts.filter((c) => c > 0 && c < body.length).sort((a, b) => a - b), body.length];
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (i + 1 >= at.length) {
        ctl.close();
        return;
      }
      ctl.enqueue(body.slice(at[i], at[i + 1]));
      i++;
    },
  });
}

function response(body: Uint8Array | ReadableStream<Uint8Array>, n: number | null, init: ResponseInit = {}): Response {
  const headers = new Headers({ "Content-Type": GENERATE_STREAM_TYPE, ...(init.headers as Record<string, string>) });
  if (n !== null) headers.set("X-Flextok-Samples", String(n));
  const stream = body instanceof Uint8Array ? streamOf(body) : body;
  return new Response(stream, { status: init.status ?? 200, headers });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function rejects(p: Promise<unknown>, code: string, what = ""): Promise<FlexTokError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FlexTokError, `${what}: not a FlexTokError: ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return e;
  }
  assert.fail(`${what}: no error, want ${code}`);
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Checks the events against the generation they came from. */
function checkEvents(ev: GenerateStreamEvent[], g: ReturnType<typeof generation>, n: number, k: number): void {
  assert.equal(ev.length, n + n * k + n);
  ev.forEach((e, i) => {
    assert.ok(eq(e.bytes, g.frames[i]!), `frame ${i}`);
    if (i < n) assert.deepEqual([e.type, e.sample], ["header", i]);
    else if (i < n + n * k) {
      const j = i - n;
      assert.equal(e.type, "chunk");
      if (e.type !== "chunk") return;
      assert.deepEqual([e.sample, e.position, e.last], [j % n, Math.floor(j / n), Math.floor(j / n) === k - 1]);
      assert.equal(e.chunk.ids[0], g.samples[e.sample]!.ids[e.position]);
    } else assert.deepEqual([e.type, e.sample], ["payload", i - n - n * k]);
  });
}

describe("readFrames", () => {
  test("every chunk boundary: one cut anywhere, one byte at a time, all in one read", async () => {
    const g = generation(2, 3);
    const want = g.frames;
    const cases: number[][] = [[]];
    for (let c = 1; c < g.body.length; c++) cases.push([c]);
    cases.push(Array.from({ length: g.body.length }, (_, i) => i));
    for (let seed = 1; seed <= 50; seed++) {
      // random cuts, some several in one frame, some several frames in one read
      let x = seed;
      const cuts: number[] = [];
      for (let j = 0; j < 8; j++) {
        x = (x * 1103515245 + 12345) % 2147483648;
        cuts.push(x % g.body.length);
      }
      cases.push(cuts);
    }
    for (const cuts of cases) {
      const got = await collect(readFrames(streamOf(g.body, cuts)));
      assert.equal(got.length, want.length, `cuts ${cuts}`);
      got.forEach((f, i) => assert.ok(eq(f, want[i]!), `cuts ${cuts}: frame ${i}`));
    }
  });

  test("the JSON error frame: the server's code, message, field and limit", async () => {
    const g = generation(1, 2);
    const err = new TextEncoder().encode(JSON.stringify({ error: { code: "canceled", message: "the request's time limit passed", limit: "request_timeout" } }));
    const body = concat([frame(g.frames[0]!), frame(g.frames[1]!), frame(err)]);
    for (const cuts of [[], [3], [body.length - 5], Array.from({ length: body.length }, (_, i) => i)]) {
      const seen: Uint8Array[] = [];
      const e = await rejects(
        (async () => {
          for await (const f of readFrames(streamOf(body, cuts))) seen.push(f);
        })(),
        "canceled",
        `cuts ${cuts}`,
      );
      assert.equal(seen.length, 2, "the frames before the error are yielded");
      assert.equal(e.limit, "request_timeout");
      assert.match(e.message, /time limit passed/);
    }
    const bad = frame(new TextEncoder().encode(JSON.stringify({ error: { code: "bad_request", message: "class: required", field: "class" } })));
    const e = await rejects(collect(readFrames(streamOf(bad))), "bad_request");
    assert.equal(e.field, "class");
    // '{' that is not the documented error JSON
    await rejects(collect(readFrames(streamOf(frame(new TextEncoder().encode("{nope"))))), "bad_response");
  });

  test("a body that ends inside a frame: truncated", async () => {
    const g = generation(1, 2);
    // every proper prefix that does not end on a frame boundary
    const bounds = new Set<number>([0]);
    let o = 0;
    for (const f of g.frames) bounds.add((o += 4 + f.length));
    for (let end = 1; end < g.body.length; end++) {
      const p = collect(readFrames(streamOf(g.body.subarray(0, end), [Math.floor(end / 2)])));
      if (bounds.has(end)) await p;
      else await rejects(p, "truncated", `end ${end}`);
    }
  });

  test("an empty frame, a frame over the limit", async () => {
    await rejects(collect(readFrames(streamOf(new Uint8Array(4)))), "format");
    const big = new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2]);
    await rejects(collect(readFrames(streamOf(big))), "too_large");
    const g = generation(1, 2);
    await rejects(collect(readFrames(streamOf(g.body), { maxFrameBytes: 8 })), "too_large");
  });

  test("stopping early or aborting cancels the body", async () => {
    const g = generation(2, 4);
    let canceled = 0;
    const mk = () => {
      // a server still generating: after these bytes, nothing yet
      const two = 8 + g.frames[0]!.length + g.frames[1]!.length;
      const inner = streamOf(g.body.subarray(0, two + 3), [5, 17, two - 2]).getReader();
      return new ReadableStream<Uint8Array>({
        async pull(ctl) {
          const r = await inner.read();
          if (r.done) await new Promise(() => {});
          else ctl.enqueue(r.value);
        },
        cancel() {
          canceled++;
        },
      });
    };
    for await (const _ of readFrames(mk())) break;
    assert.equal(canceled, 1, "break cancels");
    const ac = new AbortController();
    await rejects(
      (async () => {
        for await (const _ of readFrames(mk(), { signal: ac.signal })) ac.abort(new Error("user"));
      })(),
      "aborted",
    );
    assert.equal(canceled, 2, "abort cancels");
    // a read that never resolves: the abort still ends it
    const stuck = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}), cancel: () => void canceled++ });
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 20);
    await rejects(collect(readFrames(stuck, { signal: ac2.signal })), "aborted");
    assert.equal(canceled, 3);
  });
});

describe("readGenerateStream", () => {
  test("n samples × k tokens, classified, at any chunk boundaries, with or without X-Flextok-Samples", async () => {
    for (const [n, k] of [
      [1, 1],
      [1, 5],
      [3, 4],
    ] as const) {
      const g = generation(n, k);
      for (const cuts of [[], [1], [7, 8, 9], Array.from({ length: g.body.length }, (_, i) => i)]) {
        for (const declared of [n, null]) {
          const ev = await collect(readGenerateStream(response(streamOf(g.body, cuts), declared)));
          checkEvents(ev, g, n, k);
          const last = ev.at(-1)!;
          assert.ok(eq(last.bytes, g.samples[n - 1]!.payload));
        }
      }
    }
  });

  test("a stream that ends early is truncated (also on a frame boundary); extra frames are trailing", async () => {
    const g = generation(2, 3);
    let o = 0;
    for (let i = 0; i < g.frames.length; i++) {
      const end = o;
      o += 4 + g.frames[i]!.length;
      if (end === 0) continue;
      const e = await rejects(collect(readGenerateStream(response(g.body.subarray(0, end), 2))), "truncated", `after ${i} frames`);
      assert.match(e.message, /ended/);
    }
    await rejects(collect(readGenerateStream(response(new Uint8Array(0), 2))), "truncated");
    await rejects(collect(readGenerateStream(response(concat([g.body, frame(g.frames.at(-1)!)]), 2))), "trailing");
  });

  test("an error frame after some tokens: the events before it, then the server's error", async () => {
    const g = generation(1, 4);
    const err = frame(new TextEncoder().encode(JSON.stringify({ error: { code: "canceled", message: "time limit", limit: "request_timeout" } })));
    const body = concat([...g.frames.slice(0, 3).map(frame), err]);
    const seen: GenerateStreamEvent[] = [];
    const e = await rejects(
      (async () => {
        for await (const ev of readGenerateStream(response(streamOf(body, [2, 30]), 1))) seen.push(ev);
      })(),
      "canceled",
    );
    assert.equal(e.limit, "request_timeout");
    assert.deepEqual(
      seen.map((s) => s.type),
      ["header", "chunk", "chunk"],
    );
  });

  test("errors before the first byte: the HTTP status's JSON error", async () => {
    const r = new Response(JSON.stringify({ error: { code: "limit", message: "k = 999: over max_k 256", limit: "max_k" } }), {
      status: 422,
      headers: { "Content-Type": "application/json" },
    });
    const e = await rejects(collect(readGenerateStream(r)), "limit");
    assert.equal(e.limit, "max_k");
    assert.match(e.message, /HTTP 422/);
    await rejects(collect(readGenerateStream(new Response("<html>gateway</html>", { status: 502 }))), "fetch_failed");
    await rejects(collect(readGenerateStream(new Response("{}", { status: 200, headers: { "Content-Type": "application/json" } }))), "bad_response");
    await rejects(collect(readGenerateStream(response(generation(1, 1).body, 0))), "bad_response");
  });

  test("frames out of their places: stream errors", async () => {
    const g = generation(2, 2);
    // sample 1's token 0 where sample 0's token 1 belongs (its start is 0, not 1)
    const swapped = [...g.frames];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    await rejects(collect(readGenerateStream(response(concat(swapped.map(frame)), 2))), "stream");
  });
});

describe("fetchGenerateStream", () => {
  test("posts the JSON body and reads the stream; a failed fetch is fetch_failed", async () => {
    const g = generation(1, 3);
    let sent: { url: string; init: RequestInit | undefined } | null = null;
    const fake = (async (url: string | URL | Request, init?: RequestInit) => {
      sent = { url: String(url), init };
      return response(streamOf(g.body, [10]), 1);
    }) as typeof fetch;
    const ev = await collect(fetchGenerateStream("http://x/v1/generate", { class: "star", seed: 7 }, { fetch: fake }));
    checkEvents(ev, g, 1, 3);
    assert.ok(sent);
    const s = sent as { url: string; init: RequestInit };
    assert.equal(s.url, "http://x/v1/generate");
    assert.equal(s.init.method, "POST");
    assert.deepEqual(JSON.parse(String(s.init.body)), { class: "star", seed: 7 });
    const failing = (async () => {
      throw new TypeError("connection refused");
    }) as typeof fetch;
    await rejects(collect(fetchGenerateStream("http://x/v1/generate", { class: 0 }, { fetch: failing })), "fetch_failed");
  });
});
