// The page of web.mjs: the hybrid executor (@flextok/sdk's openWebModel: onnxruntime-web for the
// networks, the Go wasm module for payloads and the sampler) in headless Chromium. window.conform
// decodes the cases of bindings/test/webhelper and compares them with the native Go engine's
// tensors; window.bench times a guided decoder step against the Go wasm engine.
import { initialize, FlexTokError, encodePayload } from "/dist/browser.js";

let ft;
async function flextok() {
  ft ??= await initialize({ wasmURL: "/dist/flextok-lean.wasm", ortURL: "/ort/ort.min.mjs" });
  return ft;
}

/** Reads a web package from the server: manifest.json and every file, from its chunks. */
async function readPackage(base, keep = () => true) {
  const manifest = new Uint8Array(await (await fetch(`${base}/manifest.json`)).arrayBuffer());
  const man = JSON.parse(new TextDecoder().decode(manifest));
  const files = new Map();
  let bytes = 0;
  for (const [name, f] of Object.entries(man.files)) {
    if (!keep(name)) continue;
    const out = new Uint8Array(f.size);
    let off = 0;
    for (const c of f.chunks) {
      const b = new Uint8Array(await (await fetch(`${base}/${c.name}`)).arrayBuffer());
      out.set(b, off);
      off += b.length;
    }
    files.set(name, out);
    bytes += f.size;
  }
  return { manifest, files, bytes, man };
}

async function bytesOf(url) {
  return new Uint8Array(await (await fetch(url)).arrayBuffer());
}

function compare(got, want) {
  let se = 0, sr = 0, m = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i] - want[i];
    se += d * d;
    sr += want[i] * want[i];
    m = Math.max(m, Math.abs(d));
  }
  return { n: want.length, nmse: se / sr, maxAbs: m, psnr: 10 * Math.log10(4 / (se / want.length)) };
}

function f32(u8) {
  return new Float32Array(u8.slice().buffer);
}

function err(e) {
  return e instanceof FlexTokError ? { code: e.code, message: e.message } : { code: "js", message: String(e) };
}

/** Decodes every case of every model with provider and precision; returns the comparisons. */
window.conform = async (models, provider, precision, maxCases = 99) => {
  try {
    const t = await flextok();
    const out = [];
    for (const m of models) {
      const pkg = await readPackage(`/cases/${m.name}/package`);
      const t0 = performance.now();
      const wm = await t.openWebModel({ manifest: pkg.manifest, files: pkg.files }, { provider, precision });
      const open_ms = performance.now() - t0;
      const payload = await bytesOf(`/cases/${m.name}/payload.msgpack`);
      for (const c of m.cases.slice(0, maxCases)) {
        const r = await wm.decode(payload, { k: c.k, steps: c.steps, guidance: c.guidance, apg: c.apg, seed: c.seed, output: ["tensor"] });
        const want = f32(await bytesOf(`/cases/${m.name}/${c.tensor.split("/").pop()}`));
        out.push({ model: m.name, case: c.name, provider: wm.provider, precision: wm.precision, fallback: wm.fallback, open_ms, decode_ms: r.decode_ms, ...compare(f32(r.tensor), want) });
      }
      await wm.close();
    }
    return { ok: true, out };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
};

/** Opens a package with opts and returns the error code, or "ok". */
window.openCode = async (name, opts, edit) => {
  try {
    const t = await flextok();
    const pkg = await readPackage(`/cases/${name}/package`);
    if (edit === "flip") {
      const d = pkg.files.get("decoder.onnx.data");
      d[d.length - 1] ^= 1;
    }
    const wm = await t.openWebModel({ manifest: pkg.manifest, files: pkg.files }, opts);
    await wm.close();
    return { ok: true, provider: wm.provider };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
};

/**
 * The speed run: a web package at /bench/pkg decoded with onnxruntime-web's wasm provider (1 and
 * 20 guided steps: a step is their difference over 19), then one guided step of the same model's
 * decoder on the Go wasm engine (webbench.wasm, this thread). Both in this page, one after the
 * other (never together: the machine has 2 cores).
 */
window.benchORT = async () => {
  try {
    const t = await flextok();
    const t0 = performance.now();
    const pkg = await readPackage("/bench/pkg", (n) => !n.startsWith("decoder_fp16"));
    const read_ms = performance.now() - t0;
    const sizes = {};
    for (const [name, f] of Object.entries(pkg.man.files)) sizes[name] = f.size;
    const t1 = performance.now();
    const wm = await t.openWebModel({ manifest: pkg.manifest, files: pkg.files }, { provider: "wasm", precision: "fp32" });
    const open_ms = performance.now() - t1;
    const ids = new Uint16Array(wm.model.max_tokens).map((_, i) => (i * 977) % 64000);
    const payload = encodePayload({
      format: "flextok-tokens", version: [1, 0], model: wm.model, image: { height: wm.height, width: wm.width },
      count: ids.length, ids, codebook: wm.codebook, frames: 1,
    });
    const d1 = await wm.decode(payload, { steps: 1, guidance: 7.5, apg: true, seed: 1, output: ["rgba"] });
    const d20 = await wm.decode(payload, { steps: 20, guidance: 7.5, apg: true, seed: 1, output: ["rgba"] });
    await wm.close();
    return {
      ok: true, provider: wm.provider, threads: crossOriginIsolated ? 2 : 1, read_ms, open_ms, sizes,
      decode1_ms: d1.decode_ms, decode20_ms: d20.decode_ms, step_ms: (d20.decode_ms - d1.decode_ms) / 19,
      velocity20_ms: d20.velocity_ms, velocity20_calls: d20.velocity_calls, vae20_ms: d20.vae_ms,
      step_graph_ms: d20.velocity_ms / d20.velocity_calls,
    };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
};

window.benchGo = async () => {
  try {
    if (!globalThis.Go) await import("/dist/wasm_exec.js");
    const go = new globalThis.Go();
    const { instance } = await WebAssembly.instantiateStreaming(fetch("/bench/webbench.wasm"), go.importObject);
    void go.run(instance);
    const weights = await bytesOf("/bench/ckpt/model.safetensors");
    const opt = async (u) => {
      const r = await fetch(u);
      return r.ok ? new Uint8Array(await r.arrayBuffer()) : new Uint8Array(0);
    };
    const r = await globalThis.flextokBench.step(weights, await opt("/bench/ckpt/config.json"), await opt("/bench/ckpt/vae/config.json"));
    return r.error ? { ok: false, error: { code: "go", message: r.error } } : { ok: true, ...r };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
};

document.getElementById("status").textContent = "ready";
window.pageReady = true;
