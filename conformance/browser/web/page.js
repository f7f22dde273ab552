// The page of web.mjs: the hybrid executor (@flextok/sdk's openWebModel: onnxruntime-web for the
// networks, the Go wasm module for payloads and the sampler) in headless Chromium. window.conform
// decodes the cases of bindings/test/webhelper and compares them with the native Go engine's
// tensors; window.bench times a guided decoder step against the Go wasm engine.
import { initialize, FlexTokError } from "/dist/browser.js";

let ft;
async function flextok() {
  ft ??= await initialize({ wasmURL: "/dist/flextok-lean.wasm", ortURL: "/ort/ort.min.mjs" });
  return ft;
}

/** Reads a web package from the server: manifest.json and every file, from its chunks. */
async function readPackage(base) {
  const manifest = new Uint8Array(await (await fetch(`${base}/manifest.json`)).arrayBuffer());
  const man = JSON.parse(new TextDecoder().decode(manifest));
  const files = new Map();
  let bytes = 0;
  for (const [name, f] of Object.entries(man.files)) {
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

document.getElementById("status").textContent = "ready";
window.pageReady = true;
