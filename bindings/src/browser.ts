// The browser entry point: initialize() loads the wasm module in a Web Worker (default) or on
// the main thread and returns a FlexTok.

import {
  FlexTok,
  DirectTransport,
  WorkerTransport,
  abortedError,
  fetchCached,
  type DefaultARLoader,
  type FlexTokOptions,
  type Progress,
  type WorkerLike,
} from "./core.js";
import { FlexTokError, asFlexTokError } from "./errors.js";
import { installGraphHost, type Ort } from "./ortweb.js";
import { runGo, type GoGlobals, type OrtInit } from "./protocol.js";

export * from "./core.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./types.js";
export * from "./http.js";
export { webgpuAdapter, type GraphRunner, type PackageFiles } from "./ortweb.js";
export * from "./package.js";

/** Options of initialize. */
export interface InitializeOptions {
  /**
   * URL of flextok.wasm (served as application/wasm). Default: next to this file
   * (new URL("./flextok.wasm", import.meta.url)), where `make bindings` puts it.
   */
  wasmURL?: string | URL;
  /** An already compiled module instead of wasmURL (it can be sent to a worker as it is). */
  wasmModule?: WebAssembly.Module;
  /** URL of the wasm_exec.js of the Go release that built the module. Default: next to this file. */
  wasmExecURL?: string | URL;
  /**
   * Run the module in a module Worker (default). false: on the main thread, where every call
   * blocks the page while it runs.
   */
  worker?: boolean;
  /** URL of worker.js, for pages that serve it elsewhere. Default: next to this file. */
  workerURL?: string | URL;
  /**
   * URL of the default AR model's model.safetensors, which Model.openAR() downloads when a
   * page first generates (17 MB; not in flextok.wasm, so decode-only pages never fetch it).
   * Default: ar/model.safetensors next to this file, where `make bindings` puts it. false:
   * openAR() uses the AR model the module embeds (a module built with -tags arweights).
   */
  arURL?: string | URL | false;
  /** URL of the default AR model's config.json. Default: ar/config.json next to this file. */
  arConfigURL?: string | URL;
  /**
   * Cache API cache for the default AR model's downloads (keyed by URL). Default false: the
   * package's URLs do not change when its files do, so only the HTTP cache (which revalidates)
   * keeps them; give a cache name when arURL carries a version.
   */
  arCache?: string | false;
  /**
   * URL of onnxruntime-web's ES module (its dist/ort.min.mjs: WebGPU and wasm providers), which
   * the worker imports when a web model is first opened (openWebModel); its .wasm files are
   * looked for beside it unless ortWasmPaths says where. Default: ort/ort.min.mjs next to this
   * file, where `make demo-assets` puts it.
   */
  ortURL?: string | URL;
  /** onnxruntime-web's env.wasm.wasmPaths (a URL prefix ending in "/"). */
  ortWasmPaths?: string;
  /** Threads of the wasm provider (default: 2 on a cross-origin isolated page, else 1). */
  ortThreads?: number;
  /** Aborts the initialization (rejects with "aborted"). */
  signal?: AbortSignal;
  /** Progress of every call. */
  onProgress?: (p: Progress) => void;
}

function here(file: string): URL {
  return new URL(file, import.meta.url);
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function compile(wasmURL: string, signal: AbortSignal | undefined): Promise<WebAssembly.Module> {
  const init: RequestInit = {};
  if (signal) init.signal = signal;
  let resp: Response;
  try {
    resp = await fetch(wasmURL, init);
  } catch (e) {
    if (signal?.aborted) throw abortedError(signal);
    throw new FlexTokError("load_failed", `flextok: failed to download ${JSON.stringify(wasmURL)}: ${message(e)}`, { cause: e });
  }
  if (!resp.ok) {
    throw new FlexTokError("load_failed", `flextok: failed to download ${JSON.stringify(wasmURL)}: HTTP ${resp.status}`);
  }
  try {
    if (typeof WebAssembly.compileStreaming === "function" && resp.headers.get("content-type")?.startsWith("application/wasm")) {
      return await WebAssembly.compileStreaming(resp);
    }
    return await WebAssembly.compile(await resp.arrayBuffer());
  } catch (e) {
    if (signal?.aborted) throw abortedError(signal);
    throw new FlexTokError("load_failed", `flextok: failed to compile ${JSON.stringify(wasmURL)}: ${message(e)}`, { cause: e });
  }
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort?: () => void): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    onAbort?.();
    return Promise.reject(abortedError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const f = (): void => {
      onAbort?.();
      reject(abortedError(signal));
    };
    signal.addEventListener("abort", f, { once: true });
    p.then(
      (v) => (signal.removeEventListener("abort", f), resolve(v)),
      (e: unknown) => (signal.removeEventListener("abort", f), reject(e)),
    );
  });
}

