// The Node entry point: the module in a worker_threads Worker (default), as browser.ts runs it
// in a Web Worker: the same worker.ts (behind node-worker.ts), the same messages, the same
// WorkerTransport, so a call never blocks the event loop and aborting the running call stops
// it at once. worker: false runs it on the calling thread. Files come from paths. Node has no
// Cache API, so loadModel downloads every time; openModel takes bytes read with fs.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker as ThreadWorker, type TransferListItem, type WorkerOptions } from "node:worker_threads";
import {
  DirectTransport,
  FlexTok,
  WorkerTransport,
  type DefaultARLoader,
  type FlexTokOptions,
  type Progress,
  type WebModelPackage,
  type WorkerLike,
} from "./core.js";
import { FlexTokError, asFlexTokError } from "./errors.js";
import { installGraphHost, type Ort } from "./ortweb.js";
import { runGo, type FromWorker, type GoGlobals, type OrtInit, type ToWorker } from "./protocol.js";

export * from "./core.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./types.js";
export * from "./http.js";
export { webgpuAdapter, type GraphRunner, type PackageFiles } from "./ortweb.js";
export * from "./package.js";

/** Options of initialize in Node. */
export interface NodeInitializeOptions {
  /** Path of flextok.wasm. Default: next to this file (where `make bindings` puts it). */
  wasmPath?: string;
  /** An already compiled module instead of wasmPath. */
  wasmModule?: WebAssembly.Module;
  /** Path of the wasm_exec.js of the Go release that built the module. Default: next to this file. */
  wasmExecPath?: string;
  /**
   * Run the module in a worker_threads Worker (default). false: on the calling thread, where
   * every call blocks the event loop while it runs and an abort cannot stop a running call.
   */
  worker?: boolean;
  /**
   * Path (or file: URL) of node-worker.js, for a bundle that moves it. Default: next to this
   * file (new URL("./node-worker.js", import.meta.url)).
   */
  workerPath?: string | URL;
  /**
   * Directory of the default AR model's files (config.json, model.safetensors), which
   * Model.openAR() reads. Default: ar/ next to this file, where `make bindings` puts them.
   * false: openAR() uses the AR model the module embeds (a module built with -tags arweights).
   */
  arPath?: string | false;
  onProgress?: (p: Progress) => void;
  /**
   * URL of onnxruntime-web's ES module, which runs web models (openWebModel) in the module's
   * thread. Default: the onnxruntime-web package this one depends on (its Node entry: the
   * wasm provider).
   */
  ortURL?: string | URL;
  /** Threads of onnxruntime-web's wasm provider (default 1; 2 matches the browser's isolated pages). */
  ortThreads?: number;
}

/** The OrtInit of opts. */
function ortInit(opts: NodeInitializeOptions): OrtInit {
  const o: OrtInit = { url: String(opts.ortURL ?? import.meta.resolve("onnxruntime-web")) };
  if (opts.ortThreads !== undefined) o.numThreads = opts.ortThreads;
  return o;
}

function here(file: string): string {
  return fileURLToPath(new URL(file, import.meta.url));
}

/**
 * Starts one instance of the module and returns its handle (a Promise of the response's
 * bytes; requests may be in flight together) and a function that drops it. Each call starts
 * a new instance (its own Go runtime and handles).
 */
export async function startModule(
  opts: Omit<NodeInitializeOptions, "onProgress"> = {},
): Promise<{ handle: (request: Uint8Array) => Promise<Uint8Array>; version: string; stop: () => void }> {
  const wasmExecPath = opts.wasmExecPath ?? here("./wasm_exec.js");
  const g = globalThis as unknown as GoGlobals;
  let module = opts.wasmModule;
  try {
    if (!module) {
      const wasmPath = opts.wasmPath ?? here("./flextok.wasm");
      module = await WebAssembly.compile(await readFile(wasmPath));
    }
    if (!g.Go) await import(pathToFileURL(wasmExecPath).href);
    if (!g.Go) throw new Error(`${wasmExecPath} did not define Go`);
    const go = new g.Go();
    const instance = await WebAssembly.instantiate(module, go.importObject);
    const ft = runGo(g, go, instance);
    const ort = ortInit(opts);
    const ho: { numThreads?: number } = {};
    if (ort.numThreads !== undefined) ho.numThreads = ort.numThreads;
    installGraphHost(ft.global, async () => (await import(ort.url)) as Ort, ho);
    return {
      handle: ft.handle,
      version: ft.version,
      stop: () => {
        if (g.flextok === ft.global) delete g.flextok; // let the instance be collected
      },
    };
  } catch (e) {
    if (e instanceof FlexTokError) throw e;
    throw asFlexTokError(e, "load_failed", "flextok: failed to load the wasm module");
  }
}

/**
 * A worker_threads Worker with the part of the Web Worker API that WorkerTransport uses
 * (WorkerLike), plus ref/unref. A thread that exits unasked (process.exit in it, out of
 * memory) is reported through onerror, as a Web Worker's failure is. @internal
 */
