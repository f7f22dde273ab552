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
// which decodes at k = 1, 2, 4, ... as the tokens arrive. Or on the server (the default when
// /v1/models lists a model with "generate" whose tokenizer this page can open: the page's
// model or the module's embedded default): POST /v1/generate streams length-prefixed frames
// of the payload stream form (docs/server.md), which @flextok/sdk's readGenerateStream splits
// as they arrive (fetch() streams); the header and each token's chunk go into a stream of
// the tokenizer in the worker, which decodes at k = 1, 2, 4, ... while the rest arrives.
//
// Test hook: window.flextokDemo (see conformance/browser/test.mjs):
//   ready                        Promise<{ok, model?, error?}>
//   run(sampleName, opts?)       decode a sample from /samples/
//   runBytes(base64, opts?)      decode payload bytes given as base64
//   generate(cls, opts?)         generate a sample of a class (name or id); opts {seed, cfg, steps,
//                                where: "server" | "browser" (default: the page's choice)}
// opts: {steps, delay}. run and runBytes resolve (never reject) to
//   {ok, header_sha256, chunks_sha256, stages: [{k, received, bytes, ms, decode_ms, rgba_sha256}],
//    first_image_ms, total_ms, error?: {code, message, field}};
// generate to {ok, where, class, k, ids, header_sha256, payload_sha256, open_ms,
//   stages: [{k, ms, token_ms, decode_ms, rgba_sha256}], first_image_ms, total_ms, error?};
//   on the server also seed, request_id, payload_b64 (the stream's complete payload),
//   first_frame_ms, stream_end_ms (when the last frame arrived), and per stage arrived_ms (its
//   token's frame) and drawn_ms.

const $ = (id) => document.getElementById(id);

/** Milliseconds a single module call may take before the page gives up on it. */
const CALL_TIMEOUT_MS = 120_000;

const state = {
  sdk: null, flextok: null, model: null, info: null, busy: false, samples: new Map(), source: "sample",
  gen: { tok: null, ar: null },
  // The server's generation (/v1/models): {model, classes, maxK, digest}, or null.
  serverGen: null,
};

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
// failed shows a run's error and returns it typed; a worker that died or restarted loses its
// models, so they are opened again next time.
function failed(e) {
  const err = typed(e);
  showError(err);
  if (["worker_died", "closed", "aborted"].includes(err.code)) {
    state.model = null;
    state.gen = { tok: null, ar: null };
  }
  return err;
}

// settle ends a run: its stream closed, the page ready for the next.
async function settle(stream) {
  if (stream && !stream.closed) await stream.close().catch(() => {});
  state.busy = false;
  $("go").disabled = false;
}

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
  state.serverGen = await detectServerGen();
  // On the server by default when it generates; else in the browser.
  $("gen-where").value = state.serverGen ? "server" : "browser";
  $("gen-where").querySelector('option[value="server"]').disabled = !state.serverGen;
  showGenerator();
  setStatus(`Ready: module started in ${tInit.toFixed(0)} ms, model opened in ${tOpen.toFixed(0)} ms.`, "ready");
  return { ok: true, init_ms: tInit, open_ms: tOpen, model: { name: state.model.model.name, digest: hex(state.model.model.digest) } };
}

/**
 * The server's generation, if it has one: the first model of /v1/models with "generate" among
 * its operations. Its tokenizer must be one the page can open (checked when it generates).
 */
async function detectServerGen() {
  try {
    const resp = await fetch("/v1/models");
    if (!resp.ok) return null;
    const { models } = await resp.json();
    const m = models?.find((x) => x.operations?.includes("generate") && x.classes?.length);
    if (!m) return null;
    return { model: m.name, classes: m.classes, maxK: m.ar?.max_k ?? m.max_tokens, digest: m.identity?.digest, arName: m.ar?.name ?? "" };
  } catch {
    return null;
  }
}

