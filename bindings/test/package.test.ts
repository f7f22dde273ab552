// fetchModelPackage and parseManifest against a package that the Go CLI exports (flextok
// export-web, the embedded default model, 64 KiB chunks so that files are split), served by a
// local HTTP server that can corrupt, cut off or refuse chunks, and against `flextok serve`'s
// /v1/web-package/ itself. No wasm needed.
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import {
  CacheStorageChunkStore,
  FlexTokError,
  MemoryChunkStore,
  fetchModelPackage,
  parseManifest,
  type PackageProgress,
  type WebPackageManifest,
} from "../src/node.js";
import { ROOT, sha256 } from "./util.js";

let tmp = "";
let bin = "";
let pkgDir = "";
let manifestText = "";
let manifest: WebPackageManifest;

/** What the test server does to requests; reset before each use. */
interface Faults {
  corrupt: Set<string>; // chunk names served with a flipped byte
  short: Set<string>; // served without their last byte (a consistent Content-Length)
  status: Map<string, number>; // names answered with this status
  dieAfter: number; // after this many chunk responses, the next chunk's body is cut off half way
  manifest: string | undefined; // served instead of manifest.json
}
const faults: Faults = { corrupt: new Set(), short: new Set(), status: new Map(), dieAfter: Infinity, manifest: undefined };
const requested: string[] = [];
let served = 0; // chunk responses since reset()
let server: Server;
let base = "";

function reset(): void {
  faults.corrupt.clear();
  faults.short.clear();
  faults.status.clear();
  faults.dieAfter = Infinity;
  faults.manifest = undefined;
  requested.length = 0;
  served = 0;
}

function chunkCount(m: WebPackageManifest, files?: string[]): number {
  return Object.entries(m.files)
    .filter(([n]) => !files || files.includes(n))
    .reduce((s, [, f]) => s + f.chunks.length, 0);
}

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "flextok-webpkg-"));
  bin = join(tmp, "flextok");
  const go = process.env.GO ?? "go";
  execFileSync(go, ["build", "-o", bin, "./cmd/flextok"], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
  pkgDir = join(tmp, "pkg");
  execFileSync(bin, ["export-web", "-o", pkgDir, "--fp16", "--chunk-size", "64KiB"], { stdio: ["ignore", "ignore", "inherit"] });
  manifestText = readFileSync(join(pkgDir, "manifest.json"), "utf8");
  manifest = parseManifest(manifestText);
  server = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname.replace(/^\/pkg\//, ""));
    requested.push(name);
    const st = faults.status.get(name);
    if (st !== undefined) {
      res.writeHead(st, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "not_found", message: `no ${name} here` } }));
      return;
    }
    if (name === "manifest.json") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(faults.manifest ?? manifestText);
      return;
    }
    let body: Buffer;
    try {
      if (name.includes("/") || name.includes("..")) throw new Error("path");
      body = readFileSync(join(pkgDir, name));
    } catch {
      res.writeHead(404).end();
      return;
    }
    if (faults.corrupt.has(name)) {
      body = Buffer.from(body);
      body[body.length >> 1]! ^= 0xff;
    }
    if (faults.short.has(name)) body = body.subarray(0, body.length - 1);
    if (name !== "manifest.json" && served++ >= faults.dieAfter) {
      // The server dies half way through this chunk: headers promise the whole body.
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(body.length) });
      res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
      return;
    }
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(body.length) });
    res.end(body);
  });
  return new Promise<void>((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      if (a && typeof a === "object") base = `http://127.0.0.1:${a.port}/pkg/`;
      resolve();
    });
  });
});

