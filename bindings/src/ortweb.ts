// The graph host of the hybrid executor: onnxruntime-web runs a web model package's decoder
// (velocity) and VAE-decoder graphs in the thread of the Go wasm module (the Worker), which
// keeps payloads, the flow sampler, guidance, noise and streams (sdk/service "open_graphs",
// engine.GraphExecutor). The module calls out once per sampler step with the whole batch
// (conditional and unconditional items) in one buffer it owns; the inputs are typed-array
// views on that buffer, never copies (wasm/js/graphs.go documents the contract).
//
// Nothing here imports onnxruntime-web at load time: installGraphHost takes a loader, so the
// package works without it until a web model is opened.

import type * as ortTypes from "onnxruntime-web";
import type { GraphPrecision, GraphProvider } from "./types.js";

/** The onnxruntime-web module (import("onnxruntime-web") or its dist/ort.*.mjs by URL). */
export type Ort = typeof ortTypes;

/** Loads onnxruntime-web once, where the module runs. */
export type OrtLoader = () => Promise<Ort>;

/** A web model package's files by name, held until "open_graphs" takes them. */
export type PackageFiles = Map<string, Uint8Array>;

/**
 * Files handed to the module's thread, by key: "open_graphs" names the key, the host takes
 * (and forgets) them. verified: the downloader already checked every file's SHA-256 against
 * the manifest (fetchModelPackage does); otherwise the host hashes the graph files itself.
 */
export interface StoredPackage {
  files: PackageFiles;
  verified: boolean;
}

/** The per-thread file store (worker.ts fills it from "files" messages). */
export const packageStore = new Map<string, StoredPackage>();

/** Options of installGraphHost. */
export interface GraphHostOptions {
  /** Threads of the wasm provider (default: 2 when cross-origin isolated, else 1). */
  numThreads?: number;
  /** Where onnxruntime-web's .wasm files are (its env.wasm.wasmPaths), for a page that serves them. */
  wasmPaths?: string;
}

/** Input layout of one velocity call: byte offsets into the buffer (wasm/js/graphs.go). */
interface VelocityLayout {
  n: number;
  x: number;
  t: number;
  ids: number;
  k: number;
}
interface VAELayout {
  n: number;
  latents: number;
}

/** What graphHost.open resolves to (wasm/js/graphs.go reads these names). */
export interface GraphRunner {
  provider: "wasm" | "webgpu";
  precision: "fp32" | "fp16";
  fallback: string;
  velocity(buf: Uint8Array, l: VelocityLayout): Promise<Float32Array>;
  vae(buf: Uint8Array, l: VAELayout): Promise<Float32Array>;
  release(): void;
}

/** The host object the module reads from globalThis.flextok.graphHost. */
export interface GraphHost {
  open(files: string, manifest: Uint8Array, opts: { provider: GraphProvider; precision: GraphPrecision }): Promise<GraphRunner>;
}

/** An error the module passes through with its code (sdk/service's codes). */
export class GraphHostError extends Error {
  readonly code: "out_of_memory" | "graph_mismatch" | "webgpu_unavailable" | "bad_package" | "bad_model" | "unsupported";
  constructor(code: GraphHostError["code"], message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "GraphHostError";
    this.code = code;
  }
}

/** The manifest fields the host reads (sdk/webpkg validated it before the host sees it). */
interface ManifestView {
  model: { name: string; digest: string };
  sizes: { latent_channels: number; latent_height: number; latent_width: number; tokens: number; image_height: number; image_width: number };
  graphs: Record<string, { graph: string; data: string; precision: string } | undefined>;
  files: Record<string, { size: number; sha256: string } | undefined>;
}

const OOM = /out of memory|\bOOM\b|bad_alloc|Maximum memory|memory access out of bounds|Array buffer allocation failed|could not allocate|failed to allocate|allocation failed|RangeError.*memory/i;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Classifies an onnxruntime-web failure: out of memory, or the given code. */
function ortError(what: string, e: unknown, code: GraphHostError["code"] = "bad_model"): GraphHostError {
  if (e instanceof GraphHostError) return e;
  const m = message(e);
  return new GraphHostError(OOM.test(m) ? "out_of_memory" : code, `flextok/ortweb: ${what}: ${m}`, e);
}

