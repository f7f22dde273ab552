// The hybrid executor in Node: web model packages (native/onnx.ExportWeb) opened with
// openWebModel run their networks in onnxruntime-web's wasm provider while the GOOS=js module
// keeps payloads, the sampler and streams. Images are compared with the native Go engine's
// (bindings/test/webhelper) on the default model and the committed official-code checkpoints,
// within the bounds below; bad packages give typed errors and leave the FlexTok usable.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { FlexTokError, fetchModelPackage, initialize, readModelPackage, splitPayload, type FlexTok, type WebModel } from "../src/node.js";
import { ROOT, ensureWasm } from "./util.js";

/**
 * Bounds against the native Go engine. fp32: onnxruntime-web's kernels order sums otherwise
 * than the Go engine's (measured: NMSE ≤ 4e-12, max |Δ| ≤ 6.2e-6 over these 6 models and 3
 * cases each); the bounds leave over 16× room. fp16 decoder linears: PSNR ≥ 60 dB on the
 * [-1, 1] image range (measured: 79.8 dB at the lowest).
 */
const MAX_NMSE = 1e-9;
const MAX_ABS = 1e-4;
const MIN_PSNR_FP16 = 60;

interface Case {
  name: string;
  k: number;
  steps: number;
  guidance: number;
  apg: boolean;
  seed: number;
  tensor: string;
}
interface RefModel {
  name: string;
  package: string;
  payload: string;
  cases: Case[];
}

const OFFICIAL = join(ROOT, "conformance", "testdata", "official");
const MODELS = ["default", ...["c1_w32_zero_e2", "c2_w64_learned_t1", "c3_bf16_w48_e1_d2", "c4_w32_nulltok_e2", "c5_w32_img48_tab64_g8"].map((m) => join(OFFICIAL, m))];

function f32(b: Uint8Array): Float32Array {
  const c = new Uint8Array(b); // a copy: a Buffer may be a view of a shared pool
  return new Float32Array(c.buffer);
}

function compare(got: Float32Array, want: Float32Array): { nmse: number; maxAbs: number; psnr: number } {
  assert.equal(got.length, want.length);
  let se = 0;
  let sr = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i]! - want[i]!;
    se += d * d;
    sr += want[i]! * want[i]!;
    m = Math.max(m, Math.abs(d));
  }
  const mse = se / want.length;
  return { nmse: se / sr, maxAbs: m, psnr: 10 * Math.log10(4 / mse) }; // peak-to-peak 2: range [-1, 1]
}