export class NodeWorker implements WorkerLike {
  onmessage: ((e: { data: FromWorker }) => void) | null = null;
  onerror: ((e: { message: string; preventDefault(): void }) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  readonly thread: ThreadWorker;
  /** Resolves with the thread's exit code once it has stopped. */
  readonly exited: Promise<number>;
  private terminated = false;

  constructor(script: string | URL, opts: WorkerOptions = {}) {
    this.thread = new ThreadWorker(script, opts);
    this.thread.on("message", (data: FromWorker) => this.onmessage?.({ data }));
    this.thread.on("error", (err: Error) => this.onerror?.({ message: err.message, preventDefault() {} }));
    this.thread.on("messageerror", () => this.onmessageerror?.());
    this.exited = new Promise<number>((resolve) => {
      this.thread.once("exit", (code: number) => {
        if (!this.terminated) this.onerror?.({ message: `the worker thread exited (code ${code})`, preventDefault() {} });
        resolve(code);
      });
    });
  }

  postMessage(message: ToWorker, transfer: Transferable[]): void {
    this.thread.postMessage(message, transfer as unknown as TransferListItem[]);
  }

  terminate(): void {
    this.terminated = true;
    void this.thread.terminate();
  }

  ref(): void {
    this.thread.ref();
  }

  unref(): void {
    this.thread.unref();
  }
}

/**
 * Loads the module and returns a FlexTok ("load_failed" if it cannot). By default the module
 * runs in a worker_threads Worker: calls do not block the event loop, and aborting the running
 * call terminates the worker at once and starts another (models opened before are then
 * closed), as in the browser. The worker holds the process open only while it starts or a
 * call is pending: an idle FlexTok left open does not keep Node from exiting. close()
 * terminates it.
 */
export async function initialize(opts: NodeInitializeOptions = {}): Promise<FlexTok> {
  const fopts: FlexTokOptions = {};
  if (opts.onProgress) fopts.onProgress = opts.onProgress;
  if (opts.arPath !== false) fopts.defaultAR = arReader(opts.arPath ?? here("./ar"));
  if (opts.worker === false) {
    const m = await startModule(opts);
    return new FlexTok(new DirectTransport(m.handle, m.stop), fopts);
  }
  let module = opts.wasmModule;
  if (!module) {
    const wasmPath = opts.wasmPath ?? here("./flextok.wasm");
    try {
      module = await WebAssembly.compile(await readFile(wasmPath));
    } catch (e) {
      throw asFlexTokError(e, "load_failed", `flextok: failed to load ${JSON.stringify(wasmPath)}`);
    }
  }
  const wasmExecURL = pathToFileURL(opts.wasmExecPath ?? here("./wasm_exec.js")).href;
  // A literal new URL(..., import.meta.url): bundlers that follow workers see the file.
  const script = opts.workerPath ?? new URL("./node-worker.js", import.meta.url);
  const t = new WorkerTransport(() => new NodeWorker(script), module, wasmExecURL, ortInit(opts));
  try {
    await t.ready;
  } catch (e) {
    t.close();
    throw asFlexTokError(e, "load_failed", "flextok: failed to start the worker");
  }
  return new FlexTok(t, fopts);
}

/**
 * Reads a web model package from a directory (what `flextok export-web -o DIR` wrote), for
 * FlexTok.openWebModel: manifest.json and every file it lists, each reassembled from its chunks.
 * The hashes are not checked here: openWebModel's worker checks the graphs' (verified false).
 * A missing or short chunk fails with "fetch_failed", naming it.
 */
export async function readModelPackage(dir: string): Promise<WebModelPackage> {
  const manifest = new Uint8Array(await readFile(join(dir, "manifest.json")));
  let man: { files?: Record<string, { size: number; chunks: { name: string; size: number }[] }> };
  try {
    man = JSON.parse(new TextDecoder().decode(manifest)) as typeof man;
  } catch (e) {
    throw new FlexTokError("bad_package", `flextok: ${join(dir, "manifest.json")}: ${String(e)}`, { cause: e });
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, f] of Object.entries(man.files ?? {})) {
    const out = new Uint8Array(f.size);
    let off = 0;
    for (const c of f.chunks) {
      let b: Uint8Array;
      try {
        b = await readFile(join(dir, c.name));
      } catch (e) {
        throw asFlexTokError(e, "fetch_failed", `flextok: chunk ${JSON.stringify(c.name)} of ${JSON.stringify(name)}`);
      }
      if (b.length !== c.size || off + b.length > f.size) {
        throw new FlexTokError("fetch_failed", `flextok: chunk ${JSON.stringify(c.name)} has ${b.length} bytes, the manifest says ${c.size}`);
      }
      out.set(b, off);
      off += b.length;
    }
    files.set(name, out);
  }
  return { manifest, files, verified: false };
}

/** The default AR model's files, read from dir. */
function arReader(dir: string): DefaultARLoader {
  return async () => {
    try {
      const [config, weights] = await Promise.all([readFile(join(dir, "config.json")), readFile(join(dir, "model.safetensors"))]);
      return { config: new Uint8Array(config.buffer, config.byteOffset, config.byteLength), weights: new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength) };
    } catch (e) {
      throw asFlexTokError(e, "load_failed", `flextok: the default AR model's files in ${JSON.stringify(dir)} (make bindings puts them there)`);
    }
  };
}
