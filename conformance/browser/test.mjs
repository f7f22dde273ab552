// The demo page of `flextok serve` in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core: no browser download). It checks that the page's progressive decodes are
// BIT-IDENTICAL to the native Go service for the same requests (./expected, run with `go`),
// that bad inputs show typed errors on the page, and that a wasm that fails to load does too;
// also that the module on the main thread (no Worker) answers decodes in flight together with
// the same bits (the asynchronous wasm entry).
//
//   node test.mjs [--flextok BIN] [--model DIR] [--steps N] [--samples a,b,c] [--docs]
//
// --flextok: a binary built by `make demo` (it embeds the wasm assets); default ../../bin/flextok.
// --docs: also write the screenshots to ../../docs/img/ (else only to out/).
// Writes out/results.json (hashes and timings) and out/demo-*.png. Exit status 1 on failure.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, copyFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { createHash } from "node:crypto";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith("--") ? true : v;
}
const flextok = resolve(arg("flextok", join(root, "bin/flextok")));
const model = resolve(arg("model", join(root, "conformance/testdata/official/c1_w32_zero_e2")));
const steps = Number(arg("steps", "20"));
const sampleNames = String(arg("samples", "000_cross,003_circle,006_star,022_crescent")).split(",");
const toDocs = arg("docs", false) === true;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const outDir = join(here, "out");
mkdirSync(outDir, { recursive: true });

let failures = 0;
function check(cond, what, detail = "") {
  if (cond) console.log(`ok    ${what}`);
  else {
    failures++;
    console.log(`FAIL  ${what}${detail ? ": " + detail : ""}`);
  }
}

if (!existsSync(flextok)) {
  console.error(`test: ${flextok} not found: run \`make demo\` first (it embeds the wasm assets)`);
  process.exit(1);
}
if (!existsSync(executablePath)) {
  console.error(`test: ${executablePath} not found: run scripts/setup-chromium.sh`);
  process.exit(1);
}

// The native helper, built once.
const tmp = mkdtempSync(join(tmpdir(), "flextok-browser-"));
const helper = join(tmp, "expected");
execFileSync("go", ["build", "-o", helper, "./conformance/browser/expected"], { cwd: root, stdio: "inherit" });

// The server, on a free port; it prints "serving http://ADDR/".
function startServer(args = ["-m", model, "--samples", join(root, "testdata/heldout")]) {
  const p = spawn(flextok, ["serve", "--addr", "127.0.0.1:0", ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let errText = "";
  p.stderr.on("data", (d) => (errText += d));
  const url = new Promise((res, rej) => {
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
      const m = /serving (http:\/\/\S+)/.exec(out);
      if (m) res(m[1]);
    });
    p.on("exit", (code) => rej(new Error(`flextok serve exited (${code}): ${errText.trim()}`)));
    setTimeout(() => rej(new Error(`flextok serve did not start in 120 s: ${errText.trim()}`)), 120_000);
  });
  return { p, url, stderr: () => errText };
}

