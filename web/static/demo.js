// The progressive-decoding demo (served by `flextok serve`). Plain ES module, no framework,
// CSP-safe: no inline script, no eval, the SDK's worker loaded by URL.
//
// It loads @flextok/sdk from ./dist/ (copied there by `make demo`), opens the model the
// server names in demo.json (or the module's embedded default model when there is none),
// splits a payload into a stream header and chunks of 1, 1, 2, 4, 8, ... ids, and pushes the
// chunks one by one after a small delay (standing in for the network): after each chunk the
// module decodes every id received so far, k = 1, 2, 4, ...
//
// The input image is shown first, beside its reconstructions: a sample's image as the server
// has it, or the image file chosen (a payload file has none). The Decode button decodes what was
// chosen last: the file, until another sample is picked.
//
// Generate mode: the module's embedded default tokenizer and the default AR model (its files
// under /dist/ar/, served by flextok serve from its embedded copy, downloaded when the page first
// generates: 17 MB, kept in the Cache API) generate one sample of a class token by token
// (generate_next one position at a time); every token is pushed into a stream of the tokenizer,
// which decodes at k = 1, 2, 4, ... as the tokens arrive.
//
// Test hook: window.flextokDemo (see conformance/browser/test.mjs):
//   ready                        Promise<{ok, model?, error?}>
//   run(sampleName, opts?)       decode a sample from /samples/
//   runBytes(base64, opts?)      decode payload bytes given as base64
//   generate(cls, opts?)         generate a sample of a class (name or id); opts {seed, cfg, steps}
// opts: {steps, delay}. run and runBytes resolve (never reject) to
//   {ok, header_sha256, chunks_sha256, stages: [{k, received, bytes, ms, decode_ms, rgba_sha256}],
//    first_image_ms, total_ms, error?: {code, message, field}};
// generate to {ok, class, k, ids, header_sha256, payload_sha256, open_ms,
//   stages: [{k, ms, decode_ms, rgba_sha256}], first_image_ms, total_ms, error?}.

const $ = (id) => document.getElementById(id);

/** Milliseconds a single module call may take before the page gives up on it. */
const CALL_TIMEOUT_MS = 120_000;

const state = { sdk: null, flextok: null, model: null, info: null, busy: false, samples: new Map(), source: "sample", gen: { tok: null, ar: null } };

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(bytes) {
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Any thrown value as {code, message, field?}: FlexTokError keeps its code. */
function typed(e) {
  if (e && typeof e === "object" && typeof e.code === "string") {
    const out = { code: e.code, message: String(e.message ?? e.code) };
    if (e.field !== undefined && e.field !== "") out.field = e.field;
    return out;
  }
  return { code: "internal", message: e instanceof Error ? e.message : String(e) };
}

function setStatus(text, st) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = st;
}

function showError(err) {
  $("error-code").textContent = err.code;
  $("error-message").textContent = " " + err.message + (err.field ? ` (field ${err.field})` : "");
  $("error").hidden = false;
  $("error").dataset.code = err.code;
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.code;
}

async function getJSON(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw { code: "fetch_failed", message: `GET ${url}: HTTP ${resp.status}: ${(await resp.text()).trim()}` };
  return resp.json();
}

async function getBytes(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw { code: "fetch_failed", message: `GET ${url}: HTTP ${resp.status}: ${(await resp.text()).trim()}` };
  return new Uint8Array(await resp.arrayBuffer());
}

/** Opens the served model, or the module's default one (open without weights). */
async function openModel() {
  const { flextok, info } = state;
  if (info.model) {
    const m = info.model;
    const o = { name: m.name };
    if (m.config) o.configURL = m.config;
    if (m.vae_config) o.vaeConfigURL = m.vae_config;
    return flextok.loadModel(m.weights, o);
  }
  if (typeof flextok.openDefault === "function") return flextok.openDefault();
  // sdk/service: "open" without weights opens the front end's default model, if it has one.
  const gen = flextok.generation;
  const r = await flextok.request({ op: "open" });
  return new state.sdk.Model(flextok, r.handle, gen, { model: r.model, height: r.height, width: r.width, codebook: r.codebook });
}

async function ensureModel() {
  if (state.model && !state.model.closed) return state.model;
  state.model = await openModel();
  const m = state.model.model;
  $("model").textContent = `${m.name} (${state.model.width}×${state.model.height}, ${m.max_tokens} tokens, sha256 ${hex(m.digest).slice(0, 12)}…)`;
  return state.model;
}

