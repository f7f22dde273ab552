// Messages between browser.ts (the page) and worker.ts (the Worker), and how the Go program
// starts. Nothing here imports anything, so worker.js (which imports only this file) loads
// by URL with no bundler and no blob: URL.

/**
 * Where the worker imports onnxruntime-web from, for web models (ortweb.ts): url of its ES
 * module (dist/ort.*.mjs, or the package's Node entry), wasmPaths of its .wasm files
 * (env.wasm.wasmPaths; default: beside the module), numThreads of the wasm provider.
 */
export interface OrtInit {
  url: string;
  wasmPaths?: string;
  numThreads?: number;
}

/** Page → worker. */
export type ToWorker =
  /** Start the Go program: import wasm_exec.js, instantiate the compiled module, run it. */
  | { type: "init"; module: WebAssembly.Module; wasmExecURL: string; ort?: OrtInit }
  /**
   * A web model package's files (transferred), kept under key until an "open_graphs" request
   * names it (ortweb.ts's packageStore). No reply: the next call sees them, messages keep order.
   */
  | { type: "files"; key: string; files: [string, Uint8Array][]; verified: boolean }
  /** One request's bytes (transferred). */
  | { type: "call"; seq: number; request: Uint8Array };

/** Worker → page. */
export type FromWorker =
  | { type: "ready"; version: string }
  | { type: "init_failed"; message: string }
  /** The response's bytes (transferred); ms: from the call of handle to its response. */
  | { type: "result"; seq: number; response: Uint8Array; ms: number }
  /** handle threw or the Go program exited: the worker is no longer usable. */
  | { type: "exited"; seq?: number; message: string };

/**
 * What wasm/js sets on globalThis. handle returns a Promise of the response (each request is
 * served on a goroutine, so it may await JavaScript); a module built before that returned the
 * bytes themselves, and runGo accepts both.
 */
export interface GoModuleGlobal {
  handle(request: Uint8Array): Promise<Uint8Array> | Uint8Array;
  version: string;
}

/** A started module, as runGo returns it. */
export interface RunningModule {
  /**
   * globalThis.flextok.handle, awaited: rejects when the call throws or its Promise rejects
   * (the module failed), and when the Go program exits while the call is pending (its Promise
   * would never settle) or before it was made.
   */
  handle(request: Uint8Array): Promise<Uint8Array>;
  version: string;
  /** The globalThis.flextok this instance set. */
  global: GoModuleGlobal;
}

/** The Go class of wasm_exec.js. */
export interface GoInstance {
  importObject: WebAssembly.Imports;
  run(instance: WebAssembly.Instance): Promise<void>;
}
export type GoConstructor = new () => GoInstance;

/** The globals wasm_exec.js and the module set. */
export interface GoGlobals {
  Go?: GoConstructor;
  flextok?: GoModuleGlobal;
}

/**
 * Runs the Go program of instance up to its select{} (go.run returns then) and returns the
 * globalThis.flextok it set: this instance's, even when an earlier instance set one. onExit:
 * the program ended (or failed to start); calls still pending then are rejected first.
 */
export function runGo(g: GoGlobals, go: GoInstance, instance: WebAssembly.Instance, onExit?: () => void): RunningModule {
  const before = g.flextok;
  delete g.flextok;
  let exited: Error | null = null;
  const pending = new Set<(e: Error) => void>();
  const done = (): void => {
    exited = new Error("the Go program exited");
    for (const reject of pending) reject(exited);
    pending.clear();
    onExit?.();
  };
  go.run(instance).then(done, done);
  const ft = (g as { flextok?: GoModuleGlobal }).flextok;
  if (!ft) {
    if (before) g.flextok = before;
    throw new Error("the wasm module did not set globalThis.flextok (is it wasm/js, built with this wasm_exec.js?)");
  }
  const handle = (request: Uint8Array): Promise<Uint8Array> =>
    new Promise<Uint8Array>((resolve, reject) => {
      if (exited) {
        reject(exited);
        return;
      }
      pending.add(reject);
      const ok = (b: Uint8Array): void => (pending.delete(reject), resolve(b));
      const fail = (e: unknown): void => (pending.delete(reject), reject(e));
      try {
        Promise.resolve(ft.handle(request)).then(ok, fail);
      } catch (e) {
        fail(e); // the Go program is gone, or a trap ended the call
      }
    });
  return { handle, version: ft.version, global: ft };
}