/**
 * Loads the module and returns a FlexTok. Rejects with "load_failed" when wasm_exec.js or
 * the module cannot be fetched, compiled or started, and with "aborted" when signal fires.
 */
export async function initialize(opts: InitializeOptions = {}): Promise<FlexTok> {
  const wasmExecURL = String(opts.wasmExecURL ?? here("./wasm_exec.js"));
  const fopts: FlexTokOptions = {};
  if (opts.onProgress) fopts.onProgress = opts.onProgress;
  if (opts.arURL !== false) fopts.defaultAR = arDownloader(opts);
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  const module = opts.wasmModule ?? (await compile(String(opts.wasmURL ?? here("./flextok.wasm")), opts.signal));
  const ort: OrtInit = { url: String(opts.ortURL ?? here("./ort/ort.min.mjs")) };
  if (opts.ortWasmPaths !== undefined) ort.wasmPaths = opts.ortWasmPaths;
  if (opts.ortThreads !== undefined) ort.numThreads = opts.ortThreads;
  if (opts.worker === false) {
    const handle = await raceAbort(startHere(module, wasmExecURL, ort), opts.signal);
    return new FlexTok(new DirectTransport(handle), fopts);
  }
  // A Web Worker has what WorkerLike names; its handlers' DOM types are only wider.
  const spawn = (): WorkerLike =>
    (opts.workerURL !== undefined
      ? new Worker(opts.workerURL, { type: "module", name: "flextok" })
      : new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "flextok" })) as unknown as WorkerLike;
  const t = new WorkerTransport(spawn, module, wasmExecURL, ort);
  await raceAbort(t.ready, opts.signal, () => t.close());
  return new FlexTok(t, fopts);
}

/** The default AR model's files, downloaded from next to this file (or the URLs given). */
function arDownloader(opts: InitializeOptions): DefaultARLoader {
  const weightsURL = String(opts.arURL || here("./ar/model.safetensors"));
  const configURL = String(opts.arConfigURL ?? here("./ar/config.json"));
  return async (o) => {
    const fo: { cache: string | false; signal?: AbortSignal } = { cache: opts.arCache ?? false };
    if (o.signal) fo.signal = o.signal;
    const [weights, config] = await Promise.all([fetchCached(weightsURL, fo, o.emit), fetchCached(configURL, fo, o.emit)]);
    return { config, weights };
  };
}

/** Starts the module on this thread; returns its handle. */
async function startHere(module: WebAssembly.Module, wasmExecURL: string, ort: OrtInit): Promise<(b: Uint8Array) => Promise<Uint8Array>> {
  const g = globalThis as unknown as GoGlobals;
  try {
    if (!g.Go) await import(/* @vite-ignore */ /* webpackIgnore: true */ wasmExecURL);
    if (!g.Go) throw new Error(`${wasmExecURL} did not define Go`);
    const go = new g.Go();
    const instance = await WebAssembly.instantiate(module, go.importObject);
    const ft = runGo(g, go, instance);
    const ho: { wasmPaths?: string; numThreads?: number } = {};
    if (ort.wasmPaths !== undefined) ho.wasmPaths = ort.wasmPaths;
    if (ort.numThreads !== undefined) ho.numThreads = ort.numThreads;
    installGraphHost(ft.global, async () => (await import(/* @vite-ignore */ /* webpackIgnore: true */ ort.url)) as Ort, ho);
    return ft.handle;
  } catch (e) {
    throw asFlexTokError(e, "load_failed", "flextok: failed to start the wasm module");
  }
}
