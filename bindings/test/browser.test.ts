// browser.ts under Node: its Worker transport over a worker_threads shim, its fetch and Cache
// API paths against a local HTTP server and an in-memory `caches`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test } from "node:test";
import { FlexTokError, WorkerTransport, initialize, type FlexTok, type Model, type Progress } from "../src/browser.js";
import { C1, PKG_DIST, ROOT, WASM, WASM_EXEC, c1Files, ensureWasm, scriptBMP, sha256 } from "./util.js";
import { ShimWorker } from "./worker-shim.js";

const golden = new Map(
  (JSON.parse(readFileSync(join(ROOT, "conformance", "testdata", "service", "golden.json"), "utf8")) as { name: string; sha256?: Record<string, string> }[]).map(
    (g) => [g.name, g.sha256 ?? {}],
  ),
);

let module: WebAssembly.Module;
const wasmExecURL = pathToFileURL(WASM_EXEC).href;
const workerURL = pathToFileURL(join(PKG_DIST, "worker.js")).href;
let server: Server;
let base: string;
let hits = 0;

before(async () => {
  ensureWasm();
  module = await WebAssembly.compile(readFileSync(WASM));
  (globalThis as { Worker?: unknown }).Worker = ShimWorker;
  server = createServer((req, res) => {
    hits++;
    const files: Record<string, [string, string]> = {
      "/flextok.wasm": [WASM, "application/wasm"],
      "/c1/model.safetensors": [join(C1, "model.safetensors"), "application/octet-stream"],
      "/c1/config.json": [join(C1, "config.json"), "application/json"],
      "/c1/vae/config.json": [join(C1, "vae", "config.json"), "application/json"],
    };
    const f = files[req.url ?? ""];
    if (!f) return void res.writeHead(404).end();
    const body = readFileSync(f[0]);
    res.writeHead(200, { "content-type": f[1], "content-length": body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server?.close());

async function openC1(ft: FlexTok): Promise<Model> {
  const c1 = c1Files();
  return ft.openModel(c1.weights, { config: c1.config, vaeConfig: c1.vaeConfig, name: "c1" });
}

describe("in a worker", () => {
  let ft: FlexTok;
  let model: Model;
  before(async () => {
    ft = await initialize({ wasmModule: module, wasmExecURL, workerURL });
    model = await openC1(ft);
  });
  after(() => ft?.close());

  test("the same bits as golden.json; calls queue", async () => {
    const pb = (await model.encode(scriptBMP())).payload;
    assert.equal(sha256(pb), golden.get("encode")!.payload);
    const ks = [1, 4, 16, 32];
    const imgs = await Promise.all(ks.map((k) => model.decode(pb, { k, steps: 2, seed: 7, output: ["rgba", "tensor"] })));
    imgs.forEach((img, i) => {
      assert.equal(sha256(img.rgba), golden.get(`decode_k${ks[i]}`)!.rgba);
      assert.equal(sha256(img.tensor), golden.get(`decode_k${ks[i]}`)!.tensor);
    });
  });

  test("aborting a queued call drops it; aborting the running one restarts the worker", async () => {
    const pb = (await model.encode(scriptBMP())).payload;
    const ac = new AbortController();
    const long = model.decode(pb, { steps: 1000 });
    const queued = model.decode(pb, { steps: 1, signal: ac.signal });
    ac.abort();
    await assert.rejects(queued, { code: "aborted" });
    await long; // unaffected
    const spawned = ShimWorker.spawned;
    const ac2 = new AbortController();
    const running = model.decode(pb, { steps: 1000, signal: ac2.signal });
    const behind = model.decode(pb, { steps: 1 });
    setTimeout(() => ac2.abort(), 30);
    await assert.rejects(running, { code: "aborted" });
    await assert.rejects(behind, (e: unknown) => e instanceof FlexTokError && (e.code === "aborted" || e.code === "closed"));
    assert.equal(ShimWorker.spawned, spawned + 1);
    assert.equal(model.closed, true);
    await assert.rejects(model.decode(pb), { code: "closed" });
    model = await openC1(ft); // the new worker: handles start again
    assert.equal(model.handle, 1);
    const img = await model.decode(pb, { k: 4, steps: 2, seed: 7 });
    assert.equal(sha256(img.rgba), golden.get("decode_k4")!.rgba);
  });

  test("progress events from the worker", async () => {
    const seen: Progress[] = [];
    await model.info({ onProgress: (p) => seen.push(p) });
    assert.deepEqual(seen.map((p) => p.type), ["start", "end"]);
  });
});

describe("failures", () => {
  test("a worker that dies fails its calls with worker_died", async () => {
    const ft = await initialize({ wasmModule: module, wasmExecURL, workerURL: pathToFileURL(join(ROOT, "bindings", "dist", "test", "crash-worker.js")).href });
    await assert.rejects(ft.version(), { code: "worker_died" });
    ft.close();
    await assert.rejects(ft.version(), { code: "closed" });
  });

  test("load_failed: a missing wasm_exec.js, a 404 wasm URL, not a wasm module", async () => {
    await assert.rejects(initialize({ wasmModule: module, wasmExecURL: wasmExecURL + ".missing", workerURL }), { code: "load_failed" });
    await assert.rejects(initialize({ wasmURL: `${base}/nope.wasm`, wasmExecURL, workerURL }), { code: "load_failed" });
    await assert.rejects(initialize({ wasmURL: `${base}/c1/config.json`, wasmExecURL, workerURL }), { code: "load_failed" });
  });

  test("an aborted initialize", async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(initialize({ wasmModule: module, wasmExecURL, workerURL, signal: ac.signal }), { code: "aborted" });
  });

  test("WorkerTransport.close fails what is pending with closed", async () => {
    const t = new WorkerTransport(() => new ShimWorker(workerURL), module, wasmExecURL);
    await t.ready;
    const p = t.call(new Uint8Array([0x81, 0xa2, 0x6f, 0x70, 0xa7, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e]), {});
    t.close();
    await assert.rejects(p, { code: "closed" });
  });
});

describe("from URLs: wasm over HTTP, loadModel with the Cache API", () => {
  test("main thread, wasm fetched and compiled; loadModel caches by URL", async () => {
    const store = new Map<string, Response>();
    const fake = {
      open: async () => ({
        match: async (u: string) => store.get(u)?.clone(),
        put: async (u: string, r: Response) => void store.set(u, new Response(await r.arrayBuffer(), { headers: r.headers })),
        delete: async (u: string) => store.delete(u),
      }),
      delete: async () => (store.clear(), true),
    };
    (globalThis as { caches?: unknown }).caches = fake;
    try {
      const ft = await initialize({ wasmURL: `${base}/flextok.wasm`, wasmExecURL, worker: false });
      const seen: Progress[] = [];
      const opts = { configURL: `${base}/c1/config.json`, vaeConfigURL: `${base}/c1/vae/config.json`, name: "c1", onProgress: (p: Progress) => seen.push(p) };
      hits = 0;
      const m1 = await ft.loadModel(`${base}/c1/model.safetensors`, opts);
      assert.equal(hits, 3);
      assert.equal(store.size, 3);
      const dl = seen.filter((p) => p.type === "download" && p.done && p.url.endsWith("model.safetensors"));
      assert.equal(dl.length, 1);
      assert.ok(dl[0]!.type === "download" && dl[0]!.total === dl[0]!.loaded && !dl[0]!.cached);
      seen.length = 0;
      const m2 = await ft.loadModel(`${base}/c1/model.safetensors`, opts);
      assert.equal(hits, 3); // from the cache
      assert.ok(seen.some((p) => p.type === "download" && p.cached && p.done));
      assert.equal(Buffer.from(m2.model.digest).toString("hex"), Buffer.from(m1.model.digest).toString("hex"));
      await assert.rejects(ft.loadModel(`${base}/missing.safetensors`), { code: "fetch_failed" });
      ft.close();
    } finally {
      delete (globalThis as { caches?: unknown }).caches;
    }
  });
});
