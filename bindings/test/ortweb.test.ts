// The graph host (ortweb.ts) with a stand-in onnxruntime-web: out-of-memory classification on
// session creation and on a run, and the checks before any session is made.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { GraphHostError, installGraphHost, packageStore, type GraphHost, type Ort } from "../src/ortweb.js";

const files = new Map<string, Uint8Array>([
  ["decoder.onnx", new Uint8Array([1, 2, 3])],
  ["decoder.onnx.data", new Uint8Array([4, 5])],
  ["vae_decoder.onnx", new Uint8Array([6])],
  ["vae_decoder.onnx.data", new Uint8Array([7, 8, 9, 10])],
]);
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const manifest = new TextEncoder().encode(
  JSON.stringify({
    model: { name: "m", digest: "00".repeat(32) },
    sizes: { latent_channels: 1, latent_height: 1, latent_width: 1, tokens: 1, image_height: 8, image_width: 8 },
    graphs: {
      decoder: { graph: "decoder.onnx", data: "decoder.onnx.data", precision: "fp32" },
      vae_decoder: { graph: "vae_decoder.onnx", data: "vae_decoder.onnx.data", precision: "fp32" },
    },
    files: Object.fromEntries([...files].map(([n, b]) => [n, { size: b.length, sha256: sha(b) }])),
  }),
);

/** A stand-in for onnxruntime-web whose sessions fail as told. */
function fakeOrt(create: () => void, run: () => void): Ort {
  const session = (inputs: string[], outputs: string[]) => ({
    inputNames: inputs,
    outputNames: outputs,
    run: async () => {
      run();
      return { v: { location: "cpu", data: new Float32Array(1), type: "float32" } };
    },
    release: async () => {},
  });
  let n = 0;
  return {
    env: { wasm: {} },
    Tensor: class {},
    InferenceSession: {
      create: async () => {
        create();
        return n++ % 2 === 0 ? session(["x_t", "t", "ids", "k"], ["v"]) : session(["latents"], ["image"]);
      },
    },
  } as unknown as Ort;
}

async function open(host: GraphHost, key: string, f = files, verified = false) {
  packageStore.set(key, { files: new Map(f), verified });
  return host.open(key, manifest, { provider: "wasm", precision: "auto" });
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GraphHostError, String(e));
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

test("out of memory on session creation and on a run is out_of_memory; other failures keep their code", async () => {
  for (const msg of ["RangeError: Array buffer allocation failed", "Aborted(OOM)", "std::bad_alloc", "WebAssembly.Memory.grow(): Maximum memory size exceeded"]) {
    const host = installGraphHost({}, async () => fakeOrt(() => { throw new Error(msg); }, () => {}));
    await rejectsWith(open(host, "k"), "out_of_memory", /creating the decoder session/);
  }
  const host = installGraphHost({}, async () => fakeOrt(() => { throw new Error("invalid protobuf"); }, () => {}));
  await rejectsWith(open(host, "k"), "bad_model");
  const runOOM = installGraphHost({}, async () => fakeOrt(() => {}, () => { throw new Error("failed to allocate a buffer of size 123"); }));
  const r = await open(runOOM, "k");
  await rejectsWith(r.velocity(new Uint8Array(64), { n: 1, x: 0, t: 8, ids: 16, k: 24 }), "out_of_memory", /running the decoder graph/);
});

test("files are checked against the manifest before any session", async () => {
  let created = 0;
  const host = installGraphHost({}, async () => fakeOrt(() => { created++; }, () => {}));
  await rejectsWith(host.open("absent", manifest, { provider: "wasm", precision: "auto" }), "bad_package");
  const short = new Map(files);
  short.set("decoder.onnx.data", new Uint8Array([4]));
  await rejectsWith(open(host, "k", short), "graph_mismatch", /partial download/);
  const other = new Map(files);
  other.set("decoder.onnx.data", new Uint8Array([4, 6]));
  await rejectsWith(open(host, "k", other), "graph_mismatch", /SHA-256/);
  assert.equal(created, 0);
  await open(host, "k", other, true); // verified by the downloader: not hashed again
  assert.equal(created, 2);
  assert.equal(packageStore.size, 0, "the host takes the files out of the store");
});