async function sha256Hex(b: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>));
  let s = "";
  for (const x of d) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * The WebGPU adapter here, or why there is none. A Worker has navigator.gpu where the page
 * does (Chromium); Node has none.
 */
export async function webgpuAdapter(): Promise<{ ok: true; f16: boolean } | { ok: false; reason: string }> {
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<{ features: { has(f: string): boolean } } | null> } } }).navigator?.gpu;
  if (!gpu) return { ok: false, reason: "no WebGPU here (navigator.gpu is undefined)" };
  try {
    const a = await gpu.requestAdapter();
    if (!a) return { ok: false, reason: "no WebGPU adapter (navigator.gpu.requestAdapter() gave null)" };
    return { ok: true, f16: a.features.has("shader-f16") };
  } catch (e) {
    return { ok: false, reason: `no WebGPU adapter: ${message(e)}` };
  }
}

/**
 * Sets ft.graphHost (ft: the globalThis.flextok the Go module set in this thread): the host
 * that "open_graphs" calls. load imports onnxruntime-web, on first use.
 */
export function installGraphHost(ft: object, load: OrtLoader, opts: GraphHostOptions = {}): GraphHost {
  let ortP: Promise<Ort> | undefined;
  const ort = (): Promise<Ort> => {
    ortP ??= load().then((o) => {
      const iso = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
      o.env.wasm.numThreads = opts.numThreads ?? (iso ? 2 : 1);
      o.env.wasm.simd = true;
      if (opts.wasmPaths !== undefined) o.env.wasm.wasmPaths = opts.wasmPaths;
      return o;
    });
    ortP.catch(() => (ortP = undefined));
    return ortP;
  };
  const host: GraphHost = {
    async open(key, manifestBytes, o) {
      const stored = packageStore.get(key);
      packageStore.delete(key); // taken: the sessions hold the graphs now
      if (!stored) throw new GraphHostError("bad_package", `flextok/ortweb: no package files under key "${key}"`);
      let man: ManifestView;
      try {
        man = JSON.parse(new TextDecoder().decode(manifestBytes)) as ManifestView;
      } catch (e) {
        throw new GraphHostError("bad_package", `flextok/ortweb: manifest: ${message(e)}`, e);
      }
      // Provider: WebGPU where an adapter exists (asked for or auto), else wasm.
      let provider: "wasm" | "webgpu" = "wasm";
      let fallback = "";
      let f16 = false;
      if (o.provider !== "wasm") {
        const a = await webgpuAdapter();
        if (a.ok) {
          provider = "webgpu";
          f16 = a.f16;
        } else if (o.provider === "webgpu") {
          throw new GraphHostError("webgpu_unavailable", `flextok/ortweb: provider "webgpu": ${a.reason}`);
        } else {
          fallback = a.reason;
        }
      }
      const files = stored.files;
      const f16g = man.graphs.decoder_fp16;
      const hasF16 = f16g !== undefined && files.has(f16g.graph) && files.has(f16g.data); // downloaded
      let precision: "fp32" | "fp16" = "fp32";
      if (o.precision === "fp16") precision = "fp16";
      else if (o.precision === "auto" && provider === "webgpu" && f16 && hasF16) precision = "fp16";
      const graphFiles = async (role: string): Promise<{ graph: Uint8Array; data: Uint8Array; dataName: string }> => {
        const g = man.graphs[role];
        if (!g) throw new GraphHostError("bad_package", `flextok/ortweb: the package has no "${role}" graph`);
        const out: Uint8Array[] = [];
        for (const name of [g.graph, g.data]) {
          const b = files.get(name);
          if (!b) throw new GraphHostError("bad_package", `flextok/ortweb: "${name}" (graph "${role}") is not among the package's files`);
          const f = man.files[name];
          if (!f || b.length !== f.size) {
            throw new GraphHostError("graph_mismatch", `flextok/ortweb: "${name}" has ${b.length} bytes, the manifest says ${f?.size} (a partial download, or a file of another model)`);
          }
          if (!stored.verified) {
            const h = await sha256Hex(b);
            if (h !== f.sha256) {
              throw new GraphHostError("graph_mismatch", `flextok/ortweb: "${name}" has SHA-256 ${h}, the manifest of model "${man.model.name}" says ${f.sha256}: a graph of another model or a corrupt file`);
            }
          }
          out.push(b);
        }
        return { graph: out[0]!, data: out[1]!, dataName: g.data };
      };
      const dec = await graphFiles(precision === "fp16" ? "decoder_fp16" : "decoder");
      const vaeF = await graphFiles("vae_decoder");
      const o2 = await ort().catch((e: unknown) => {
        throw new GraphHostError("unsupported", `flextok/ortweb: onnxruntime-web did not load: ${message(e)}`, e);
      });
      const session = async (what: string, f: { graph: Uint8Array; data: Uint8Array; dataName: string }): Promise<ortTypes.InferenceSession> => {
        try {
          return await o2.InferenceSession.create(f.graph, {
            executionProviders: [provider],
            externalData: [{ path: f.dataName, data: f.data }],
            graphOptimizationLevel: "all",
          });
        } catch (e) {
          throw ortError(`creating the ${what} session on ${provider}`, e);
        }
      };
      const decS = await session("decoder", dec);
      let vaeS: ortTypes.InferenceSession;
      try {
        vaeS = await session("VAE decoder", vaeF);
      } catch (e) {
        void decS.release();
        throw e;
      }
      for (const [s, ins, outs, what] of [
        [decS, ["x_t", "t", "ids", "k"], ["v"], "decoder"],
        [vaeS, ["latents"], ["image"], "VAE decoder"],
      ] as const) {
        const missing = [...ins.filter((n) => !s.inputNames.includes(n)), ...outs.filter((n) => !s.outputNames.includes(n))];
        if (missing.length > 0) {
          void decS.release();
          void vaeS.release();
          throw new GraphHostError("graph_mismatch", `flextok/ortweb: the ${what} graph has no ${missing.join(", ")} (inputs ${s.inputNames.join(", ")}; outputs ${s.outputNames.join(", ")}): not a FlexTok ${what} graph`);
        }
      }
      const z = man.sizes;
      const per = z.latent_channels * z.latent_height * z.latent_width;
      const shape = (n: number): number[] => [n, z.latent_channels, z.latent_height, z.latent_width];
      let released = false;
      const out = async (what: string, p: Promise<ortTypes.InferenceSession.OnnxValueMapType>, name: string): Promise<Float32Array> => {
        let r: ortTypes.InferenceSession.OnnxValueMapType;
        try {
          r = await p;
        } catch (e) {
          throw ortError(`running the ${what} graph`, e, "graph_mismatch");
        }
        const t = r[name];
        if (!t) throw new GraphHostError("graph_mismatch", `flextok/ortweb: the ${what} graph gave no "${name}"`);
        const d = t.location === "cpu" ? t.data : await t.getData(true);
        if (!(d instanceof Float32Array)) throw new GraphHostError("graph_mismatch", `flextok/ortweb: the ${what} graph's "${name}" is ${t.type}, not float32`);
        return d;
      };
      const runner: GraphRunner = {
        provider,
        precision,
        fallback,
        velocity(buf, l) {
          if (released) return Promise.reject(new GraphHostError("bad_model", "flextok/ortweb: the sessions were released"));
          const b = buf.buffer;
          const o0 = buf.byteOffset;
          const feeds = {
            x_t: new o2.Tensor("float32", new Float32Array(b, o0 + l.x, l.n * per), shape(l.n)),
            t: new o2.Tensor("float32", new Float32Array(b, o0 + l.t, l.n), [l.n]),
            ids: new o2.Tensor("int64", new BigInt64Array(b, o0 + l.ids, l.n * z.tokens), [l.n, z.tokens]),
            k: new o2.Tensor("int64", new BigInt64Array(b, o0 + l.k, l.n), [l.n]),
          };
          return out("decoder", decS.run(feeds), "v");
        },
        vae(buf, l) {
          if (released) return Promise.reject(new GraphHostError("bad_model", "flextok/ortweb: the sessions were released"));
          const x = new Float32Array(buf.buffer, buf.byteOffset + l.latents, l.n * per);
          return out("VAE decoder", vaeS.run({ latents: new o2.Tensor("float32", x, shape(l.n)) }), "image");
        },
        release() {
          if (released) return;
          released = true;
          void decS.release();
          void vaeS.release();
        },
      };
      return runner;
    },
  };
  (ft as { graphHost?: GraphHost }).graphHost = host;
  return host;
}
