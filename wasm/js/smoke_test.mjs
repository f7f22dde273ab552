// Smoke test of the GOOS=js module under Node: open the tiny c1 checkpoint from bytes, encode
// an image, decode a prefix of its tokens, and check an error response. handle returns a
// Promise: several decodes in flight at once must give the bits of one alone.
//
//   node wasm/js/smoke_test.mjs <flextok.wasm> <wasm_exec.js> <checkpoint dir> [default|lean]
//
// The last argument says what an "open" without weights must do: open the embedded default
// model (default, the standard module) or fail with bad_request (lean: built -tags noweights).
//
// Prints one JSON line (sha256 of the decoded RGBA, timings) and exits 0, or 1 on failure.
// The small msgpack codec below covers what the service protocol uses (sdk/service docs).
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";

function encode(v) {
  const out = [];
  const u8 = (...b) => out.push(...b);
  const be = (n, bytes) => { for (let i = bytes - 1; i >= 0; i--) u8(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn)); };
  const walk = (v) => {
    if (v === null || v === undefined) u8(0xc0);
    else if (v === true || v === false) u8(v ? 0xc3 : 0xc2);
    else if (typeof v === "number" && Number.isInteger(v) && v >= 0) {
      if (v < 128) u8(v); else if (v < 256) { u8(0xcc); be(v, 1); } else if (v < 65536) { u8(0xcd); be(v, 2); }
      else if (v < 2 ** 32) { u8(0xce); be(v, 4); } else { u8(0xcf); be(v, 8); }
    } else if (typeof v === "number") { const b = Buffer.alloc(8); b.writeDoubleBE(v); u8(0xcb, ...b); }
    else if (typeof v === "string") {
      const b = Buffer.from(v, "utf8");
      if (b.length < 32) u8(0xa0 | b.length); else if (b.length < 256) u8(0xd9, b.length); else { u8(0xda); be(b.length, 2); }
      out.push(...b);
    } else if (v instanceof Uint8Array) {
      if (v.length < 256) u8(0xc4, v.length); else if (v.length < 65536) { u8(0xc5); be(v.length, 2); } else { u8(0xc6); be(v.length, 4); }
      for (const x of v) out.push(x);
    } else if (Array.isArray(v)) { u8(0x90 | v.length); v.forEach(walk); } // fewer than 16 entries
    else { const e = Object.entries(v); u8(0x80 | e.length); for (const [k, x] of e) { walk(k); walk(x); } }
  };
  walk(v);
  return Uint8Array.from(out);
}

function decode(buf) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const n = (bytes) => { let v = 0; for (let i = 0; i < bytes; i++) v = v * 256 + buf[p++]; return v; };
  const str = (len) => { const s = Buffer.from(buf.subarray(p, p + len)).toString("utf8"); p += len; return s; };
  const bin = (len) => { const b = buf.slice(p, p + len); p += len; return b; };
  const arr = (len) => Array.from({ length: len }, () => val());
  const map = (len) => { const o = {}; for (let i = 0; i < len; i++) { const k = val(); o[k] = val(); } return o; };
  const val = () => {
    const c = buf[p++];
    if (c < 0x80) return c;
    if (c >= 0xe0) return c - 256;
    if ((c & 0xf0) === 0x80) return map(c & 15);
    if ((c & 0xf0) === 0x90) return arr(c & 15);
    if ((c & 0xe0) === 0xa0) return str(c & 31);
    switch (c) {
      case 0xc0: return null; case 0xc2: return false; case 0xc3: return true;
      case 0xc4: return bin(n(1)); case 0xc5: return bin(n(2)); case 0xc6: return bin(n(4));
      case 0xca: p += 4; return dv.getFloat32(p - 4); case 0xcb: p += 8; return dv.getFloat64(p - 8);
      case 0xcc: return n(1); case 0xcd: return n(2); case 0xce: return n(4); case 0xcf: return n(8);
      case 0xd0: p += 1; return dv.getInt8(p - 1); case 0xd1: p += 2; return dv.getInt16(p - 2);
      case 0xd2: p += 4; return dv.getInt32(p - 4); case 0xd3: p += 8; return Number(dv.getBigInt64(p - 8));
      case 0xd9: return str(n(1)); case 0xda: return str(n(2)); case 0xdb: return str(n(4));
      case 0xdc: return arr(n(2)); case 0xdd: return arr(n(4)); case 0xde: return map(n(2)); case 0xdf: return map(n(4));
    }
    throw new Error(`msgpack: unsupported byte 0x${c.toString(16)}`);
  };
  return val();
}