/** The class list and the generator line of the chosen path (server or browser). */
function showGenerator() {
  const where = $("gen-where").value;
  const sel = $("gen-class");
  const prev = sel.value;
  sel.replaceChildren();
  let classes = [];
  if (where === "server" && state.serverGen) {
    const g = state.serverGen;
    classes = g.classes;
    $("ar-model").textContent = `on the server: ${g.arName || "AR model"} of model ${g.model} (${g.classes.length} classes, up to ${g.maxK} tokens; POST /v1/generate, streamed)`;
  } else if (state.info?.ar?.classes?.length) {
    const ar = state.info.ar;
    classes = ar.classes;
    $("ar-model").textContent = state.gen.ar && !state.gen.ar.closed
      ? `in this browser: ${state.gen.ar.info.name} (${state.gen.ar.classes.length} classes, opened in ${state.gen.openMs.toFixed(0)} ms)`
      : `in this browser: ${ar.name} (${ar.classes.length} classes, up to ${ar.max_tokens} tokens; downloaded when you first generate)`;
  } else {
    $("ar-model").textContent = "none (this server has no default AR model)";
  }
  for (const c of classes) {
    const o = document.createElement("option");
    o.value = c;
    o.textContent = c;
    sel.append(o);
  }
  if (classes.includes(prev)) sel.value = prev;
  sel.disabled = classes.length === 0;
  $("gen-go").disabled = classes.length === 0 || state.busy;
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
    out.error = failed(e);
  } finally {
    await settle(stream);
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
  g.tok = state.info.model ? (g.tok && !g.tok.closed ? g.tok : await state.flextok.openDefault()) : await ensureModel();
  const a = state.info.ar;
  const t0 = performance.now();
  g.ar = await g.tok.openAR(a ? { url: a.weights, configURL: a.config, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) } : {});
  g.openMs = performance.now() - t0;
  $("ar-model").textContent = `in this browser: ${g.ar.info.name} (${g.ar.classes.length} classes, ${(g.ar.info.params / 1e6).toFixed(1)} M parameters, opened in ${g.openMs.toFixed(0)} ms)`;
  return g;
}

/**
 * The tokenizer that decodes the server's generations: the page's model, or the module's
 * embedded default, whichever the server's generating model is (by its weights' digest).
 */
async function serverTokenizer() {
  const want = state.serverGen.digest;
  const page = await ensureModel();
  if (!want || hex(page.model.digest) === want) return page;
  if (!state.gen.tok || state.gen.tok.closed) state.gen.tok = await state.flextok.openDefault();
  if (hex(state.gen.tok.model.digest) === want) return state.gen.tok;
  throw { code: "model_mismatch", message: `the server generates for model ${state.serverGen.model} (sha256 ${want.slice(0, 12)}…), which this page cannot open: generate in the browser` };
}

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * Generates one sample of class cls on the server (POST /v1/generate) and decodes it in the
 * worker as its tokens arrive, at k = 1, 2, 4, ... . The frames are read on their own (a pump
 * into a queue), so a token's arrival time is when it came off the network, not when the
 * decoder got to it; the decoder takes them in order, decoding at the stage sizes.
 */
