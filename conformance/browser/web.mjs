// Web models in headless Chromium (Debian's /usr/bin/chromium via playwright-core): the hybrid
// executor (@flextok/sdk's openWebModel: onnxruntime-web runs the decoder and VAE graphs, the Go
// wasm module the payloads and the sampler) against the native Go engine, with onnxruntime-web's
// wasm provider (fp32 and fp16 decoders) and its WebGPU provider (SwiftShader through
// --enable-unsafe-webgpu: software, so slow: correctness only), and the fallback to wasm where
// WebGPU has no adapter. The page is served cross-origin isolated (COOP/COEP), so the wasm
// provider runs 2 threads.
//
//   node web.mjs [--quick] [--no-webgpu] [--flextok BIN]
//   node web.mjs --only-demo --flextok BIN
//   node web.mjs --bench DIR
//   node web.mjs --d12 CKPT
//
// --flextok BIN: also the demo's web-model page (web.html) of `BIN serve` (built by `make demo`),
// cross-origin isolated: it downloads the server's package with progress, decodes a sample the
// server encoded natively, shows the provider and each stage's time, and shows typed errors.
// --quick (CI): the default model and c1 only. Needs `make bindings` (bindings/dist/src) and go.
// --bench DIR (`make bench-web`, outside CI): the speed run instead of the checks. DIR holds a
// checkpoint (DIR/ckpt, tools/mkcheckpoint -size d12) and its web package (DIR/pkg, flextok
// export-web --fp16). In one page, cross-origin isolated, no GPU: the 20-step guided decode and
// one guided step (from the 1- and 20-step decodes) with onnxruntime-web's wasm provider (SIMD, 2
// threads), then one guided step of the same decoder on the Go wasm engine (portable path,
// tools/webbench); writes out/web-bench.json.
// --d12 CKPT (`make test-browser-d12`, outside CI): a large checkpoint (tools/mkcheckpoint -size
// d12) exported and decoded natively (1 guided step, the engine's fast path) and in the page with
// the wasm and WebGPU providers, within the d12 bounds below; writes out/web-d12.json.
// Writes out/web-results.json. Exit status 1 on failure.
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname, extname, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const quick = process.argv.includes("--quick");
const flextokIdx = process.argv.indexOf("--flextok");
const flextokBin = flextokIdx >= 0 ? resolve(process.argv[flextokIdx + 1] ?? "") : "";
const webgpu = !process.argv.includes("--no-webgpu");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const outDir = join(here, "out");
mkdirSync(outDir, { recursive: true });

// The bounds of bindings/test/webmodel.test.ts (wasm provider), and for WebGPU on SwiftShader.
const MAX_NMSE = 1e-9, MAX_ABS = 1e-4, MIN_PSNR_FP16 = 60;
const MAX_NMSE_WEBGPU = 1e-7, MAX_ABS_WEBGPU = 1e-3;
// d12 (768 wide, 12 blocks, a 622 GFLOP VAE) against the engine's fast path (AVX-512 sums in
// another order): longer sums, larger rounding.
const MAX_NMSE_D12 = 1e-6, MAX_ABS_D12 = 1e-2;

let failures = 0;
function check(cond, what, detail = "") {
  if (cond) console.log(`ok    ${what}`);
  else {
    failures++;
    console.log(`FAIL  ${what}${detail ? ": " + detail : ""}`);
  }
}

const dist = join(root, "bindings/dist/src");
for (const f of ["browser.js", "worker.js", "flextok-lean.wasm", "wasm_exec.js"]) {
  if (!existsSync(join(dist, f))) {
    console.error(`web: ${join(dist, f)} is missing: run make bindings first`);
    process.exit(1);
  }
}

