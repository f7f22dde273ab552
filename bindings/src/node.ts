// The Node entry point: the module on this thread (no worker), from files. Node has no Cache
// API, so loadModel downloads every time; openModel takes bytes read with fs.

import { readFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { DirectTransport, FlexTok, type FlexTokOptions, type HandleFunction, type Progress } from "./core.js";
import { FlexTokError, asFlexTokError } from "./errors.js";
import { runGo, type GoGlobals } from "./protocol.js";

export * from "./core.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./types.js";

/** Options of initialize in Node. */
export interface NodeInitializeOptions {
  /** Path of flextok.wasm. Default: next to this file (where `make bindings` puts it). */
  wasmPath?: string;
  /** An already compiled module instead of wasmPath. */
  wasmModule?: WebAssembly.Module;
  /** Path of the wasm_exec.js of the Go release that built the module. Default: next to this file. */
  wasmExecPath?: string;
  onProgress?: (p: Progress) => void;
}

function here(file: string): string {
  return fileURLToPath(new URL(file, import.meta.url));
}

/**
 * Starts one instance of the module and returns its handle and a function that drops it.
 * Each call starts a new instance (its own Go runtime and handles).
 */
export async function startModule(opts: Omit<NodeInitializeOptions, "onProgress"> = {}): Promise<{ handle: HandleFunction; version: string; stop: () => void }> {
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
    return {
      handle: ft.handle,
      version: ft.version,
      stop: () => {
        if (g.flextok === ft) delete g.flextok; // let the instance be collected
      },
    };
  } catch (e) {
    if (e instanceof FlexTokError) throw e;
    throw asFlexTokError(e, "load_failed", "flextok: failed to load the wasm module");
  }
}

/** Loads the module on this thread and returns a FlexTok ("load_failed" if it cannot). */
export async function initialize(opts: NodeInitializeOptions = {}): Promise<FlexTok> {
  const m = await startModule(opts);
  const fopts: FlexTokOptions = {};
  if (opts.onProgress) fopts.onProgress = opts.onProgress;
  return new FlexTok(new DirectTransport(m.handle, m.stop), fopts);
}
