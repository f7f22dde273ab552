// The web-model page (web.html): fetchModelPackage downloads the package the server (or any
// URL) serves, with progress; openWebModel opens it in onnxruntime-web in the module's Worker;
// decode runs the Go sampler with one call out per step. window.flextokWeb drives it from the
// headless Chromium test (conformance/browser/test.mjs):
//   ready                         Promise of {ok, init_ms, error}
//   run({url, provider, fp16, sample, steps})  Promise of {ok, provider, precision, fallback,
//                                 stages, rgba digest, error}
import { initialize, fetchModelPackage, decodePayload, FlexTokError } from "./dist/browser.js";

const $ = (id) => document.getElementById(id);
const status = (text, state) => {
  $("status").textContent = text;
  $("status").dataset.state = state;
};

function showError(e) {
  const code = e instanceof FlexTokError ? e.code : "error";
  $("error-code").textContent = code;
  $("error-message").textContent = e instanceof Error ? e.message : String(e);
  $("error").hidden = false;
  return { code, message: e instanceof Error ? e.message : String(e) };
}

function ms(x) {
  return `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
}

function mib(n) {
  return `${(n / 2 ** 20).toFixed(n < 10 * 2 ** 20 ? 2 : 0)} MiB`;
}

let ft;
let model; // the open WebModel and the URL and options it came from
const t0 = performance.now();
const ready = (async () => {
  try {
    ft = await initialize();
    const init_ms = performance.now() - t0;
    const samples = await (await fetch("/samples/")).json();
    const sel = $("sample");
    for (const s of samples) sel.append(new Option(s.name, s.name));
    sel.disabled = samples.length === 0;
    $("go").disabled = false;
    status(`Ready: the module started in ${ms(init_ms)}.`, "ready");
    return { ok: true, init_ms };
  } catch (e) {
    status("The module did not start.", "failed");
    return { ok: false, error: showError(e) };
  }
})();

async function payloadBytes(sample) {
  const f = $("file").files?.[0];
  if (f && !sample) return new Uint8Array(await f.arrayBuffer());
  const name = sample ?? $("sample").value;
  const r = await fetch(`/samples/${encodeURIComponent(name)}.msgpack`);
  if (!r.ok) throw new FlexTokError("fetch_failed", `flextok: sample ${name}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function digest(b) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b));
  return [...d].map((x) => x.toString(16).padStart(2, "0")).join("");
}

async function run(o = {}) {
  await ready;
  const url = o.url ?? $("pkg-url").value;
  const provider = o.provider ?? $("provider").value;
  const fp16 = o.fp16 ?? $("fp16").checked;
  $("error").hidden = true;
  $("go").disabled = true;
  $("result").replaceChildren();
  const stages = {};
  try {
    const payload = await payloadBytes(o.sample);
    const view = decodePayload(payload);
    const key = JSON.stringify([url, provider, fp16]);
    if (!model || model.key !== key || model.m.closed) {
      await model?.m.close().catch(() => {});
      model = undefined;
      // Download: progress from the chunks (and from the Cache API on a second visit).
      $("progress-box").hidden = false;
      const td = performance.now();
      const pkg = await fetchModelPackage(url, {
        model: view.model, // a package of another model is refused before downloading
        graphs: fp16 ? ["decoder", "decoder_fp16", "vae_decoder"] : ["decoder", "vae_decoder"],
        onProgress: (p) => {
          $("progress").value = p.total ? p.bytes / p.total : 0;
          $("progress-text").textContent = `${mib(p.bytes)} of ${mib(p.total)}${p.fromCache ? " (from the cache)" : ""}: ${p.chunk}`;
        },
      });
      stages.download_ms = performance.now() - td;
      stages.downloaded_bytes = pkg.downloadedBytes;
      stages.cached_bytes = pkg.cachedBytes;
      const to = performance.now();
      const m = await ft.openWebModel(pkg, { provider, precision: fp16 ? "fp16" : "fp32" });
      stages.open_ms = performance.now() - to;
      model = { key, m };
      $("model").textContent = `${m.model.name} (${m.width}×${m.height}, ${m.model.max_tokens} tokens) from ${url}`;
    }
    const m = model.m;
    const steps = o.steps ?? (Number($("steps").value) || undefined);
    const tr = performance.now();
    const r = await m.decode(payload, { ...(steps ? { steps } : {}), output: ["rgba"] });
    stages.decode_ms = r.decode_ms;
    stages.velocity_ms = r.velocity_ms;
    stages.velocity_calls = r.velocity_calls;
    stages.vae_ms = r.vae_ms;
    stages.request_ms = performance.now() - tr;
    const canvas = document.createElement("canvas");
    canvas.width = r.width;
    canvas.height = r.height;
    canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(r.rgba), r.width, r.height), 0, 0);
    canvas.className = "pixelated";
    canvas.style.width = `${Math.max(256, r.width)}px`;
    $("result").append(canvas);
    const where = `${m.provider}${m.provider === "wasm" ? ` (${crossOriginIsolated ? "threads" : "1 thread: the page is not cross-origin isolated"})` : ""}, ${m.precision} decoder`;
    const parts = [`Provider: ${where}${m.fallback ? ` (fallback: ${m.fallback})` : ""}.`];
    if (stages.download_ms !== undefined) parts.push(`Download ${ms(stages.download_ms)} (${mib(stages.downloaded_bytes)} from the network, ${mib(stages.cached_bytes)} from the cache).`, `Sessions ${ms(stages.open_ms)}.`);
    parts.push(`Decode (k = ${r.k}, ${r.steps} steps, guidance ${r.guidance}${r.apg ? " APG" : ""}): ${ms(stages.decode_ms)} in the module, ${ms(stages.request_ms)} for the request;`,
      `of it onnxruntime-web ${ms(r.velocity_ms)} in ${r.velocity_calls} velocity runs (${ms(r.velocity_ms / r.velocity_calls)} a step) and ${ms(r.vae_ms)} in the VAE decoder,`,
      `the Go sampler, checks and copies ${ms(r.decode_ms - r.velocity_ms - r.vae_ms)}.`);
    $("summary").textContent = parts.join(" ");
    $("summary").dataset.provider = m.provider;
    return { ok: true, provider: m.provider, precision: m.precision, fallback: m.fallback, stages, k: r.k, steps: r.steps, width: r.width, height: r.height, rgba_sha256: await digest(r.rgba) };
  } catch (e) {
    return { ok: false, error: showError(e), stages };
  } finally {
    $("go").disabled = false;
  }
}

$("go").addEventListener("click", () => void run());
window.flextokWeb = { ready, run };