// A 24-bit BMP (the service decodes PNG, JPEG, GIF, WebP, BMP, TIFF).
function bmp(w, h) {
  const row = (w * 3 + 3) & ~3, size = 54 + row * h, b = Buffer.alloc(size);
  b.write("BM"); b.writeUInt32LE(size, 2); b.writeUInt32LE(54, 10); b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18); b.writeInt32LE(h, 22); b.writeUInt16LE(1, 26); b.writeUInt16LE(24, 28);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const o = 54 + (h - 1 - y) * row + 3 * x;
    b[o] = (x + y) * 2; b[o + 1] = y * 3; b[o + 2] = x * 5; // B, G, R
  }
  return new Uint8Array(b);
}

const [wasmPath, execPath, dir, kind = "default"] = process.argv.slice(2);
if (!dir || !["default", "lean"].includes(kind)) {
  console.error("usage: node smoke_test.mjs <flextok.wasm> <wasm_exec.js> <checkpoint dir> [default|lean]");
  process.exit(2);
}
await import(pathToFileURL(execPath).href);
const go = new Go();
const t0 = performance.now();
const { instance } = await WebAssembly.instantiate(readFileSync(wasmPath), go.importObject);
go.run(instance);
const startMs = performance.now() - t0;

const call = async (req) => {
  const p = globalThis.flextok.handle(encode(req));
  if (!(p instanceof Promise)) throw new Error(`handle returned ${Object.prototype.toString.call(p)}, not a Promise`);
  return decode(await p);
};
const must = async (req) => {
  const r = await call(req);
  if (r.ok !== true) throw new Error(`${req.op}: ${JSON.stringify(r.error)}`);
  return r;
};
const sha = (b) => createHash("sha256").update(b).digest("hex");
try {
  const open = await must({
    op: "open", name: "c1",
    weights: new Uint8Array(readFileSync(`${dir}/model.safetensors`)),
    config: new Uint8Array(readFileSync(`${dir}/config.json`)),
    vae_config: new Uint8Array(readFileSync(`${dir}/vae/config.json`)),
  });
  const h = open.handle;
  const enc = await must({ op: "encode", handle: h, image: bmp(40, 36) });
  const req = { op: "decode", handle: h, payload: enc.payload, k: 8, steps: 2, seed: 7, output: ["rgba", "png"] };
  const dec = await must(req);
  if (dec.rgba.length !== 4 * dec.width * dec.height || dec.png[1] !== 0x50) throw new Error("bad image output");
  // Requests in flight together, each with its id: the same bits as alone, each its own answer.
  const many = await Promise.all([1, 2, 3].map((id) => must({ id, ...req, seed: id === 2 ? 8 : 7 })));
  if (many.some((r, i) => r.id !== i + 1)) throw new Error("responses in flight came back mixed up");
  if (sha(many[0].rgba) !== sha(dec.rgba) || sha(many[2].rgba) !== sha(dec.rgba)) throw new Error("a decode in flight with others gave other bits");
  if (sha(many[1].rgba) === sha(dec.rgba)) throw new Error("seed 8 gave the image of seed 7");
  const err = await call({ op: "decode", handle: h, payload: enc.payload.subarray(0, 20) });
  if (err.ok !== false || err.error.code !== "truncated") throw new Error(`error path: ${JSON.stringify(err)}`);
  const junk = await globalThis.flextok.handle("not bytes");
  if (decode(junk).error.code !== "bad_request") throw new Error("non-Uint8Array accepted");
  await must({ op: "close", handle: h });
  const def = await call({ op: "open" });
  if (kind === "lean" ? def.ok !== false || def.error.code !== "bad_request" : def.ok !== true) {
    throw new Error(`open without weights on a ${kind} module: ${JSON.stringify(def.error ?? def.name)}`);
  }
  console.log(JSON.stringify({
    ok: true, module: kind, width: dec.width, height: dec.height, tokens: enc.count,
    rgba_sha256: sha(dec.rgba), start_ms: Math.round(startMs), encode_ms: enc.encode_ms, decode_ms: dec.decode_ms,
  }));
  process.exit(0);
} catch (e) {
  console.error(`smoke test failed: ${e.stack ?? e}`);
  process.exit(1);
}