after(() => {
  server?.close();
  server?.closeAllConnections();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The names of the manifest's chunks whose URL is not among the store's keys. */
function missing(keys: string[]): Set<string> {
  const out = new Set<string>();
  for (const f of Object.values(manifest.files))
    for (const c of f.chunks) if (!keys.some((k) => k.includes(`/${encodeURIComponent(c.name)}?sha256=${c.sha256}`))) out.add(c.name);
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: string, text?: string): Promise<FlexTokError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FlexTokError, `not a FlexTokError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (text) assert.ok(e.message.includes(text), `${e.message} does not say ${text}`);
    return e;
  }
  assert.fail(`resolved; want code ${code}`);
}

describe("parseManifest", () => {
  test("says of sdk/webpkg's vectors what the Go reader says", () => {
    // sdk/webpkg/testdata/vectors.json: written from the Go tests' table (go test -update).
    const vectors = JSON.parse(readFileSync(join(ROOT, "sdk", "webpkg", "testdata", "vectors.json"), "utf8")) as {
      name: string;
      manifest: string;
      code: string;
      field: string;
    }[];
    assert.ok(vectors.length > 40);
    for (const v of vectors) {
      let got: { code: string; field: string } = { code: "", field: "" };
      try {
        parseManifest(v.manifest);
      } catch (e) {
        assert.ok(e instanceof FlexTokError, `${v.name}: ${String(e)}`);
        got = { code: e.code, field: e.field ?? "" };
      }
      assert.deepEqual(got, { code: v.code, field: v.field }, v.name);
    }
  });
});

describe("fetchModelPackage", () => {
  test("downloads, verifies and reassembles every file, with progress", async () => {
    reset();
    const events: PackageProgress[] = [];
    const store = new MemoryChunkStore();
    const pkg = await fetchModelPackage(base, { cache: store, verifyFiles: true, onProgress: (p) => events.push(p) });
    assert.equal(pkg.url, base + "manifest.json");
    assert.deepEqual(pkg.manifest, manifest);
    const total = Object.values(manifest.files).reduce((s, f) => s + f.size, 0);
    assert.ok(Object.values(manifest.files).some((f) => f.chunks.length > 1), "no file is split: the test proves no chunking");
    for (const [name, f] of Object.entries(manifest.files)) {
      const got = pkg.files.get(name);
      assert.ok(got, name);
      assert.equal(got.length, f.size);
      assert.equal(sha256(got), f.sha256, name);
      // The bytes are the exported chunks, joined.
      const joined = Buffer.concat(f.chunks.map((c) => readFileSync(join(pkgDir, c.name))));
      assert.ok(joined.equals(got), name);
    }
    assert.equal(pkg.downloadedBytes, total);
    assert.equal(pkg.cachedBytes, 0);
    assert.equal(store.entries.size, chunkCount(manifest));
    assert.equal(requested.length, 1 + chunkCount(manifest));
    // Progress: monotonic overall, each file's count ends at its size, the last event is the total.
    let last = 0;
    const perFile = new Map<string, number>();
    for (const e of events) {
      assert.ok(e.bytes >= last && e.total === total && !e.fromCache);
      last = e.bytes;
      perFile.set(e.file, e.fileBytes);
      assert.equal(e.fileTotal, manifest.files[e.file]!.size);
    }
    assert.equal(last, total);
    for (const [name, f] of Object.entries(manifest.files)) assert.equal(perFile.get(name), f.size, name);
    const g = pkg.graph("decoder_fp16");
    assert.equal(g.precision, "fp16");
    assert.equal(g.dataName, "decoder_fp16.onnx.data");
    assert.equal(sha256(g.data), manifest.files["decoder_fp16.onnx.data"]!.sha256);

    // A reload: every chunk from the store, only the manifest from the network.
    reset();
    const again = await fetchModelPackage(base + "manifest.json", { cache: store, onProgress: (p) => assert.ok(p.fromCache) });
    assert.deepEqual(requested, ["manifest.json"]);
    assert.equal(again.cachedBytes, total);
    assert.equal(again.downloadedBytes, 0);
  });

  test("graphs selects what is downloaded", async () => {
    reset();
    const pkg = await fetchModelPackage(base, { cache: null, graphs: ["decoder", "vae_decoder"] });
    assert.ok(!pkg.files.has("decoder_fp16.onnx.data"));
    assert.ok(!requested.some((n) => n.startsWith("decoder_fp16")));
    assert.throws(() => pkg.graph("decoder_fp16"), (e: unknown) => e instanceof FlexTokError && e.code === "manifest_invalid");
  });

  test("a corrupted chunk is a hash error; the retry fetches only what is missing", async () => {
    reset();
    const store = new MemoryChunkStore();
    const bad = manifest.files["decoder.onnx.data"]!.chunks[3]!.name;
    faults.corrupt.add(bad);
    const e = await rejectsWith(fetchModelPackage(base, { cache: store, concurrency: 1 }), "hash_mismatch", bad);
    assert.ok(e.message.includes(manifest.files["decoder.onnx.data"]!.chunks[3]!.sha256));
    assert.ok(store.entries.size > 0, "the verified chunks before the bad one should be kept");
    assert.ok(![...store.entries.keys()].some((k) => k.includes(bad)), "the bad chunk was stored");
    const kept = [...store.entries.keys()];
    reset();
    const pkg = await fetchModelPackage(base, { cache: store });
    // (A request of the failed call may reach the server late: names, not counts, are compared.)
    assert.deepEqual(new Set(requested.filter((n) => n !== "manifest.json")), missing(kept), "the retry fetched chunks it had, or not all it lacked");
    assert.ok(requested.includes(bad));
    assert.equal(sha256(pkg.files.get("decoder.onnx.data")), manifest.files["decoder.onnx.data"]!.sha256);
  });

  test("a server dying half way: truncated, and the retry fetches only the missing chunks", async () => {
    reset();
    const store = new MemoryChunkStore();
    faults.dieAfter = 5;
    await rejectsWith(fetchModelPackage(base, { cache: store, concurrency: 2 }), "truncated", "cut off");
    const kept = new Set(store.entries.keys());
    assert.ok(kept.size >= 4 && kept.size < chunkCount(manifest), `kept ${kept.size}`);
    reset();
    const pkg = await fetchModelPackage(base, { cache: store });
    assert.deepEqual(new Set(requested.filter((n) => n !== "manifest.json")), missing([...kept]), "the retry fetched chunks it had, or not all it lacked");
    for (const [name, f] of Object.entries(manifest.files)) assert.equal(sha256(pkg.files.get(name)), f.sha256);
  });

  test("verifyFiles catches a file hash that disagrees with its chunks", async () => {
    const m = JSON.parse(manifestText) as Record<string, any>;
    m.files["decoder.onnx.data"].sha256 = "ab".repeat(32);
    reset();
    faults.manifest = JSON.stringify(m);
    await rejectsWith(fetchModelPackage(base, { cache: null, graphs: ["decoder"], verifyFiles: true }), "hash_mismatch", "file decoder.onnx.data: reassembled");
    reset();
    faults.manifest = JSON.stringify(m);
    await fetchModelPackage(base, { cache: null, graphs: ["decoder"] }); // the chunks are right
  });

  test("a short chunk is truncated", async () => {
    reset();
    const c = manifest.files["vae_decoder.onnx.data"]!.chunks[0]!;
    faults.short.add(c.name);
    await rejectsWith(fetchModelPackage(base, { cache: null }), "truncated", `${c.size - 1} of ${c.size} bytes`);
  });

  test("HTTP errors", async () => {
    reset();
    faults.status.set("manifest.json", 404);
    await rejectsWith(fetchModelPackage(base, { cache: null }), "http_error", "HTTP 404: no manifest.json here");
    reset();
    faults.status.set(manifest.files["decoder.onnx"]!.chunks[0]!.name, 503);
    await rejectsWith(fetchModelPackage(base, { cache: null }), "http_error", "HTTP 503");
    await rejectsWith(fetchModelPackage("http://127.0.0.1:1/pkg/", { cache: null }), "fetch_failed");
  });

  test("invalid and unsupported manifests", async () => {
    const edit = (f: (m: Record<string, any>) => void) => {
      const m = JSON.parse(manifestText) as Record<string, any>;
      f(m);
      return JSON.stringify(m);
    };
    for (const [m, code, field] of [
      [edit((m) => (m.version = 2)), "unsupported_version", "version"],
      [edit((m) => (m.format = "flextok-onnx")), "manifest_invalid", "format"],
      [edit((m) => (m.opset = "17")), "manifest_invalid", "opset"],
      [edit((m) => (m.files["decoder.onnx"].sha256 = "XYZ")), "manifest_invalid", 'files["decoder.onnx"].sha256'],
      [edit((m) => (m.files["decoder.onnx.data"].size += 1)), "manifest_invalid", 'files["decoder.onnx.data"].chunks'],
      [edit((m) => delete m.files["vae_decoder.onnx"]), "manifest_invalid", 'graphs["vae_decoder"].graph'],
      [edit((m) => (m.files["decoder.onnx"].chunks[0].name = "../decoder.onnx")), "manifest_invalid", 'files["decoder.onnx"].chunks[0].name'],
      [edit((m) => (m.model.digest = "00")), "manifest_invalid", "model.digest"],
      [edit((m) => (m.sizes.tokens = 7)), "manifest_invalid", "sizes.tokens"],
      ["{not json", "manifest_invalid", ""],
    ] as const) {
      reset();
      faults.manifest = m;
      const e = await rejectsWith(fetchModelPackage(base, { cache: null }), code);
      assert.equal(e.field, field, e.message);
      assert.equal(requested.length, 1, "chunks were fetched for a bad manifest");
    }
  });

  test("a package of another model, and one too large to allocate, fail before any chunk", async () => {
    reset();
    const digest = Uint8Array.from(Buffer.from(manifest.model.digest, "hex"));
    const ok = await fetchModelPackage(base, { cache: null, graphs: ["vae_decoder"], model: { digest, fsq: manifest.model.fsq_levels, max_tokens: manifest.model.max_tokens } });
    assert.equal(ok.manifest.model.digest, manifest.model.digest);
    for (const model of [
      "00".repeat(32),
      { digest, fsq: manifest.model.fsq_levels, max_tokens: 256 },
      { digest: new Uint8Array(32), fsq: manifest.model.fsq_levels, max_tokens: manifest.model.max_tokens },
    ]) {
      reset();
      await rejectsWith(fetchModelPackage(base, { cache: null, model }), "model_mismatch", manifest.model.name);
      assert.deepEqual(requested, ["manifest.json"]);
    }
    // A 1 TiB data file (the manifest's limit): no buffer for it, and nothing downloaded.
    const m = JSON.parse(manifestText) as Record<string, any>;
    const big = { size: 2 ** 40, sha256: "ab".repeat(32), chunks: [{ name: "vae_decoder.onnx.data", size: 2 ** 40, sha256: "ab".repeat(32) }] };
    m.files["vae_decoder.onnx.data"] = big;
    reset();
    faults.manifest = JSON.stringify(m);
    await rejectsWith(fetchModelPackage(base, { cache: null, graphs: ["vae_decoder"] }), "out_of_memory", "vae_decoder.onnx.data");
    assert.deepEqual(requested, ["manifest.json"]);
  });

  test("abort keeps the verified chunks", async () => {
    reset();
    const store = new MemoryChunkStore();
    const ac = new AbortController();
    let n = 0;
    const p = fetchModelPackage(base, {
      cache: store,
      signal: ac.signal,
      concurrency: 1,
      onProgress: () => {
        if (++n === 6) ac.abort(new Error("user left"));
      },
    });
    await rejectsWith(p, "aborted", "user left");
    assert.ok(store.entries.size >= 1 && store.entries.size < chunkCount(manifest));
    await rejectsWith(fetchModelPackage(base, { cache: null, signal: AbortSignal.abort() }), "aborted");
  });

  test("a chunk altered in the store is fetched again", async () => {
    reset();
    const store = new MemoryChunkStore();
    await fetchModelPackage(base, { cache: store, graphs: ["vae_decoder"] });
    const [key, bytes] = [...store.entries].find(([k]) => k.includes("vae_decoder.onnx.data.part000"))!;
    bytes[0]! ^= 1;
    reset();
    const pkg = await fetchModelPackage(base, { cache: store, graphs: ["vae_decoder"] });
    assert.deepEqual(
      requested.filter((n) => n.startsWith("vae_decoder")), // (the aborted test's requests may arrive late)
      ["vae_decoder.onnx.data.part000"],
    );
    assert.equal(sha256(pkg.files.get("vae_decoder.onnx.data")), manifest.files["vae_decoder.onnx.data"]!.sha256);
    assert.notEqual(store.entries.get(key)![0], bytes[0]);
  });

  test("CacheStorageChunkStore over a Cache API", async () => {
    // Node has no Cache API: a minimal CacheStorage keeps Responses in a Map, as a browser's would.
    const caches = new Map<string, Map<string, Response>>();
    const storage = {
      async open(name: string) {
        if (!caches.has(name)) caches.set(name, new Map());
        const c = caches.get(name)!;
        return {
          async match(k: string) {
            return c.get(k)?.clone();
          },
          async put(k: string, r: Response) {
            c.set(k, r);
          },
          async delete(k: string) {
            return c.delete(k);
          },
        };
      },
    } as unknown as CacheStorage;
    const store = new CacheStorageChunkStore("test-cache", storage);
    reset();
    await fetchModelPackage(base, { cache: store, graphs: ["decoder"] });
    assert.equal(caches.get("test-cache")!.size, chunkCount(manifest, ["decoder.onnx", "decoder.onnx.data"]));
    for (const k of caches.get("test-cache")!.keys()) assert.match(k, /\?sha256=[0-9a-f]{64}$/);
    reset();
    const pkg = await fetchModelPackage(base, { cache: store, graphs: ["decoder"] });
    assert.deepEqual(requested, ["manifest.json"]);
    assert.equal(pkg.cachedBytes, manifest.files["decoder.onnx"]!.size + manifest.files["decoder.onnx.data"]!.size);
    await rejectsWith(new CacheStorageChunkStore("x", undefined).get("k") as Promise<unknown>, "fetch_failed");
  });
});

describe("flextok serve", () => {
  let proc: ChildProcess | undefined;
  after(() => proc?.kill());

  test("serves the package export-web writes, under /v1/web-package/", async () => {
    const cache = join(tmp, "cache");
    proc = spawn(bin, ["serve", "--addr", "127.0.0.1:0", "--samples", "none", "--ar", "none", "--web-cache", cache, "--log-format", "text"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc!.stdout! }).once("line", resolve);
      proc!.once("exit", (c) => reject(new Error(`serve exited ${c}: ${stderr}`)));
    });
    assert.match(line, /^serving http:\/\/127\.0\.0\.1:\d+\//);
    const url = line.replace(/^serving /, "").trim() + "v1/web-package/";
    const pkg = await fetchModelPackage(url, { cache: null });
    // Another chunk size, the same model and exporter: the same files, byte for byte.
    assert.deepEqual(pkg.manifest.model, manifest.model);
    for (const [name, f] of Object.entries(manifest.files)) assert.equal(sha256(pkg.files.get(name)), f.sha256, name);
    const r = await fetch(url + "manifest.json");
    assert.equal(r.headers.get("cache-control"), "no-cache");
    assert.ok(r.headers.get("etag"));
    await r.arrayBuffer();
  });
});