const server = startServer();
let browser;
const results = { steps, samples: {}, errors: {} };
try {
  const base = await server.url;
  console.log(`server ${base}`);
  const health = await (await fetch(new URL("healthz", base))).json();
  check(health.status === "ok" && health.assets === true, "/healthz: ok, wasm assets embedded", JSON.stringify(health));
  const wasmResp = await fetch(new URL("dist/flextok.wasm", base));
  const wasm = new Uint8Array(await wasmResp.arrayBuffer());
  check(wasmResp.headers.get("content-type") === "application/wasm", "flextok.wasm served as application/wasm");
  results.wasm_bytes = wasm.length;
  results.wasm_gzip_bytes = Number(execFileSync("bash", ["-c", "gzip -9c | wc -c"], { input: wasm }).toString().trim());

  const userDataDir = join(tmp, "profile");
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1000, height: 560 },
  });
  browser = ctx;
  results.chromium = ctx.browser()?.version() ?? execFileSync(executablePath, ["--version"]).toString().trim();
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const arRequests = [];
  page.on("request", (r) => r.url().includes("/dist/ar/") && arRequests.push(r.url()));
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  const tLoad = Date.now();
  await page.goto(base);
  const ready = await page.evaluate(() => window.flextokDemo.ready);
  results.page_ready_ms = Date.now() - tLoad;
  results.init_ms = ready.init_ms;
  results.open_ms = ready.open_ms;
  check(ready.ok, "page: module initialized in a worker and model opened", JSON.stringify(ready.error));
  check(await page.locator("#status[data-state=ready]").count() === 1, "page: status shows ready");

  // Bit identity: each sample, page vs native.
  for (const name of sampleNames) {
    const payloadPath = join(tmp, `${name}.msgpack`);
    const resp = await fetch(new URL(`samples/${name}.msgpack`, base));
    check(resp.headers.get("content-type") === "application/vnd.msgpack", `${name}: served as application/vnd.msgpack`);
    writeFileSync(payloadPath, new Uint8Array(await resp.arrayBuffer()));
    const want = JSON.parse(execFileSync(helper, ["-m", model, "-steps", String(steps), payloadPath]).toString());
    const got = await page.evaluate(([n, s]) => window.flextokDemo.run(n, { steps: s, delay: 0 }), [name, steps]);
    check(got.ok, `${name}: page decoded every stage`, JSON.stringify(got.error));
    if (!got.ok) continue;
    check(got.header_sha256 === want.header_sha256, `${name}: stream header bytes equal Go's payload.Split`);
    check(JSON.stringify(got.chunks_sha256) === JSON.stringify(want.chunks_sha256), `${name}: ${want.chunks_sha256.length} chunk bytes equal Go's`);
    const ks = got.stages.map((s) => s.k).join(",");
    check(ks === want.stages.map((s) => s.k).join(","), `${name}: stages k = ${ks}`);
    let same = got.stages.length === want.stages.length;
    for (let i = 0; same && i < got.stages.length; i++) same = got.stages[i].rgba_sha256 === want.stages[i].rgba_sha256;
    check(same, `${name}: RGBA of every stage bit-identical to the native Go service`);
    results.samples[name] = { page: got, native: want, identical: same };
  }

  // Generate mode: the default AR model (downloaded from /dist/ar/ only now, not by the decode
  // runs above) generates a class token by token in the worker, each token pushed into a stream
  // of the default tokenizer that decodes at k = 1, 2, 4, ..., 32: ids, payload and every
  // stage's RGBA bit-identical to the native Go service doing the same (./expected -generate).
  check(arRequests.length === 0, "decoding never downloads the AR model", arRequests.join(" "));
  const arInfo = (await (await fetch(new URL("demo.json", base))).json()).ar;
  check(arInfo?.classes?.length > 0, `demo.json names the default AR model (${arInfo?.name}, classes ${arInfo?.classes?.join(", ")})`);
  results.generate = {};
  for (const [cls, seed] of [["star", 7], ["cross", 11]]) {
    const want = JSON.parse(execFileSync(helper, ["-generate", cls, "-seed", String(seed), "-steps", String(steps)]).toString());
    const got = await page.evaluate(([c, sd, s]) => window.flextokDemo.generate(c, { seed: sd, steps: s }), [cls, seed, steps]);
    check(got.ok, `generate ${cls}: the page generated and decoded every stage`, JSON.stringify(got.error));
    if (!got.ok) continue;
    check(JSON.stringify(got.ids) === JSON.stringify(want.ids), `generate ${cls}: ${want.ids.length} ids equal the native Go service's (seed ${seed})`);
    check(got.payload_sha256 === want.payload_sha256 && got.header_sha256 === want.header_sha256, `generate ${cls}: payload and stream header bytes equal Go's`);
    const ks = got.stages.map((st) => st.k).join(",");
    check(ks === want.stages.map((st) => st.k).join(","), `generate ${cls}: decoded as the tokens arrived at k = ${ks}`);
    let same = got.stages.length === want.stages.length;
    for (let i = 0; same && i < got.stages.length; i++) same = got.stages[i].rgba_sha256 === want.stages[i].rgba_sha256;
    check(same, `generate ${cls}: RGBA of every stage bit-identical to the native Go service`);
    results.generate[cls] = { page: got, native: want, identical: same };
  }
  check(arRequests.length > 0 && arRequests.every((u) => u.includes("?v=")), "the AR files were downloaded for Generate, from versioned URLs", arRequests.join(" "));

  // The asynchronous wasm entry on Chromium's main thread (initialize({worker: false}), no
  // Worker): the module's handle returns a Promise, and every sample's stages decoded all in
  // flight together (Promise.all of plain decodes with k = each stage's) equal native Go's.
  const direct = await page.evaluate(async ([names, s, ks]) => {
    const sdk = await import(new URL("dist/browser.js", location.href).href);
    const info = await (await fetch("demo.json")).json();
    const ft = await sdk.initialize({ worker: false });
    try {
      const handleReturnsPromise = globalThis.flextok.handle(new Uint8Array()) instanceof Promise;
      const m = info.model;
      const model = await ft.loadModel(m.weights, { configURL: m.config, vaeConfigURL: m.vae_config, name: m.name });
      const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
      const hashes = {};
      await Promise.all(names.map(async (n) => {
        const pb = new Uint8Array(await (await fetch(`samples/${n}.msgpack`)).arrayBuffer());
        const imgs = await Promise.all(ks[n].map((k) => model.decode(pb, { k, steps: s })));
        hashes[n] = await Promise.all(imgs.map(async (img) => hex(await crypto.subtle.digest("SHA-256", img.rgba))));
      }));
      return { ok: true, handleReturnsPromise, hashes };
    } catch (e) {
      return { ok: false, error: String(e?.message ?? e) };
    } finally {
      ft.close();
    }
  }, [Object.keys(results.samples), steps, Object.fromEntries(Object.entries(results.samples).map(([n, r]) => [n, r.native.stages.map((st) => st.k)]))]);
  check(direct.ok, "main thread (worker: false): the module loaded and decoded", direct.error);
  if (direct.ok) {
    check(direct.handleReturnsPromise, "main thread: the module's handle returns a Promise");
    const n = Object.keys(results.samples).length;
    let same = Object.keys(direct.hashes).length === n;
    for (const [name, hs] of Object.entries(direct.hashes)) same &&= JSON.stringify(hs) === JSON.stringify(results.samples[name].native.stages.map((st) => st.rgba_sha256));
    check(same, `main thread: ${n} samples' stages decoded all in flight together, bit-identical to the native Go service`);
    results.main_thread = direct;
  }

  // Screenshots: a slow run (chunks 600 ms apart), mid-decode and at the end.
  const shot = sampleNames[0];
  await page.evaluate(() => document.getElementById("stages").replaceChildren()); // the last run's stages
  const run = page.evaluate(([n, s]) => window.flextokDemo.run(n, { steps: s, delay: 600 }), [shot, steps]);
  await page.locator('figure[data-k="4"][data-state="done"]').waitFor({ timeout: 60_000 });
  await page.screenshot({ path: join(outDir, "demo-midway.png") });
  const slow = await run;
  check(slow.ok, "slow run with simulated arrival finished");
  await page.screenshot({ path: join(outDir, "demo-progressive.png") });
  check(consoleErrors.length === 0, "no console errors or CSP violations so far", consoleErrors.join(" | "));
  const inputImg = page.locator('figure[data-role="input"] img');
  check((await inputImg.count()) === 1 && (await inputImg.evaluate((i) => i.complete && i.naturalWidth > 0)),
    "the sample's input image is shown beside its reconstructions");

  // The Generate mode through its controls: pick a class, press Generate, the stages fill in.
  await page.check("#mode-generate");
  check(await page.locator("#controls").isHidden() && await page.locator("#gen-controls").isVisible(), "Generate mode shows its controls instead of the decode controls");
  await page.selectOption("#gen-class", "star");
  await page.fill("#gen-seed", "7");
  await page.fill("#gen-steps", String(steps));
  await page.click("#gen-go");
  await page.locator('figure[data-k="4"][data-state="done"]').waitFor({ timeout: 60_000 });
  await page.screenshot({ path: join(outDir, "demo-generate-midway.png") });
  await page.locator('figure[data-k="32"][data-state="done"]').waitFor({ timeout: 120_000 });
  await page.waitForFunction(() => !document.getElementById("gen-go").disabled);
  await page.screenshot({ path: join(outDir, "demo-generate.png") });
  check(await page.locator("#error:not([hidden])").count() === 0 && await page.locator("figure[data-state=done]").count() === 6,
    "the Generate button generates a star and draws k = 1, 2, 4, 8, 16, 32");
  await page.check("#mode-decode");

  // Decode decodes what was chosen last: after a file that fails, Decode shows its error again
  // (not the sample); after a sample is picked again, the sample.
  await page.setInputFiles("#file", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image") });
  await page.locator("#error:not([hidden])").waitFor({ timeout: 30_000 });
  await page.click("#go");
  await page.waitForFunction(() => !document.getElementById("go").disabled);
  await page.waitForTimeout(500);
  check(await page.locator("#error:not([hidden])").count() === 1 && await page.locator("figure[data-k]").count() === 0,
    "Decode after a bad file shows the file's error again, not a sample");
  await page.selectOption("#sample", shot);
  await page.click("#go");
  await page.locator(`figure[data-k="${slow.stages.at(-1).k}"][data-state="done"]`).waitFor({ timeout: 60_000 });
  check(await page.locator("#error:not([hidden])").count() === 0, "Decode after picking a sample again decodes the sample");
  // An image file: encoded by the server, shown as the input beside its reconstructions.
  await page.setInputFiles("#file", join(root, "testdata/heldout/000_cross.png"));
  await page.locator('figure[data-role="input"] img[alt="input: 000_cross.png"]').waitFor({ timeout: 30_000 });
  await page.locator(`figure[data-k="${slow.stages.at(-1).k}"][data-state="done"]`).waitFor({ timeout: 60_000 });
  check(await page.locator("#error:not([hidden])").count() === 0, "an image file is encoded and decoded, its image shown as the input");
  // Chromium logs the two refused POST /encode of the text file; nothing else may appear.
  const unexpected = consoleErrors.filter((m) => !m.includes("status of 422"));
  check(unexpected.length === 0 && consoleErrors.length === 2, "no console errors or CSP violations besides the two 422s", consoleErrors.join(" | "));
  consoleErrors.length = 0;

  // Bad inputs: typed errors on the page, nothing hangs.
  const sampleBytes = readFileSync(join(tmp, `${shot}.msgpack`));
  const bad = {
    truncated: sampleBytes.subarray(0, sampleBytes.length - 7),
    format: Buffer.from("this is not a payload"),
    model_mismatch: readFileSync(join(root, "conformance/testdata/payload/tokens_1.msgpack")),
  };
  for (const [code, bytes] of Object.entries(bad)) {
    const r = await page.evaluate(([b, s]) => window.flextokDemo.runBytes(b, { steps: s, delay: 0 }), [bytes.toString("base64"), steps]);
    results.errors[code] = r.error;
    check(!r.ok && r.error?.code === code, `bad input: ${code} is a typed error`, JSON.stringify(r.error));
    const shown = await page.locator("#error:not([hidden])").getAttribute("data-code");
    check(shown === code, `bad input: the page shows error code ${code}`, String(shown));
    if (code === "truncated") await page.screenshot({ path: join(outDir, "demo-error.png") });
  }
  // After errors the page still decodes.
  const again = await page.evaluate(([n, s]) => window.flextokDemo.run(n, { steps: s, delay: 0 }), [shot, steps]);
  check(again.ok && again.stages.at(-1).rgba_sha256 === results.samples[shot]?.native.stages.at(-1).rgba_sha256, "after the errors the same sample decodes to the same bits");

  // Generate on the server: `flextok serve` as it runs out of the box (the embedded default
  // model and default AR model, so POST /v1/generate is there) serves a second page, whose
  // Generate mode then defaults to "on the server": the page POSTs /v1/generate, reads the
  // frames with fetch() streams (@flextok/sdk's readGenerateStream) and pushes each token into
  // a stream of the module's default tokenizer, decoding at k = 1, 2, 4, ... as they arrive.
  // Every stage's RGBA must be bit-identical to the native Go service decoding the stream's
  // final complete payload (./expected without -m: the embedded default model; stream decodes
  // at the same k, and a plain decode of the whole payload). The first class runs through a
  // gate in the page's fetch that holds the body after the first token's frame until k = 1 is
  // drawn: a page that waited for the whole response would never draw it.
  results.server_generate = {};
  const server2 = startServer(["--samples", "none"]);
  serverGen: try {
    const base2 = await server2.url;
    const models = (await (await fetch(new URL("v1/models", base2))).json()).models;
    check(models.some((m) => m.operations.includes("generate")), `flextok serve without -m serves /v1/generate (${models.map((m) => m.name + ": " + m.operations.join("+")).join(", ")})`);
    const pg = await ctx.newPage();
    const pgErrors = [];
    pg.on("console", (m) => m.type() === "error" && pgErrors.push(m.text()));
    pg.on("pageerror", (e) => pgErrors.push(String(e)));
    const pgAR = [];
    const pgGenerate = [];
    pg.on("request", (r) => {
      if (r.url().includes("/dist/ar/")) pgAR.push(r.url());
      if (r.url().endsWith("/v1/generate")) pgGenerate.push(r.method());
    });
    await pg.goto(base2);
    const ready2 = await pg.evaluate(() => window.flextokDemo.ready);
    check(ready2.ok, "server-generate page: ready", JSON.stringify(ready2.error));
    if (!ready2.ok) break serverGen;
    check((await pg.locator("#gen-where").inputValue()) === "server", "Generate defaults to \"on the server\" when the page's server serves /v1/generate");
    check((await page.locator("#gen-where").inputValue()) === "browser" && (await page.locator('#gen-where option[value="server"]').isDisabled()),
      "... and to \"in this browser\" when it does not (-m c1: no AR model)");
    for (const [cls, seed, gated] of [["star", 7, true], ["cross", 11, false]]) {
      if (gated) {
        await pg.evaluate(() => {
          const real = window.fetch.bind(window);
          const gate = (window.__gate = { armed: true, released_by: null, held_ms: 0 });
          const drawn = () => document.querySelector('figure[data-k="1"][data-state="done"]');
          window.fetch = async (input, init) => {
            const resp = await real(input, init);
            if (!gate.armed || !String(input).endsWith("/v1/generate") || !resp.ok) return resp;
            gate.armed = false;
            const reader = resp.body.getReader();
            let buf = new Uint8Array(0), sent = 0, boundary = null, released = false, done = false;
            const u32 = (o) => new DataView(buf.buffer, buf.byteOffset).getUint32(o);
            const body = new ReadableStream({
              async pull(ctl) {
                for (;;) {
                  // Forward up to the end of frame 1 (the header, then token 0's chunk), then hold.
                  const limit = released || boundary === null ? buf.length : Math.min(buf.length, boundary);
                  if (sent < limit) {
                    ctl.enqueue(buf.slice(sent, limit));
                    sent = limit;
                    return;
                  }
                  if (!released && boundary !== null && sent === boundary) {
                    const t0 = performance.now();
                    while (!drawn() && performance.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
                    gate.held_ms = performance.now() - t0;
                    gate.released_by = drawn() ? "k=1 drawn" : "timeout";
                    released = true;
                    continue;
                  }
                  if (done) {
                    ctl.close();
                    return;
                  }
                  const r = await reader.read();
                  if (r.done) {
                    done = true;
                    continue;
                  }
                  const b = new Uint8Array(buf.length + r.value.length);
                  b.set(buf);
                  b.set(r.value, buf.length);
                  buf = b;
                  if (boundary === null && buf.length >= 4 && buf.length >= 8 + u32(0)) boundary = 8 + u32(0) + u32(4 + u32(0));
                }
              },
              cancel: (why) => reader.cancel(why),
            });
            return new Response(body, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
          };
        });
      }
      const got = await pg.evaluate(([c, sd, st]) => window.flextokDemo.generate(c, { seed: sd, steps: st }), [cls, seed, steps]);
      const what = `server generate ${cls} (seed ${seed}${gated ? ", gated" : ""})`;
      check(got.ok && got.where === "server", `${what}: the page streamed POST /v1/generate and decoded every stage`, JSON.stringify(got.error));
      if (!got.ok) continue;
      const payloadPath = join(tmp, `server-${cls}.msgpack`);
      writeFileSync(payloadPath, Buffer.from(got.payload_b64, "base64"));
      const want = JSON.parse(execFileSync(helper, ["-steps", String(steps), payloadPath]).toString());
      check(createHash("sha256").update(readFileSync(payloadPath)).digest("hex") === got.payload_sha256, `${what}: the stream's complete payload handed over intact`);
      check(JSON.stringify(got.ids) === JSON.stringify(got.payload_ids) && got.ids.length === got.k, `${what}: the ${got.k} streamed ids are the complete payload's`);
      check(got.header_sha256 === want.header_sha256, `${what}: the streamed header equals Go's payload.Split of the complete payload`);
      const ks = got.stages.map((st) => st.k).join(",");
      check(ks === want.stages.map((st) => st.k).join(","), `${what}: decoded as the tokens arrived at k = ${ks}`);
      let same = got.stages.length === want.stages.length;
      for (let i = 0; same && i < got.stages.length; i++) same = got.stages[i].rgba_sha256 === want.stages[i].rgba_sha256;
      check(same, `${what}: RGBA of every stage bit-identical to the native Go service decoding the complete payload`);
      check(got.stages.at(-1)?.rgba_sha256 === want.final.rgba_sha256 && want.final.k === got.k,
        `${what}: the final image bit-identical to a native decode of the complete payload (op decode, k = ${want.final.k})`);
      // Ungated, the interim AR model streams all 32 tokens in about 0.1 s, faster than one
      // decode: only the gated run can show k = 1 drawn before the end; the other's times are
      // reported.
      if (gated) {
        const gate = await pg.evaluate(() => window.__gate);
        check(gate.released_by === "k=1 drawn", `${what}: with the rest of the body held after token 0, the page drew k = 1 from the partial stream (held ${gate.held_ms.toFixed(0)} ms)`, JSON.stringify(gate));
        check(got.stages[0]?.k === 1 && got.stages[0].drawn_ms < got.stream_end_ms,
          `${what}: k = 1 drawn (${got.stages[0]?.drawn_ms?.toFixed(0)} ms) before the stream ended (${got.stream_end_ms?.toFixed(0)} ms)`);
      }
      results.server_generate[cls] = { page: { ...got, payload_b64: undefined }, native: want, identical: same, gated };
    }
    check(pgGenerate.length === 2 && pgGenerate.every((m) => m === "POST"), `the page POSTed /v1/generate once per generation (${pgGenerate.length})`);
    check(pgAR.length === 0, "generating on the server never downloads the AR model", pgAR.join(" "));
    // Typed errors on the server path: a class the server does not know (its 400 before any
    // frame), shown on the page.
    const bad = await pg.evaluate(() => window.flextokDemo.generate("no_such_class", { where: "server" }));
    check(!bad.ok && bad.error?.code === "bad_request", "server generate of an unknown class: the server's bad_request, typed", JSON.stringify(bad.error));
    check((await pg.locator("#error:not([hidden])").getAttribute("data-code")) === "bad_request", "... and shown on the page");
    // The controls: Generate mode, "on the server", a class, the button; all six stages drawn.
    await pg.check("#mode-generate");
    await pg.selectOption("#gen-class", "star");
    await pg.fill("#gen-seed", "7");
    await pg.fill("#gen-steps", String(steps));
    await pg.click("#gen-go");
    await pg.locator('figure[data-k="32"][data-state="done"]').waitFor({ timeout: 120_000 });
    await pg.waitForFunction(() => !document.getElementById("gen-go").disabled);
    await pg.screenshot({ path: join(outDir, "demo-generate-server.png") });
    check(await pg.locator("#error:not([hidden])").count() === 0 && await pg.locator("figure[data-state=done]").count() === 6 &&
      (await pg.locator("#summary").textContent()).includes("on the server"),
      "the Generate button, on the server, draws k = 1, 2, 4, 8, 16, 32 and says where it ran");
    // Chromium logs the refused POST (400) of the unknown class; nothing else may appear.
    const unexpected = pgErrors.filter((m) => !m.includes("status of 400"));
    check(unexpected.length === 0, "server-generate page: no console errors or CSP violations besides the 400", pgErrors.join(" | "));
    await pg.close();
  } catch (e) {
    failures++;
    console.log(`FAIL  server generate: ${e instanceof Error ? e.stack : e}`);
  } finally {
    const ex2 = new Promise((res) => server2.p.on("exit", (code) => res(code)));
    server2.p.kill("SIGTERM");
    await Promise.race([ex2, new Promise((res) => setTimeout(res, 15_000))]);
  }

  // A wasm module that fails to load: load_failed on the page.
  const page2 = await ctx.newPage();
  await page2.route("**/dist/flextok.wasm", (r) => r.fulfill({ status: 200, contentType: "application/wasm", body: Buffer.from("not wasm at all") }));
  await page2.goto(base);
  const r2 = await page2.evaluate(() => window.flextokDemo.ready);
  check(!r2.ok && r2.error?.code === "load_failed", "a broken flextok.wasm: load_failed on the page", JSON.stringify(r2.error));
  check((await page2.locator("#status[data-state=failed]").count()) === 1, "a broken flextok.wasm: status shows the failure");
  await page2.close();

  // A worker script that is missing: load_failed, not a hang.
  const page3 = await ctx.newPage();
  await page3.route("**/dist/worker.js", (r) => r.fulfill({ status: 404, body: "gone" }));
  await page3.goto(base);
  const r3 = await Promise.race([page3.evaluate(() => window.flextokDemo.ready), new Promise((res) => setTimeout(() => res({ ok: "hang" }), 30_000))]);
  check(r3.ok === false && r3.error?.code === "load_failed", "a missing worker.js: load_failed on the page", JSON.stringify(r3));
  await page3.close();
  await ctx.close();
  browser = null;
} catch (e) {
  failures++;
  console.log(`FAIL  ${e instanceof Error ? e.stack : e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}

// Graceful shutdown on SIGTERM.
const exited = new Promise((res) => server.p.on("exit", (code, sig) => res({ code, sig })));
server.p.kill("SIGTERM");
const ex = await Promise.race([exited, new Promise((res) => setTimeout(() => res({ code: "timeout" }), 15_000))]);
check(ex.code === 0, "flextok serve exits 0 on SIGTERM", JSON.stringify(ex));
if (ex.code === "timeout") server.p.kill("SIGKILL");
rmSync(tmp, { recursive: true, force: true });

// Timings: page (Chromium, wasm in a worker) against native (same portable path).
const rows = [];
for (const [name, r] of Object.entries(results.samples)) {
  r.page.stages.forEach((s, i) => rows.push({ name, k: s.k, page_ms: s.ms, page_decode_ms: s.decode_ms, native_ms: r.native.stages[i].ms }));
}
if (rows.length) {
  const byK = {};
  for (const r of rows) (byK[r.k] ??= []).push(r);
  const med = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`\nmedian per stage over ${Object.keys(results.samples).length} samples, ${steps} steps (ms): k  chromium-push  chromium-decode  native`);
  results.median = [];
  for (const [k, rs] of Object.entries(byK)) {
    const m = { k: Number(k), chromium_ms: med(rs.map((r) => r.page_ms)), chromium_decode_ms: med(rs.map((r) => r.page_decode_ms)), native_ms: med(rs.map((r) => r.native_ms)) };
    results.median.push(m);
    console.log(`  ${String(k).padStart(2)}  ${m.chromium_ms.toFixed(1).padStart(8)}  ${m.chromium_decode_ms.toFixed(1).padStart(8)}  ${m.native_ms.toFixed(1).padStart(8)}`);
  }
  for (const [cls, r] of Object.entries(results.generate ?? {})) {
    const p = r.page;
    console.log(`generate ${cls}: ${p.k} tokens and ${p.stages.length} decodes in ${p.total_ms.toFixed(0)} ms in Chromium (first image ${p.first_image_ms.toFixed(0)} ms; AR opened in ${p.open_ms?.toFixed(0)} ms)`);
  }
  for (const [cls, r] of Object.entries(results.server_generate ?? {})) {
    const p = r.page;
    console.log(`server generate ${cls}${r.gated ? " (gated)" : ""}: first frame ${p.first_frame_ms.toFixed(0)} ms, stream ended ${p.stream_end_ms.toFixed(0)} ms, first image ${p.first_image_ms.toFixed(0)} ms, ` +
      `${p.stages.length} decodes done ${p.total_ms.toFixed(0)} ms after the POST (stages drawn at ${p.stages.map((st) => `k=${st.k}: ${st.drawn_ms.toFixed(0)}`).join(", ")} ms)`);
  }
  console.log(`module ${results.wasm_bytes} bytes, ${results.wasm_gzip_bytes} gzipped; page ready in ${results.page_ready_ms} ms (init ${results.init_ms?.toFixed(0)} ms, open ${results.open_ms?.toFixed(0)} ms); ${results.chromium}`);
}
writeFileSync(join(outDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
if (toDocs && failures === 0) {
  mkdirSync(join(root, "docs/img"), { recursive: true });
  for (const f of ["demo-progressive.png", "demo-midway.png", "demo-error.png", "demo-generate.png", "demo-generate-midway.png", "demo-generate-server.png"]) copyFileSync(join(outDir, f), join(root, "docs/img", f));
  console.log("screenshots copied to docs/img/");
}
console.log(failures === 0 ? "\nPASS" : `\n${failures} FAILED`);
process.exit(failures === 0 ? 0 : 1);