const benchIdx = process.argv.indexOf("--bench");
const benchDir = benchIdx >= 0 ? resolve(process.argv[benchIdx + 1] ?? "") : "";
const tmp = mkdtempSync(join(tmpdir(), "flextok-webexec-"));
if (benchDir) {
  await bench();
  process.exit(0);
}
const d12Idx = process.argv.indexOf("--d12");
if (d12Idx >= 0) {
  const ckpt = resolve(process.argv[d12Idx + 1] ?? "");
  const r = {};
  try {
    execFileSync("go", ["run", "./bindings/test/webhelper", "-one", "-fast", "-fp16=false", tmp, join(root, "testdata/images/shapes.png"), ckpt], { cwd: root, stdio: "inherit" });
    const cases = JSON.parse(readFileSync(join(tmp, "cases.json"), "utf8"));
    const { server, base } = await serve([]);
    const { b, page, errors } = await launch(webgpu, base);
    page.setDefaultTimeout(0);
    for (const provider of webgpu ? ["wasm", "webgpu"] : ["wasm"]) {
      const t0 = Date.now();
      const x = await page.evaluate(([m, p]) => window.conform(m, p, "fp32"), [cases, provider]);
      check(x.ok, `d12 ${provider}: decoded`, JSON.stringify(x.error));
      if (!x.ok) continue;
      const w = worst(x.out);
      r[provider] = { worst: w, ms: Date.now() - t0, cases: x.out };
      check(x.out.every((c) => c.provider === provider), `d12 ${provider}: the ${provider} provider ran`);
      check(w.nmse <= MAX_NMSE_D12 && w.maxAbs <= MAX_ABS_D12, `d12 ${provider} fp32 vs native Go: NMSE ${w.nmse.toExponential(2)} <= ${MAX_NMSE_D12}, max |Δ| ${w.maxAbs.toExponential(2)} <= ${MAX_ABS_D12}`);
    }
    check(errors.length === 0, "no page errors", errors.join("; "));
    await b.close();
    server.close();
  } catch (e) {
    failures++;
    console.log(`FAIL  ${e.stack ?? e}`);
  }
  writeFileSync(join(outDir, "web-d12.json"), JSON.stringify(r, null, 2));
  rmSync(tmp, { recursive: true, force: true });
  console.log(failures === 0 ? "web: all checks passed" : `web: ${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
}
if (process.argv.includes("--only-demo")) {
  const results = {};
  globalThis.results = results;
  try {
    await demo(results);
  } catch (e) {
    failures++;
    console.log(`FAIL  ${e.stack ?? e}`);
  }
  rmSync(tmp, { recursive: true, force: true });
  console.log(failures === 0 ? "web: all checks passed" : `web: ${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
}
const official = join(root, "conformance/testdata/official");
const models = ["default", "c1_w32_zero_e2", ...(quick ? [] : ["c2_w64_learned_t1", "c3_bf16_w48_e1_d2", "c4_w32_nulltok_e2", "c5_w32_img48_tab64_g8"])];
execFileSync("go", ["run", "./bindings/test/webhelper", tmp, join(root, "testdata/images/shapes.png"), ...models.map((m) => (m === "default" ? m : join(official, m)))], {
  cwd: root,
  stdio: "inherit",
});
const cases = JSON.parse(readFileSync(join(tmp, "cases.json"), "utf8"));
const { server, base } = await serve([]);

// A static server: the page, @flextok/sdk's browser build, onnxruntime-web, @msgpack/msgpack and
// the cases, cross-origin isolated.
async function serve(extra) {
const mounts = [
  ...extra,
  ["/dist/", dist],
  ["/ort/", join(root, "bindings/node_modules/onnxruntime-web/dist")],
  ["/msgpack/", join(root, "bindings/node_modules/@msgpack/msgpack/dist.esm")],
  ["/cases/", tmp],
  ["/", join(here, "web")],
];
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
const server = http.createServer((req, res) => {
  let path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (path === "/") path = "/index.html";
  for (const [prefix, dir] of mounts) {
    if (!path.startsWith(prefix)) continue;
    const file = normalize(join(dir, path.slice(prefix.length)));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) break;
    res.setHeader("content-type", types[extname(file)] ?? "application/octet-stream");
    res.setHeader("cross-origin-opener-policy", "same-origin");
    res.setHeader("cross-origin-embedder-policy", "require-corp");
    res.setHeader("cross-origin-resource-policy", "same-origin");
    res.end(readFileSync(file));
    return;
  }
  res.statusCode = 404;
  res.end("not found");
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
return { server, base: `http://127.0.0.1:${server.address().port}/` };
}

const results = { quick, models };
async function launch(gpu, base) {
  const args = ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
  if (gpu) args.push("--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-webgpu-adapter=swiftshader", "--disable-vulkan-surface");
  else args.push("--disable-gpu");
  const b = await chromium.launch({ executablePath, args });
  const page = await b.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base);
  await page.waitForFunction(() => window.pageReady === true);
  return { b, page, errors };
}

function worst(out) {
  return out.reduce((w, r) => ({ nmse: Math.max(w.nmse, r.nmse), maxAbs: Math.max(w.maxAbs, r.maxAbs), psnr: Math.min(w.psnr, r.psnr) }), { nmse: 0, maxAbs: 0, psnr: Infinity });
}

try {
  // Without WebGPU: auto falls back to wasm, and says why.
  {
    const { b, page, errors } = await launch(false, base);
    check(await page.evaluate(() => crossOriginIsolated), "page is cross-origin isolated (the wasm provider's threads)");
    const r = await page.evaluate((m) => window.conform(m, "auto", "auto", 1), cases.slice(0, 1));
    check(r.ok && r.out[0].provider === "wasm" && /WebGPU/.test(r.out[0].fallback), "no WebGPU: auto runs wasm and says why", JSON.stringify(r.ok ? r.out[0] : r.error));
    results.fallback = r.ok ? r.out[0].fallback : r.error;
    const g = await page.evaluate(() => window.openCode("default", { provider: "webgpu" }));
    check(!g.ok && g.error.code === "webgpu_unavailable", "no WebGPU: provider webgpu gives webgpu_unavailable", JSON.stringify(g));
    check(errors.length === 0, "no page errors", errors.join("; "));
    await b.close();
  }
  const { b, page, errors } = await launch(webgpu, base);
  // wasm provider, fp32 and fp16 decoders, every model.
  for (const precision of ["fp32", "fp16"]) {
    const t0 = Date.now();
    const r = await page.evaluate(([m, p]) => window.conform(m, "wasm", p), [cases, precision]);
    check(r.ok, `wasm ${precision}: every case decoded`, JSON.stringify(r.error));
    if (!r.ok) continue;
    const w = worst(r.out);
    results[`wasm_${precision}`] = { worst: w, ms: Date.now() - t0, cases: r.out };
    if (precision === "fp32") check(w.nmse <= MAX_NMSE && w.maxAbs <= MAX_ABS, `wasm fp32 vs native Go on ${models.length} models: NMSE ${w.nmse.toExponential(2)} <= ${MAX_NMSE}, max |Δ| ${w.maxAbs.toExponential(2)} <= ${MAX_ABS}`);
    else check(w.psnr >= MIN_PSNR_FP16, `wasm fp16 decoder vs native Go: PSNR ${w.psnr.toFixed(1)} dB >= ${MIN_PSNR_FP16}`);
  }
  // The WebGPU provider (SwiftShader): one case per model in quick mode, all otherwise.
  if (webgpu) {
    const t0 = Date.now();
    const r = await page.evaluate(([m, n]) => window.conform(m, "webgpu", "fp32", n), [quick ? cases.slice(0, 1) : cases, quick ? 1 : 99]);
    check(r.ok, "webgpu: every case decoded", JSON.stringify(r.error));
    if (r.ok) {
      const w = worst(r.out);
      results.webgpu_fp32 = { worst: w, ms: Date.now() - t0, cases: r.out };
      check(r.out.every((x) => x.provider === "webgpu"), "webgpu: the WebGPU provider ran");
      check(w.nmse <= MAX_NMSE_WEBGPU && w.maxAbs <= MAX_ABS_WEBGPU, `webgpu fp32 vs native Go: NMSE ${w.nmse.toExponential(2)} <= ${MAX_NMSE_WEBGPU}, max |Δ| ${w.maxAbs.toExponential(2)} <= ${MAX_ABS_WEBGPU}`);
    }
  }
  // A graph file that is not the manifest's: a typed error, and the page decodes afterwards.
  const bad = await page.evaluate(() => window.openCode("default", { provider: "wasm" }, "flip"));
  check(!bad.ok && bad.error.code === "graph_mismatch", "a graph that is not the manifest's: graph_mismatch", JSON.stringify(bad));
  const after = await page.evaluate((m) => window.conform(m, "wasm", "fp32", 1), cases.slice(0, 1));
  check(after.ok, "the page decodes after the error", JSON.stringify(after.error));
  check(errors.length === 0, "no page errors", errors.join("; "));
  await b.close();
  if (flextokBin) await demo(results);
} catch (e) {
  failures++;
  console.log(`FAIL  ${e.stack ?? e}`);
} finally {
  server.close();
  rmSync(tmp, { recursive: true, force: true });
}
writeFileSync(join(outDir, "web-results.json"), JSON.stringify(results, null, 2));
console.log(failures === 0 ? "web: all checks passed" : `web: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);

async function bench() {
  const wasm = join(tmp, "webbench.wasm");
  execFileSync("go", ["build", "-trimpath", "-o", wasm, "./tools/webbench"], { cwd: root, stdio: "inherit", env: { ...process.env, GOOS: "js", GOARCH: "wasm" } });
  const { server, base } = await serve([["/bench/webbench.wasm", wasm], ["/bench/", benchDir]]);
  const r = { chromium: execFileSync(executablePath, ["--version"]).toString().trim() };
  try {
    const { b, page } = await launch(false, base);
    page.setDefaultTimeout(0);
    console.log("bench: onnxruntime-web wasm (1- and 20-step guided decodes)...");
    r.ort = await page.evaluate(() => window.benchORT());
    console.log(JSON.stringify(r.ort));
    console.log("bench: Go wasm, one guided decoder step...");
    r.go = await page.evaluate(() => window.benchGo());
    console.log(JSON.stringify(r.go));
    await b.close();
    if (r.ort.ok && r.go.ok) {
      r.speedup = r.go.ms / r.ort.step_ms;
      r.ort_gflops = r.go.gflop / (r.ort.step_ms / 1000);
      r.go_gflops = r.go.gflop / (r.go.ms / 1000);
      const s = r.ort.sizes;
      r.download_fp32 = (s["decoder.onnx"] ?? 0) + (s["decoder.onnx.data"] ?? 0) + (s["vae_decoder.onnx"] ?? 0) + (s["vae_decoder.onnx.data"] ?? 0);
      r.download_fp16 = (s["decoder_fp16.onnx"] ?? 0) + (s["decoder_fp16.onnx.data"] ?? 0) + (s["vae_decoder.onnx"] ?? 0) + (s["vae_decoder.onnx.data"] ?? 0);
      console.log(`guided decoder step at d12: onnxruntime-web wasm ${r.ort.step_ms.toFixed(0)} ms (${r.ort_gflops.toFixed(1)} GFLOP/s), Go wasm ${r.go.ms.toFixed(0)} ms (${r.go_gflops.toFixed(2)} GFLOP/s): ${r.speedup.toFixed(1)}x`);
      console.log(`20-step guided decode at d12 (onnxruntime-web wasm): ${(r.ort.decode20_ms / 1000).toFixed(1)} s; download ${(r.download_fp32 / 2 ** 20).toFixed(0)} MiB fp32, ${(r.download_fp16 / 2 ** 20).toFixed(0)} MiB with the fp16 decoder`);
    }
  } finally {
    server.close();
    rmSync(tmp, { recursive: true, force: true });
  }
  writeFileSync(join(outDir, "web-bench.json"), JSON.stringify(r, null, 2));
}

// The demo's web-model page on `flextok serve` (the embedded default model and its package).
async function demo(results) {
  const { spawn } = await import("node:child_process");
  const cache = join(tmp, "web-cache");
  const p = spawn(flextokBin, ["serve", "--addr", "127.0.0.1:0", "--coop", "same-origin", "--coep", "require-corp", "--web-cache", cache], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let errText = "";
  p.stderr.on("data", (d) => (errText += d));
  try {
    const url = await new Promise((res, rej) => {
      let out = "";
      p.stdout.on("data", (d) => {
        out += d;
        const m = /serving (http:\/\/\S+)/.exec(out);
        if (m) res(m[1]);
      });
      p.on("exit", (code) => rej(new Error(`flextok serve exited (${code}): ${errText.trim()}`)));
      setTimeout(() => rej(new Error(`flextok serve did not start in 180 s: ${errText.trim()}`)), 180_000);
    });
    const b = await chromium.launch({ executablePath, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"] });
    const page = await b.newPage({ viewport: { width: 1000, height: 700 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(new URL("web.html", url).href);
    const ready = await page.evaluate(() => window.flextokWeb.ready);
    check(ready.ok, "demo web.html: module initialized", JSON.stringify(ready.error));
    const progress = [];
    await page.exposeFunction("noteProgress", (v) => progress.push(v));
    await page.evaluate(() => new MutationObserver(() => window.noteProgress(document.getElementById("progress").value)).observe(document.getElementById("progress-text"), { childList: true, characterData: true, subtree: true }));
    const sample = await page.evaluate(() => document.getElementById("sample").value);
    const r = await page.evaluate((s) => window.flextokWeb.run({ sample: s, provider: "auto", steps: 4 }), sample);
    check(r.ok, `demo: the server's package decodes sample ${sample}`, JSON.stringify(r.error));
    if (r.ok) {
      results.demo = r;
      check(r.provider === "wasm" && /WebGPU/.test(r.fallback), "demo: the provider and the fallback reason", `${r.provider} ${r.fallback}`);
      check(r.stages.download_ms > 0 && r.stages.open_ms > 0 && r.stages.decode_ms > 0 && r.stages.velocity_calls === 4 && r.stages.velocity_ms > 0 && r.stages.vae_ms > 0,
        "demo: download, session, decode and network times (one velocity run per step)", JSON.stringify(r.stages));
      check(progress.length > 0 && progress[progress.length - 1] === 1, "demo: download progress reached 100%", JSON.stringify(progress.slice(-3)));
      const summary = await page.locator("#summary").textContent();
      check(/Provider: wasm/.test(summary) && /Download/.test(summary) && /Decode/.test(summary) && /velocity runs/.test(summary), "demo: the page shows provider and stage times", summary);
      await page.screenshot({ path: join(outDir, "demo-web.png") });
    }
    // Typed errors, and the page decodes afterwards.
    const nf = await page.evaluate((s) => window.flextokWeb.run({ sample: s, url: "/v1/web-package/nope/" }), sample);
    check(!nf.ok && nf.error.code === "http_error", "demo: a package URL that is not there: http_error", JSON.stringify(nf.error));
    const gpu = await page.evaluate((s) => window.flextokWeb.run({ sample: s, provider: "webgpu" }), sample);
    check(!gpu.ok && gpu.error.code === "webgpu_unavailable", "demo: WebGPU asked for without an adapter: webgpu_unavailable", JSON.stringify(gpu.error));
    check((await page.locator("#error:not([hidden]) #error-code").textContent()) === "webgpu_unavailable", "demo: the page shows the error code");
    const again = await page.evaluate((s) => window.flextokWeb.run({ sample: s, provider: "wasm", steps: 2 }), sample);
    check(again.ok && again.stages.cached_bytes > 0, "demo: usable after the errors; the package comes from the Cache API", JSON.stringify(again.ok ? again.stages : again.error));
    check(errors.length === 0, "demo: no page errors", errors.join("; "));
    await b.close();
  } finally {
    p.kill();
  }
}