async function start() {
  try {
    state.info = await getJSON("demo.json");
  } catch (e) {
    throw { code: "load_failed", message: `flextok: demo.json: ${typed(e).message}` };
  }
  try {
    state.sdk = await import("./dist/browser.js");
  } catch (e) {
    const missing = state.info.missing?.length ? ` (not embedded: ${state.info.missing.join(", ")}; build with make demo)` : "";
    throw { code: "load_failed", message: `flextok: failed to load ./dist/browser.js: ${typed(e).message}${missing}` };
  }
  setStatus("Compiling the WebAssembly module…", "loading");
  const t0 = performance.now();
  state.flextok = await state.sdk.initialize({ signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  const tInit = performance.now() - t0;
  setStatus("Opening the model…", "loading");
  await ensureModel();
  const tOpen = performance.now() - t0 - tInit;
  try {
    const list = await getJSON(state.info.samples);
    const sel = $("sample");
    for (const s of list) {
      state.samples.set(s.name, s);
      const o = document.createElement("option");
      o.value = s.name;
      o.textContent = `${s.name} (${s.bytes} B)`;
      sel.append(o);
    }
    sel.disabled = list.length === 0;
  } catch (e) {
    showError(typed(e));
  }
  $("go").disabled = false;
  const ar = state.info.ar;
  if (ar?.classes?.length) {
    const sel = $("gen-class");
    for (const c of ar.classes) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = c;
      sel.append(o);
    }
    sel.disabled = false;
    $("gen-go").disabled = false;
    $("ar-model").textContent = `${ar.name} (${ar.classes.length} classes, up to ${ar.max_tokens} tokens; downloaded when you first generate)`;
  } else {
    $("ar-model").textContent = "none (this server has no default AR model)";
  }
  setStatus(`Ready: module started in ${tInit.toFixed(0)} ms, model opened in ${tOpen.toFixed(0)} ms.`, "ready");
  return { ok: true, init_ms: tInit, open_ms: tOpen, model: { name: state.model.model.name, digest: hex(state.model.model.digest) } };
}

/** Chunk sizes 1, 1, 2, 4, ...: after chunk i the stream holds 2^i ids (the rest in the last). */
function chunkSizes(n) {
  const sizes = [];
  let have = 0;
  while (have < n) {
    const s = Math.min(have === 0 ? 1 : have, n - have);
    sizes.push(s);
    have += s;
  }
  return sizes;
}

function stageFigure(k) {
  const fig = document.createElement("figure");
  fig.dataset.state = "pending";
  fig.dataset.k = String(k);
  const c = document.createElement("canvas");
  c.width = 1;
  c.height = 1;
  const cap = document.createElement("figcaption");
  const b = document.createElement("b");
  b.textContent = `k = ${k}`;
  const t = document.createElement("span");
  t.textContent = "waiting…";
  cap.append(b, document.createElement("br"), t);
  fig.append(c, cap);
  return fig;
}

/** The input image's figure: an <img> (same-origin or data: URL, as the CSP allows). */
function inputFigure(input) {
  const fig = document.createElement("figure");
  fig.dataset.role = "input";
  const img = document.createElement("img");
  img.src = input.url;
  img.alt = `input: ${input.label}`;
  const cap = document.createElement("figcaption");
  const b = document.createElement("b");
  b.textContent = "input";
  const t = document.createElement("span");
  t.textContent = input.label;
  cap.append(b, document.createElement("br"), t);
  fig.append(img, cap);
  return fig;
}

function draw(fig, img, text) {
  const c = fig.querySelector("canvas");
  c.width = img.width;
  c.height = img.height;
  const rgba = img.rgba;
  c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), img.width, img.height), 0, 0);
  fig.querySelector("span").textContent = text;
  fig.dataset.state = "done";
}

/**
 * Decodes payload bytes progressively, after the input image if one is given ({url, label});
 * resolves to the result object (never rejects).
 */
