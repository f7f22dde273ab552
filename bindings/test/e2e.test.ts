// End to end in Node: the GOOS=js module through the FlexTok API, on the c1 checkpoint. The
// image bits must be the Go service's: the conformance script's requests are compared with
// conformance/testdata/service/golden.json, and testdata/images/shapes.png's with what
// bindings/test/gohelper computes natively.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  FlexTok,
  FlexTokError,
  decodePayload,
  decodeStreamHeader,
  encodePayload,
  initialize,
  splitPayload,
  startModule,
  type Model,
  type Progress,
} from "../src/node.js";
import { C1, ROOT, VECTORS, WASM, WASM_EXEC, c1Files, ensureWasm, read, scriptBMP, sha256 } from "./util.js";

/** c1's content digest: the Go tests compute the same (sdk/model, cmd/flextok). */
const C1_DIGEST = "7fadc08edeee59facde495ef7bfdf19c42d3145f7a9f7363ef1f267ea8ff4a8a";

interface GoldenStep {
  name: string;
  ok: boolean;
  code?: string;
  sha256?: Record<string, string>;
}
const golden = new Map(
  (JSON.parse(readFileSync(join(ROOT, "conformance", "testdata", "service", "golden.json"), "utf8")) as GoldenStep[]).map((g) => [g.name, g]),
);

function want(name: string, form: string): string {
  const g = golden.get(name);
  assert.ok(g?.sha256?.[form], `golden.json has no ${name}.${form}`);
  return g.sha256[form]!;
}

let ft: FlexTok;
let model: Model;
const events: Progress[] = [];

before(async () => {
  ensureWasm();
  ft = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC, onProgress: (p) => events.push(p) });
  const c1 = c1Files();
  model = await ft.openModel(c1.weights, { config: c1.config, vaeConfig: c1.vaeConfig, name: "c1" });
});
after(() => ft?.close());

describe("the conformance script, through the TS API, equals golden.json", () => {
  let pb: Uint8Array;
  const all = ["rgba", "png", "tensor"] as const;

  test("version and open/info", async () => {
    assert.deepEqual(await ft.version(), { protocol: 1, payload: [1, 0] });
    assert.equal(model.handle, 1);
    const info = await model.info();
    assert.equal(info.model.name, "c1");
    assert.equal(info.model.digest.length, 32);
    // The content digest of c1 (docs/payload.md, "Model identity"), not the file's SHA-256.
    assert.equal(Buffer.from(info.model.digest).toString("hex"), C1_DIGEST);
    assert.notEqual(C1_DIGEST, sha256(c1Files().weights));
    assert.deepEqual([info.width, info.height], [model.width, model.height]);
    assert.equal(info.codebook, info.model.fsq.reduce((a, b) => a * b, 1));
  });

  test("encode (the script image) and encode k=8 catmull-rom", async () => {
    const enc = await model.encode(scriptBMP());
    pb = enc.payload;
    assert.equal(sha256(pb), want("encode", "payload"));
    assert.ok(enc.encode_ms >= 0);
    const view = decodePayload(pb);
    assert.equal(view.count, enc.count);
    assert.equal(view.model.name, "c1");
    const enc8 = await model.encode(scriptBMP(), { k: 8, filter: "catmull-rom" });
    assert.equal(sha256(enc8.payload), want("encode_k8_catmull_rom", "payload"));
    assert.equal(enc8.count, 8);
  });

  for (const k of [1, 4, 16, 32]) {
    test(`decode k=${k}`, async () => {
      const img = await model.decode(pb, { k, steps: 2, seed: 7, output: [...all] });
      assert.equal(img.k, k);
      assert.equal(img.rgba!.length, 4 * img.width * img.height);
      for (const f of all) assert.equal(sha256(img[f]), want(`decode_k${k}`, f), f);
    });
  }

  test("decode k=8, cfg 3 without APG, a seed over 2^32; k=32 unguided", async () => {
    const img = await model.decode(pb, { k: 8, steps: 3, guidance: 3.0, apg: false, seed: 123456789012345, output: [...all] });
    assert.equal(img.seed, 123456789012345);
    for (const f of all) assert.equal(sha256(img[f]), want("decode_k8_cfg3", f), f);
    const un = await model.decode(pb, { steps: 2, guidance: 1.0, output: [...all] });
    for (const f of all) assert.equal(sha256(un[f]), want("decode_k32_unguided", f), f);
  });

  test("k: 0 means all tokens, as the CLI's -k 0 (decode and encode)", async () => {
    const img = await model.decode(pb, { k: 0, steps: 2, seed: 7, output: [...all] });
    assert.equal(img.k, 32);
    for (const f of all) assert.equal(sha256(img[f]), want("decode_k32", f), f);
    const enc = await model.encode(scriptBMP(), { k: 0 });
    assert.equal(enc.count, 32);
    assert.equal(sha256(enc.payload), want("encode", "payload"));
  });

  test("size: encode at 24 px, the payload decodes at 24 px, or at the size asked", async () => {
    const enc = await model.encode(scriptBMP(), { size: 24 });
    assert.equal(decodePayload(enc.payload).image.height, 24);
    const img = await model.decode(enc.payload, { steps: 1 });
    assert.deepEqual([img.width, img.height], [24, 24]);
    const small = await model.decode(enc.payload, { steps: 1, size: 16 });
    assert.deepEqual([small.width, small.height], [16, 16]);
    await assert.rejects(model.encode(scriptBMP(), { size: 30 }), { code: "bad_request" });
  });

  test("exifOrientation: a JPEG stored sideways (EXIF orientation 6) is encoded upright unless turned off", async () => {
    const jpeg = new Uint8Array(readFileSync(join(ROOT, "testdata", "orient6.jpg"))); // 32 wide, 16 high as stored
    const upright = decodePayload((await model.encode(jpeg)).payload);
    const stored = decodePayload((await model.encode(jpeg, { exifOrientation: false })).payload);
    assert.deepEqual(upright.image.source, [32, 16]); // [height, width] after the rotation
    assert.deepEqual(stored.image.source, [16, 32]);
    assert.notDeepEqual(upright.ids, stored.ids);
  });

  test("decode with the payload's hints (payload made by encodePayload)", async () => {
    const hinted = encodePayload({ ...decodePayload(pb), hints: { steps: 2, guidance: 2, seed: 99 } });
    const img = await model.decode(hinted);
    assert.deepEqual([img.steps, img.guidance, img.seed], [2, 2, 99]);
    assert.equal(sha256(img.rgba), want("decode_hints", "rgba"));
  });

  test("stream: header + chunks of 4, 12, 16, an image after each", async () => {
    const { header, chunks } = splitPayload(pb, [4, 12]);
    assert.equal(chunks.length, 3);
    const s = await model.openStream(header, { steps: 2, seed: 7, output: ["rgba", "tensor"] });
    assert.equal(s.handle, 2);
    assert.equal(s.count, 32);
    const received = [4, 16, 32];
    for (let i = 0; i < chunks.length; i++) {
      const r = await s.push(chunks[i]!);
      assert.equal(r.received, received[i]);
      assert.equal(r.done, i === 2);
      assert.equal(r.image?.k, received[i]);
      assert.equal(sha256(r.image?.rgba), want(`stream_chunk${i}`, "rgba"));
      assert.equal(sha256(r.image?.tensor), want(`stream_chunk${i}`, "tensor"));
    }
    await s.close();
  });

  test("errors: another model's payload, a truncated one, a bad image", async () => {
    await assert.rejects(model.decode(read(join(VECTORS, "tokens_1.msgpack"))), { code: golden.get("err_model_mismatch")!.code });
    await assert.rejects(model.decode(pb.subarray(0, pb.length - 3)), { code: golden.get("err_truncated")!.code });
    await assert.rejects(model.encode(new TextEncoder().encode("not an image")), { code: golden.get("err_bad_image")!.code });
  });
});

