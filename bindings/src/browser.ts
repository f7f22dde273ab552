// The browser entry point: initialize() loads the wasm module in a Web Worker (default) or on
// the main thread and returns a FlexTok.

import { FlexTok, DirectTransport, abortedError, type FlexTokOptions, type Progress, type Transport } from "./core.js";
import { FlexTokError, asFlexTokError } from "./errors.js";
import { runGo, type FromWorker, type GoGlobals, type ToWorker } from "./protocol.js";

export * from "./core.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./types.js";

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
  /** Aborts the initialization (rejects with "aborted"). */
  signal?: AbortSignal;
  /** Progress of every call. */
  onProgress?: (p: Progress) => void;
}

/** Where initialize stands, as in onnxruntime-web: initializing, initialized or aborted/failed. */
export type InitState = "initializing" | "initialized" | "failed";

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
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  const module = opts.wasmModule ?? (await compile(String(opts.wasmURL ?? here("./flextok.wasm")), opts.signal));
  if (opts.worker === false) {
    const handle = await raceAbort(startHere(module, wasmExecURL), opts.signal);
    return new FlexTok(new DirectTransport(handle), fopts);
  }
  const spawn = (): Worker =>
    opts.workerURL !== undefined
      ? new Worker(opts.workerURL, { type: "module", name: "flextok" })
      : new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "flextok" });
  const t = new WorkerTransport(spawn, module, wasmExecURL);
  await raceAbort(t.ready, opts.signal, () => t.close());
  return new FlexTok(t, fopts);
}

/** Starts the module on this thread; returns its handle. */
async function startHere(module: WebAssembly.Module, wasmExecURL: string): Promise<(b: Uint8Array) => Uint8Array> {
  const g = globalThis as unknown as GoGlobals;
  try {
    if (!g.Go) await import(/* @vite-ignore */ /* webpackIgnore: true */ wasmExecURL);
    if (!g.Go) throw new Error(`${wasmExecURL} did not define Go`);
    const go = new g.Go();
    const instance = await WebAssembly.instantiate(module, go.importObject);
    return runGo(g, go, instance).handle;
  } catch (e) {
    throw asFlexTokError(e, "load_failed", "flextok: failed to start the wasm module");
  }
}

interface Pending {
  seq: number;
  request: Uint8Array;
  gen: number | undefined;
  signal: AbortSignal | undefined;
  onAbort: () => void;
  resolve: (b: Uint8Array) => void;
  reject: (e: FlexTokError) => void;
}

/**
 * The module in a Worker. Requests queue here and go to the worker one at a time. Aborting a
 * queued request drops it; aborting the running one terminates the worker and starts a new
 * one (from the compiled module: no download), whose handles are new: models and streams
 * opened before are closed. A worker that dies (error, messageerror, the Go program exits)
 * fails every pending call with "worker_died" and is replaced the same way.
 */
export class WorkerTransport implements Transport {
  generation = 0;
  state: InitState = "initializing";
  /** Resolves when the current worker is ready (rejects with "load_failed"). */
  ready: Promise<void>;
  private worker: Worker | null = null;
  private queue: Pending[] = [];
  private running: Pending | null = null;
  private seq = 0;
  private closed = false;
  private isReady = false;
  private broken: FlexTokError | null = null;

  constructor(
    private readonly spawn: () => Worker,
    private readonly module: WebAssembly.Module,
    private readonly wasmExecURL: string,
  ) {
    this.ready = this.start();
  }

