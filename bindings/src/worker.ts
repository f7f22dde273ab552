// The Worker that runs the wasm module (compiled to dist/src/worker.js, loaded by URL as a
// module worker: CSP-safe, no blob: URL). The module's handle returns a Promise; the page
// still sends one request at a time, the next only after this one's response, so it knows
// which request is running when it aborts (WorkerTransport, core.ts).

import { installGraphHost, packageStore, type Ort } from "./ortweb.js";
import { runGo, type FromWorker, type GoGlobals, type OrtInit, type ToWorker } from "./protocol.js";

interface WorkerScope extends GoGlobals {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
}

const scope = globalThis as unknown as WorkerScope;
let handle: ((b: Uint8Array) => Promise<Uint8Array>) | undefined;
let exited = false;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function init(module: WebAssembly.Module, wasmExecURL: string, ort: OrtInit | undefined): Promise<void> {
  try {
    if (!scope.Go) await import(wasmExecURL);
    if (!scope.Go) throw new Error(`${wasmExecURL} did not define Go`);
    const go = new scope.Go();
    const instance = await WebAssembly.instantiate(module, go.importObject);
    const ft = runGo(scope, go, instance, () => {
      exited = true;
      scope.postMessage({ type: "exited", message: "flextok: the Go program exited" });
    });
    handle = ft.handle;
    const o: { wasmPaths?: string; numThreads?: number } = {};
    if (ort?.wasmPaths !== undefined) o.wasmPaths = ort.wasmPaths;
    if (ort?.numThreads !== undefined) o.numThreads = ort.numThreads;
    installGraphHost(
      ft.global,
      async () => {
        if (!ort) throw new Error("no onnxruntime-web URL was given to initialize (its ortURL option)");
        return (await import(ort.url)) as Ort;
      },
      o,
    );
    scope.postMessage({ type: "ready", version: ft.version });
  } catch (e) {
    scope.postMessage({ type: "init_failed", message: message(e) });
  }
}

scope.onmessage = (e: MessageEvent<ToWorker>): void => {
  const m = e.data;
  if (m.type === "init") {
    void init(m.module, m.wasmExecURL, m.ort);
    return;
  }
  if (m.type === "files") {
    packageStore.set(m.key, { files: new Map(m.files), verified: m.verified });
    return;
  }
  if (!handle || exited) {
    scope.postMessage({ type: "exited", seq: m.seq, message: "flextok: the module is not running" });
    return;
  }
  void serve(handle, m.seq, m.request);
};

async function serve(h: (b: Uint8Array) => Promise<Uint8Array>, seq: number, request: Uint8Array): Promise<void> {
  const t0 = performance.now();
  let response: Uint8Array;
  try {
    response = await h(request);
  } catch (err) {
    // runGo rejects when the call threw, its Promise rejected or the Go program exited (then
    // onExit has already said so).
    if (!exited) {
      exited = true;
      scope.postMessage({ type: "exited", seq, message: `flextok: the wasm module failed: ${message(err)}` });
    }
    return;
  }
  if (exited) return;
  scope.postMessage({ type: "result", seq, response, ms: performance.now() - t0 }, [response.buffer]);
}