describe("web models (onnxruntime-web wasm in Node)", () => {
  let ft: FlexTok;
  let dir: string;
  let refs: RefModel[];

  before(async () => {
    ensureWasm();
    dir = mkdtempSync(join(tmpdir(), "flextok-web-"));
    execFileSync(process.env.GO ?? "go", ["run", "./bindings/test/webhelper", dir, join(ROOT, "testdata", "images", "shapes.png"), ...MODELS], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
    });
    refs = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8")) as RefModel[];
    ft = await initialize();
  });
  after(() => {
    ft?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("fp32 images match the native Go engine on every model", async (t) => {
    let worstNMSE = 0;
    let worstAbs = 0;
    for (const r of refs) {
      const m = await ft.openWebModel(await readModelPackage(r.package), { provider: "wasm", precision: "fp32" });
      assert.equal(m.provider, "wasm");
      assert.equal(m.precision, "fp32");
      const payload = new Uint8Array(readFileSync(r.payload));
      for (const c of r.cases) {
        const got = await m.decode(payload, { k: c.k, steps: c.steps, guidance: c.guidance, apg: c.apg, seed: c.seed, output: ["tensor"] });
        const d = compare(f32(got.tensor!), f32(readFileSync(c.tensor)));
        assert.ok(d.nmse <= MAX_NMSE && d.maxAbs <= MAX_ABS, `${r.name} ${c.name}: NMSE ${d.nmse}, max |Δ| ${d.maxAbs}`);
        assert.equal(got.velocity_calls, c.steps, "one call out per sampler step");
        assert.ok(got.velocity_ms! > 0 && got.vae_ms! > 0 && got.velocity_ms! + got.vae_ms! <= got.decode_ms);
        worstNMSE = Math.max(worstNMSE, d.nmse);
        worstAbs = Math.max(worstAbs, d.maxAbs);
      }
      await m.close();
    }
    t.diagnostic(`fp32 vs native Go, worst over ${refs.length} models: NMSE ${worstNMSE.toExponential(2)}, max |Δ| ${worstAbs.toExponential(2)}`);
  });

  test("fp16 decoder within the stated PSNR", async (t) => {
    let worst = Infinity;
    for (const r of refs) {
      const m = await ft.openWebModel(await readModelPackage(r.package), { provider: "wasm", precision: "fp16" });
      assert.equal(m.precision, "fp16");
      const payload = new Uint8Array(readFileSync(r.payload));
      const c = r.cases[0]!;
      const got = await m.decode(payload, { k: c.k, steps: c.steps, guidance: c.guidance, apg: c.apg, seed: c.seed, output: ["tensor"] });
      const d = compare(f32(got.tensor!), f32(readFileSync(c.tensor)));
      assert.ok(d.psnr >= MIN_PSNR_FP16, `${r.name}: fp16 PSNR ${d.psnr} dB`);
      worst = Math.min(worst, d.psnr);
      await m.close();
    }
    t.diagnostic(`fp16 decoder vs native Go fp32: lowest PSNR ${worst.toFixed(1)} dB`);
  });

  test("auto falls back to wasm without WebGPU and says why; streams decode on a web model", async () => {
    const r = refs[0]!;
    const m: WebModel = await ft.openWebModel(await readModelPackage(r.package));
    assert.equal(m.provider, "wasm");
    assert.match(m.fallback, /WebGPU/);
    await assert.rejects(m.encode(readFileSync(join(ROOT, "testdata", "images", "shapes.png"))), (e: unknown) => e instanceof FlexTokError && e.code === "unsupported");
    // A stream's prefixes decode as the whole payload's first k tokens.
    const payload = new Uint8Array(readFileSync(r.payload));
    const { header, chunks } = splitPayload(payload, [2, 6]);
    const s = await m.openStream(header, { steps: 2, seed: 5, output: ["tensor"] });
    let k = 0;
    for (const c of chunks.slice(0, 2)) {
      const got = await s.push(c);
      k = got.received;
      const want = await m.decode(payload, { k, steps: 2, seed: 5, output: ["tensor"] });
      assert.deepEqual(got.image?.tensor, want.tensor, `stream prefix of ${k} tokens`);
    }
    await s.close();
    await m.close();
  });

  test("a package downloaded by fetchModelPackage opens and decodes as one read from disk", async () => {
    const r = refs[0]!;
    const server = createServer((req, res) => {
      const name = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname.slice(1));
      try {
        res.end(readFileSync(join(r.package, name.replaceAll("/", ""))));
      } catch {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const port = (server.address() as AddressInfo).port;
      const pkg = await fetchModelPackage(`http://127.0.0.1:${port}/`, { cache: null, graphs: ["decoder", "vae_decoder"] });
      const m = await ft.openWebModel(pkg);
      const c = r.cases[0]!;
      const got = await m.decode(new Uint8Array(readFileSync(r.payload)), { k: c.k, steps: c.steps, guidance: c.guidance, apg: c.apg, seed: c.seed, output: ["tensor"] });
      const d = compare(f32(got.tensor!), f32(readFileSync(c.tensor)));
      assert.ok(d.nmse <= MAX_NMSE && d.maxAbs <= MAX_ABS, `NMSE ${d.nmse}, max |Δ| ${d.maxAbs}`);
      await m.close();
    } finally {
      server.close();
    }
  });

  test("bad packages give typed errors and the FlexTok stays usable", async () => {
    const r = refs[0]!;
    const other = refs[1]!;
    const code = async (p: Promise<unknown>, want: string): Promise<void> => {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof FlexTokError, String(e));
        assert.equal(e.code, want, e.message);
        return true;
      });
    };
    // A graph of another model.
    const swapped = await readModelPackage(r.package);
    const theirs = await readModelPackage(other.package);
    (swapped.files as Map<string, Uint8Array>).set("decoder.onnx.data", (theirs.files as Map<string, Uint8Array>).get("decoder.onnx.data")!);
    await code(ft.openWebModel(swapped), "graph_mismatch");
    // The same with sizes that match: the hash says it.
    const flipped = await readModelPackage(r.package);
    const data = (flipped.files as Map<string, Uint8Array>).get("decoder.onnx.data")!;
    data[data.length - 1] = data[data.length - 1]! ^ 1;
    await code(ft.openWebModel(flipped), "graph_mismatch");
    // A partial download.
    const partial = await readModelPackage(r.package);
    const vae = (partial.files as Map<string, Uint8Array>).get("vae_decoder.onnx.data")!;
    (partial.files as Map<string, Uint8Array>).set("vae_decoder.onnx.data", vae.subarray(0, vae.length >> 1));
    await code(ft.openWebModel(partial), "graph_mismatch");
    // A file missing, a manifest of another version, WebGPU asked for where there is none.
    const missing = await readModelPackage(r.package);
    (missing.files as Map<string, Uint8Array>).delete("decoder.onnx");
    await code(ft.openWebModel(missing), "bad_package");
    const v2 = await readModelPackage(r.package);
    v2.manifest = new TextEncoder().encode(new TextDecoder().decode(v2.manifest as Uint8Array).replace('"version": 1', '"version": 2'));
    await code(ft.openWebModel(v2), "bad_package");
    await code(ft.openWebModel(await readModelPackage(r.package), { provider: "webgpu" }), "webgpu_unavailable");
    // Another model's payload.
    const m = await ft.openWebModel(await readModelPackage(r.package));
    await code(m.decode(new Uint8Array(readFileSync(other.payload)), { steps: 1 }), "model_mismatch");
    // Still usable: the package decodes, as does the module's own model.
    const got = await m.decode(new Uint8Array(readFileSync(r.payload)), { steps: 1, output: ["rgba"] });
    assert.ok(got.rgba && got.rgba.length === got.width * got.height * 4);
    await m.close();
    const def = await ft.openDefault();
    await def.close();
  });
});