async function decodeProgressive(bytes, opts = {}, input = null) {
  const steps = Number(opts.steps ?? $("steps").value) || undefined;
  const delay = Math.max(0, Number(opts.delay ?? $("delay").value) || 0);
  const out = { ok: false, stages: [], chunks_sha256: [] };
  if (state.busy) return { ...out, error: { code: "busy", message: "a decode is already running" } };
  if (!state.flextok) return { ...out, error: { code: "load_failed", message: "the module is not loaded" } };
  state.busy = true;
  $("go").disabled = true;
  clearError();
  $("stages").replaceChildren();
  $("summary").textContent = "";
  let stream = null;
  try {
    const model = await ensureModel();
    const view = state.sdk.decodePayload(bytes);
    const sizes = chunkSizes(view.ids.length);
    const { header, chunks } = state.sdk.splitPayload(view, sizes);
    out.header_sha256 = await sha256(header);
    for (const c of chunks) out.chunks_sha256.push(await sha256(c));
    const figs = [];
    let k = 0;
    for (const n of sizes) {
      k += n;
      figs.push(stageFigure(k));
    }
    $("stages").replaceChildren(...(input ? [inputFigure(input)] : []), ...figs);
    const so = { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) };
    if (steps !== undefined) so.steps = steps;
    stream = await model.openStream(header, so);
    let received = header.length;
    const t0 = performance.now();
    let delays = 0;
    for (let i = 0; i < chunks.length; i++) {
      if (delay > 0) {
        await sleep(delay); // the chunk "arrives"
        delays += delay;
      }
      received += chunks[i].length;
      const ts = performance.now();
      const r = await stream.push(chunks[i], { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
      const ms = performance.now() - ts;
      if (i === 0) out.first_image_ms = ms;
      const st = { k: r.received, received: r.received, bytes: received, ms, decode_ms: r.image.decode_ms, rgba_sha256: await sha256(r.image.rgba) };
      out.stages.push(st);
      draw(figs[i], r.image, `${st.bytes} B · ${ms.toFixed(0)} ms`);
      $("summary").textContent = `${r.received} of ${view.ids.length} tokens, ${received} bytes received; first image ${out.first_image_ms.toFixed(1)} ms after its chunk arrived.`;
    }
    out.total_ms = performance.now() - t0 - delays;
    out.ok = true;
    $("summary").textContent += ` Decoding took ${out.total_ms.toFixed(1)} ms in all (${out.stages.length} decodes, ${steps ?? "the payload's hinted"} steps each).`;
  } catch (e) {
    out.error = typed(e);
    showError(out.error);
    // A worker that died or restarted loses its models: open again next time.
    if (["worker_died", "closed", "aborted"].includes(out.error.code)) {
      state.model = null;
      state.gen = { tok: null, ar: null };
    }
  } finally {
    if (stream && !stream.closed) await stream.close().catch(() => {});
    state.busy = false;
    $("go").disabled = false;
  }
  return out;
}

/** Stage sizes of a generation: 1, 2, 4, ... and k itself. */
function stageKs(k) {
  const ks = [];
  for (let n = 1; n < k; n *= 2) ks.push(n);
  ks.push(k);
  return ks;
}

/**
 * The generator: the default tokenizer (the page's model when it is the module's default, else
 * opened beside it) and the default AR model from the URLs of demo.json (Cache API: the URLs
 * carry the weights' digest).
 */
async function ensureGenerator() {
  const g = state.gen;
  if (g.ar && !g.ar.closed) return g;
  g.tok = state.info.model ? await state.flextok.openDefault() : await ensureModel();
  const a = state.info.ar;
  const t0 = performance.now();
  g.ar = await g.tok.openAR(a ? { url: a.weights, configURL: a.config, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) } : {});
  g.openMs = performance.now() - t0;
  $("ar-model").textContent = `${g.ar.info.name} (${g.ar.classes.length} classes, ${(g.ar.info.params / 1e6).toFixed(1)} M parameters, opened in ${g.openMs.toFixed(0)} ms)`;
  return g;
}