describe("shapes.png, through the TS API, equals the Go service natively", () => {
  interface Native {
    payload: string;
    count: number;
    header: string;
    chunks: string[];
    decode: Record<string, { rgba: string; png: string }>;
    stream_rgba: string[];
  }
  let native: Native;
  let pb: Uint8Array;
  before(() => {
    const out = execFileSync(process.env.GO ?? "go", ["run", "./bindings/test/gohelper", C1, join(ROOT, "testdata", "images", "shapes.png")], { cwd: ROOT });
    native = JSON.parse(out.toString()) as Native;
  });

  test("encode", async () => {
    const enc = await model.encode(read(join(ROOT, "testdata", "images", "shapes.png")));
    pb = enc.payload;
    assert.equal(sha256(pb), native.payload);
    assert.equal(enc.count, native.count);
  });

  for (const k of [1, 4, 32]) {
    test(`decode k=${k}`, async () => {
      const img = await model.decode(pb, { k, steps: 2, seed: 7, output: ["rgba", "png"] });
      assert.equal(sha256(img.rgba), native.decode[String(k)]!.rgba);
      assert.equal(sha256(img.png), native.decode[String(k)]!.png);
      assert.deepEqual([...img.png!.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
    });
  }

  test("stream: the TS split is Go's, byte for byte; 3 chunks, an image after each", async () => {
    const { header, chunks } = splitPayload(pb, [4, 12]);
    assert.equal(sha256(header), native.header);
    assert.deepEqual(chunks.map(sha256), native.chunks);
    assert.equal(decodeStreamHeader(header).count, 32);
    const seen: Progress[] = [];
    const s = await model.openStream(header, { steps: 2, seed: 7 });
    for (let i = 0; i < 3; i++) {
      const r = await s.push(chunks[i]!, { onProgress: (p) => seen.push(p) });
      assert.equal(sha256(r.image?.rgba), native.stream_rgba[i]);
    }
    assert.equal(s.received, 32);
    assert.equal(s.done, true);
    const chunkEvents = seen.filter((p) => p.type === "chunk");
    assert.deepEqual(
      chunkEvents.map((p) => (p.type === "chunk" ? [p.received, p.total, p.done, p.decoded] : [])),
      [
        [4, 32, false, true],
        [16, 32, false, true],
        [32, 32, true, true],
      ],
    );
    // received without decoding, then decode again with other options
    const s2 = await model.openStream(header, { steps: 2, seed: 7 });
    const r0 = await s2.push(chunks[0]!, { decode: false });
    assert.deepEqual(r0, { received: 4, done: false });
    const r1 = await s2.push(undefined);
    assert.equal(sha256(r1.image?.rgba), native.stream_rgba[0]);
    // a refused chunk (out of order) leaves the stream as it was
    await assert.rejects(s2.push(chunks[2]!), { code: "stream" });
    assert.equal((await s2.push(chunks[1]!, { decode: false })).received, 16);
    await s2.close();
    await assert.rejects(s2.push(chunks[2]!), { code: "closed" });
    await s.close();
  });
});

describe("errors and lifetimes", () => {
  test("a corrupt payload gives the payload code and field", async () => {
    const enc = await model.encode(scriptBMP(), { k: 4 });
    const bad = enc.payload.slice();
    bad[0] = 0x92; // a 2-element array instead of the map
    await assert.rejects(model.decode(bad), (e: unknown) => e instanceof FlexTokError && e.code === "format" && e.name === "FlexTokError");
    await assert.rejects(model.decode(enc.payload, { k: 99 }), (e: unknown) => {
      // The service's message already names the specifics: they are not repeated after it.
      assert.ok(e instanceof FlexTokError && e.code === "bad_request" && e.detail !== "", String(e));
      assert.equal(e.message.split(e.detail).length, 2, e.message);
      return true;
    });
    await assert.rejects(model.decode(enc.payload, { output: ["rgba", "rgba"] }), { code: "bad_request" });
  });

  test("a closed model, stream or FlexTok throws closed", async () => {
    const f = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC });
    const c1 = c1Files();
    const m = await f.openModel(c1.weights, { config: new TextDecoder().decode(c1.config), vaeConfig: c1.vaeConfig });
    // No name given and none in c1's config: the name comes from the digest, and the CLI's
    // payloads of the same checkpoint decode whatever they call it.
    assert.equal(m.model.name, "flextok-" + C1_DIGEST.slice(0, 12));
    const enc = await m.encode(scriptBMP(), { k: 4 });
    const s = await m.openStream(splitPayload(enc.payload, [2]).header);
    assert.deepEqual(await m.close(), { streams: 1 });
    assert.equal(m.closed, true);
    assert.equal(s.closed, true);
    await assert.rejects(m.decode(enc.payload), { code: "closed" });
    await assert.rejects(m.info(), { code: "closed" });
    await assert.rejects(s.push(undefined), { code: "closed" });
    assert.deepEqual(await m.close(), { streams: 0 }); // idempotent
    const m2 = await f.openModel(c1.weights, { config: c1.config, vaeConfig: c1.vaeConfig });
    assert.equal(m2.handle, 3); // model 1, stream 2, then 3: never reused
    f.close();
    assert.equal(m2.closed, true);
    await assert.rejects(m2.decode(enc.payload), { code: "closed" });
    await assert.rejects(f.version(), { code: "closed" });
    await assert.rejects(f.openModel(c1.weights), { code: "closed" });
  });

  test("bad weights: bad_model; an aborted signal: aborted", async () => {
    await assert.rejects(ft.openModel(new Uint8Array([1, 2, 3])), { code: "bad_model" });
    const ac = new AbortController();
    ac.abort(new Error("user navigated away"));
    await assert.rejects(model.decode(new Uint8Array(1), { signal: ac.signal }), (e: unknown) => {
      assert.ok(e instanceof FlexTokError);
      assert.equal(e.code, "aborted");
      assert.match(e.message, /user navigated away/);
      return true;
    });
  });

  test("progress: start/end per request with the response's timings", async () => {
    events.length = 0;
    const enc = await model.encode(scriptBMP(), { k: 2 });
    await model.decode(enc.payload, { steps: 1 });
    assert.deepEqual(
      events.map((e) => [e.type, e.type === "start" || e.type === "end" ? e.op : ""]),
      [
        ["start", "encode"],
        ["end", "encode"],
        ["start", "decode"],
        ["end", "decode"],
      ],
    );
    const end = events[3]!;
    assert.ok(end.type === "end" && end.ok && typeof end.decode_ms === "number" && typeof end.total_ms === "number" && end.ms >= 0);
  });

  test("a missing module file: load_failed", async () => {
    await assert.rejects(initialize({ wasmPath: join(ROOT, "no", "such.wasm"), wasmExecPath: WASM_EXEC }), { code: "load_failed" });
    await assert.rejects(startModule({ wasmModule: await WebAssembly.compile(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])) }), {
      code: "load_failed",
    });
  });

  test("a Go program that has exited: worker_died", async () => {
    const m = await startModule({ wasmPath: WASM, wasmExecPath: WASM_EXEC });
    const f = new FlexTok(() => {
      throw new Error("Go program has already exited");
    });
    await assert.rejects(f.version(), { code: "worker_died" });
    m.stop();
  });
});