  private start(): Promise<void> {
    this.isReady = false;
    let w: Worker;
    try {
      w = this.spawn();
    } catch (e) {
      this.state = "failed";
      return Promise.reject(asFlexTokError(e, "load_failed", "flextok: failed to start the worker"));
    }
    this.worker = w;
    const p = new Promise<void>((resolve, reject) => {
      w.onmessage = (e: MessageEvent<FromWorker>): void => {
        if (w !== this.worker) return;
        const m = e.data;
        switch (m.type) {
          case "ready":
            this.isReady = true;
            this.state = "initialized";
            resolve();
            this.pump();
            break;
          case "init_failed":
            this.state = "failed";
            reject(new FlexTokError("load_failed", `flextok: failed to start the wasm module: ${m.message}`));
            this.die(new FlexTokError("load_failed", `flextok: failed to start the wasm module: ${m.message}`), false);
            break;
          case "result":
            this.settle(m.seq, m.response);
            break;
          case "exited":
            reject(new FlexTokError("load_failed", m.message));
            this.die(new FlexTokError("worker_died", m.message), true);
            break;
        }
      };
      w.onerror = (e: ErrorEvent): void => {
        if (w !== this.worker) return;
        e.preventDefault();
        const err = `flextok: the worker failed: ${e.message || "error event"}`;
        reject(new FlexTokError("load_failed", err));
        this.die(new FlexTokError("worker_died", err), this.isReady);
      };
      w.onmessageerror = (): void => {
        if (w !== this.worker) return;
        this.die(new FlexTokError("worker_died", "flextok: a worker message could not be deserialized"), true);
      };
    });
    const msg: ToWorker = { type: "init", module: this.module, wasmExecURL: this.wasmExecURL };
    w.postMessage(msg);
    p.catch(() => {}); // observed by ready's users
    return p;
  }

  /** Terminates the worker, fails the running call with err and every queued one, restarts if asked. */
  private die(err: FlexTokError, restart: boolean): void {
    this.worker?.terminate();
    this.worker = null;
    this.isReady = false;
    this.generation++;
    const all = this.running ? [this.running, ...this.queue] : [...this.queue];
    this.running = null;
    this.queue = [];
    for (const p of all) this.fail(p, err);
    if (restart && !this.closed) this.ready = this.start();
    else if (!this.closed) this.broken = err;
  }

  private fail(p: Pending, err: FlexTokError): void {
    p.signal?.removeEventListener("abort", p.onAbort);
    p.reject(err);
  }

  private settle(seq: number, response: Uint8Array): void {
    const p = this.running;
    if (!p || p.seq !== seq) return;
    this.running = null;
    p.signal?.removeEventListener("abort", p.onAbort);
    p.resolve(response);
    this.pump();
  }

  private pump(): void {
    while (!this.running && this.isReady && this.worker && this.queue.length > 0) {
      const p = this.queue.shift()!;
      if (p.gen !== undefined && p.gen !== this.generation) {
        this.fail(p, new FlexTokError("closed", "flextok: the model or stream was lost when the worker restarted"));
        continue;
      }
      this.running = p;
      const msg: ToWorker = { type: "call", seq: p.seq, request: p.request };
      this.worker.postMessage(msg, [p.request.buffer as ArrayBuffer]);
    }
  }

  call(request: Uint8Array, opts: { signal?: AbortSignal; gen?: number }): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new FlexTokError("closed", "flextok: the module is closed"));
    if (this.broken) return Promise.reject(this.broken);
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    if (opts.gen !== undefined && opts.gen !== this.generation) {
      return Promise.reject(new FlexTokError("closed", "flextok: the model or stream was lost when the worker restarted"));
    }
    // Transfer only a buffer the request owns entirely.
    const own = request.byteOffset === 0 && request.byteLength === request.buffer.byteLength ? request : request.slice();
    return new Promise<Uint8Array>((resolve, reject) => {
      const p: Pending = {
        seq: ++this.seq,
        request: own,
        gen: opts.gen,
        signal,
        resolve,
        reject,
        onAbort: () => {
          const err = abortedError(signal!);
          if (this.running === p) {
            // The module runs synchronously in the worker: only terminating it stops the call.
            this.running = null;
            p.reject(err);
            this.die(new FlexTokError("aborted", "flextok: another call was aborted; the worker restarted"), true);
            return;
          }
          const i = this.queue.indexOf(p);
          if (i >= 0) this.queue.splice(i, 1);
          p.reject(err);
        },
      };
      signal?.addEventListener("abort", p.onAbort, { once: true });
      this.queue.push(p);
      this.pump();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.die(new FlexTokError("closed", "flextok: the module is closed"), false);
  }
}