/** Generates one sample of class cls, decoding at k = 1, 2, 4, ... as the tokens arrive. */
async function generateProgressive(cls, opts = {}) {
  const out = { ok: false, stages: [] };
  if (state.busy) return { ...out, error: { code: "busy", message: "a decode is already running" } };
  if (!state.flextok) return { ...out, error: { code: "load_failed", message: "the module is not loaded" } };
  state.busy = true;
  $("go").disabled = true;
  $("gen-go").disabled = true;
  clearError();
  $("stages").replaceChildren();
  $("summary").textContent = "Opening the generator…";
  let stream = null;
  try {
    const g = await ensureGenerator();
    out.open_ms = g.openMs;
    const k = g.ar.maxTokens;
    const ks = stageKs(k);
    const figs = new Map(ks.map((n) => [n, stageFigure(n)]));
    $("stages").replaceChildren(...figs.values());
    const steps = opts.steps ?? (Number($("gen-steps").value) || undefined);
    const cfg = opts.cfg ?? (Number($("gen-cfg").value) || undefined);
    const seed = opts.seed ?? (Number($("gen-seed").value) || 0);
    const req = { class: cls, k, seed, perCall: 1, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) };
    if (cfg !== undefined) req.cfg = cfg;
    const t0 = performance.now();
    let tToken = t0;
    req.onTokens = async (e) => {
      if (!stream) {
        const so = { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) };
        if (steps !== undefined) so.steps = steps;
        stream = await g.tok.openStream(e.headers[0], so);
        out.header_sha256 = await sha256(e.headers[0]);
      }
      const decode = figs.has(e.received);
      const ts = performance.now();
      const r = await stream.push(e.chunks[0], { decode, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
      const ms = performance.now() - ts;
      $("summary").textContent = `${e.received} of ${e.k} tokens of "${cls}" generated (seed ${seed}).`;
      if (!r.image) return;
      if (out.first_image_ms === undefined) out.first_image_ms = performance.now() - t0;
      const st = { k: r.received, ms, token_ms: ts - tToken, decode_ms: r.image.decode_ms, rgba_sha256: await sha256(r.image.rgba) };
      tToken = performance.now();
      out.stages.push(st);
      draw(figs.get(r.received), r.image, `token at ${(ts - t0).toFixed(0)} ms · decoded in ${ms.toFixed(0)} ms`);
    };
    const res = await g.ar.generate(req);
    out.total_ms = performance.now() - t0;
    out.class = res.class;
    out.k = res.k;
    out.ids = res.ids[0];
    out.payload_sha256 = await sha256(res.payloads[0]);
    out.ok = true;
    $("summary").textContent = `${res.k} tokens of "${cls}" generated and decoded at k = ${ks.join(", ")} in ${out.total_ms.toFixed(0)} ms ` +
      `(first image after ${out.first_image_ms.toFixed(0)} ms; generator opened in ${g.openMs.toFixed(0)} ms).`;
  } catch (e) {
    out.error = typed(e);
    showError(out.error);
    if (["worker_died", "closed", "aborted"].includes(out.error.code)) {
      state.model = null;
      state.gen = { tok: null, ar: null };
    }
  } finally {
    if (stream && !stream.closed) await stream.close().catch(() => {});
    state.busy = false;
    $("go").disabled = false;
    $("gen-go").disabled = !state.info?.ar;
  }
  return out;
}

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Shows an error that comes before any decoding, in place of the last run's images. */
function failBefore(err) {
  $("stages").replaceChildren();
  $("summary").textContent = "";
  showError(err);
  return { ok: false, stages: [], error: err };
}

async function runSample(name, opts) {
  let bytes;
  try {
    bytes = await getBytes(`/samples/${encodeURIComponent(name)}.msgpack`);
  } catch (e) {
    return failBefore(typed(e));
  }
  const s = state.samples.get(name);
  return decodeProgressive(bytes, opts, s?.image ? { url: s.image, label: name } : null);
}

function dataURL(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

/** A file from the picker: a .msgpack payload, or an image the server encodes (POST /encode). */
async function runFile(file) {
  if (state.busy) return;
  let bytes = new Uint8Array(await file.arrayBuffer());
  let input = null;
  if (!file.name.toLowerCase().endsWith(".msgpack")) {
    if (!state.info?.encode) {
      return failBefore({ code: "bad_request", message: `${file.name}: this server does not encode images; choose a .msgpack payload` });
    }
    const resp = await fetch("/encode", { method: "POST", body: bytes });
    if (!resp.ok) {
      return failBefore({ code: "bad_image", message: `${file.name}: ${(await resp.text()).trim()}` });
    }
    bytes = new Uint8Array(await resp.arrayBuffer());
    input = { url: await dataURL(file), label: file.name };
  }
  return decodeProgressive(bytes, {}, input);
}

const ready = start().catch((e) => {
  const err = typed(e);
  setStatus("The module did not load.", "failed");
  showError(err);
  return { ok: false, error: err };
});

window.flextokDemo = {
  ready,
  run: (name, opts) => runSample(name, opts),
  runBytes: (b64, opts) => decodeProgressive(fromBase64(b64), opts),
  generate: (cls, opts) => generateProgressive(cls, opts),
};

function setMode(mode) {
  $("controls").hidden = mode !== "decode";
  $("gen-controls").hidden = mode !== "generate";
}
$("mode-decode").addEventListener("change", () => setMode("decode"));
$("mode-generate").addEventListener("change", () => setMode("generate"));
$("gen-go").addEventListener("click", () => {
  const c = $("gen-class").value;
  if (c) generateProgressive(c);
});

// Decode decodes what was chosen last: the file, until a sample is picked again.
$("go").addEventListener("click", () => {
  const f = $("file").files?.[0];
  if (state.source === "file" && f) {
    runFile(f);
    return;
  }
  const name = $("sample").value;
  if (name) runSample(name);
});
$("sample").addEventListener("change", () => {
  state.source = "sample";
  $("file").value = "";
});
$("file").addEventListener("change", (e) => {
  const f = e.target.files?.[0];
  if (!f) return;
  state.source = "file";
  runFile(f);
});