async function generateOnServer(cls, opts, out, setStream) {
  const sg = state.serverGen;
  const tok = await serverTokenizer();
  const k = sg.maxK;
  const ks = stageKs(k);
  const figs = new Map(ks.map((n) => [n, stageFigure(n)]));
  $("stages").replaceChildren(...figs.values());
  const steps = opts.steps ?? (Number($("gen-steps").value) || undefined);
  const cfg = opts.cfg ?? (Number($("gen-cfg").value) || undefined);
  const seed = opts.seed ?? (Number($("gen-seed").value) || 0);
  const body = { class: cls, n: 1, k, seed, model: sg.model };
  if (cfg !== undefined) body.cfg = cfg;
  const ac = new AbortController();
  const timeout = setTimeout(() => ac.abort(new Error(`no answer in ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
  const t0 = performance.now();
  const queue = [];
  let wake = null;
  let ended = false;
  let failure = null;
  try {
    let resp;
    try {
      resp = await fetch("/v1/generate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: ac.signal });
    } catch (e) {
      throw { code: "fetch_failed", message: `POST /v1/generate: ${typed(e).message}` };
    }
    out.request_id = resp.headers.get("X-Request-Id") ?? undefined;
    const pump = (async () => {
      try {
        for await (const ev of state.sdk.readGenerateStream(resp, { signal: ac.signal })) {
          ev.at = performance.now() - t0;
          if (out.first_frame_ms === undefined) out.first_frame_ms = ev.at;
          queue.push(ev);
          wake?.();
        }
        out.stream_end_ms = performance.now() - t0;
      } catch (e) {
        failure = e;
      } finally {
        ended = true;
        wake?.();
      }
    })();
    out.seed = Number(resp.headers.get("X-Flextok-Seed") ?? seed);
    let stream = null;
    let tLast = t0;
    out.ids = [];
    for (;;) {
      if (queue.length === 0) {
        if (ended) break;
        await new Promise((r) => (wake = r));
        wake = null;
        continue;
      }
      const ev = queue.shift();
      if (ev.type === "header") {
        const so = { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) };
        if (steps !== undefined) so.steps = steps;
        stream = await tok.openStream(ev.bytes, so);
        setStream(stream);
        out.header_sha256 = await sha256(ev.bytes);
      } else if (ev.type === "chunk") {
        out.ids.push(ev.chunk.ids[0]);
        const n = ev.position + 1;
        const decode = figs.has(n);
        const ts = performance.now();
        const r = await stream.push(ev.bytes, { decode, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
        const ms = performance.now() - ts;
        $("summary").textContent = `${n} of ${k} tokens of "${cls}" received from the server (seed ${out.seed})${out.stream_end_ms !== undefined ? ", the stream has ended" : ""}; decoding k = ${n}…`;
        if (!r.image) continue;
        const drawn = performance.now() - t0;
        if (out.first_image_ms === undefined) out.first_image_ms = drawn;
        const st = { k: r.received, ms, token_ms: ts - tLast, arrived_ms: ev.at, drawn_ms: drawn, decode_ms: r.image.decode_ms, rgba_sha256: await sha256(r.image.rgba) };
        tLast = performance.now();
        out.stages.push(st);
        draw(figs.get(r.received), r.image, `token at ${ev.at.toFixed(0)} ms · decoded in ${ms.toFixed(0)} ms`);
      } else if (ev.type === "payload") {
        out.payload_sha256 = await sha256(ev.bytes);
        out.payload_b64 = toBase64(ev.bytes);
        const view = state.sdk.decodePayload(ev.bytes);
        out.class = view.cond?.class;
        out.k = view.ids.length;
        out.payload_ids = Array.from(view.ids);
      }
    }
    await pump;
    if (failure) throw failure;
    if (out.payload_sha256 === undefined) throw { code: "truncated", message: "the generation stream ended without its payload" };
    out.total_ms = performance.now() - t0;
    out.ok = true;
    const before = out.stages.filter((s) => s.drawn_ms < out.stream_end_ms).map((s) => s.k);
    $("summary").textContent = `${out.k} tokens of "${cls}" generated on the server (seed ${out.seed}) and decoded here at k = ${ks.join(", ")} in ${out.total_ms.toFixed(0)} ms: ` +
      `first token after ${out.first_frame_ms.toFixed(0)} ms, first image after ${out.first_image_ms.toFixed(0)} ms, the stream ended after ${out.stream_end_ms.toFixed(0)} ms` +
      `${before.length ? ` (k = ${before.join(", ")} drawn before it ended)` : ""}.`;
  } finally {
    clearTimeout(timeout);
    ac.abort(); // a stream not read to its end: cancel it (the server stops generating)
  }
}

/**
 * Generates one sample of class cls, on the server or in this browser (opts.where, default the
 * page's choice), decoding at k = 1, 2, 4, ... as the tokens arrive.
 */
async function generateProgressive(cls, opts = {}) {
  const where = opts.where ?? $("gen-where").value;
  const out = { ok: false, where, stages: [] };
  if (state.busy) return { ...out, error: { code: "busy", message: "a decode is already running" } };
  if (!state.flextok) return { ...out, error: { code: "load_failed", message: "the module is not loaded" } };
  if (where === "server" && !state.serverGen) return failBefore({ code: "unsupported", message: "this server does not generate (no model with an AR model in /v1/models): generate in the browser" });
  state.busy = true;
  $("go").disabled = true;
  $("gen-go").disabled = true;
  clearError();
  $("stages").replaceChildren();
  $("summary").textContent = where === "server" ? "Asking the server…" : "Opening the generator…";
  let stream = null;
  try {
    if (where === "server") {
      await generateOnServer(cls, opts, out, (st) => (stream = st));
      return out;
    }
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
    out.seed = seed;
    out.class = res.class;
    out.k = res.k;
    out.ids = res.ids[0];
    out.payload_sha256 = await sha256(res.payloads[0]);
    out.ok = true;
    $("summary").textContent = `${res.k} tokens of "${cls}" generated in this browser and decoded at k = ${ks.join(", ")} in ${out.total_ms.toFixed(0)} ms ` +
      `(first image after ${out.first_image_ms.toFixed(0)} ms; generator opened in ${g.openMs.toFixed(0)} ms).`;
  } catch (e) {
    out.error = failed(e);
  } finally {
    await settle(stream);
    showGenerator();
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
$("gen-where").addEventListener("change", () => showGenerator());
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
