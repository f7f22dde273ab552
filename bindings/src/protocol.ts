// Messages between browser.ts (the page) and worker.ts (the Worker), and how the Go program
// starts. Nothing here imports anything, so worker.js (which imports only this file) loads
// by URL with no bundler and no blob: URL.

/** Page → worker. */
export type ToWorker =
  /** Start the Go program: import wasm_exec.js, instantiate the compiled module, run it. */
  | { type: "init"; module: WebAssembly.Module; wasmExecURL: string }
  /** One request's bytes (transferred). */
  | { type: "call"; seq: number; request: Uint8Array };

/** Worker → page. */
export type FromWorker =
  | { type: "ready"; version: string }
  | { type: "init_failed"; message: string }
  /** The response's bytes (transferred); ms: time inside handle. */
  | { type: "result"; seq: number; response: Uint8Array; ms: number }
  /** handle threw or the Go program exited: the worker is no longer usable. */
  | { type: "exited"; seq?: number; message: string };

/** What wasm/js sets on globalThis. */
export interface GoModuleGlobal {
  handle(request: Uint8Array): Uint8Array;
  version: string;
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
 * the program ended (or failed to start).
 */
export function runGo(g: GoGlobals, go: GoInstance, instance: WebAssembly.Instance, onExit?: () => void): GoModuleGlobal {
  const before = g.flextok;
  delete g.flextok;
  const done = (): void => onExit?.();
  go.run(instance).then(done, done);
  const ft = (g as { flextok?: GoModuleGlobal }).flextok;
  if (!ft) {
    if (before) g.flextok = before;
    throw new Error("the wasm module did not set globalThis.flextok (is it wasm/js, built with this wasm_exec.js?)");
  }
  return ft;
}
