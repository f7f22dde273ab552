// Runs a Web Worker script (by URL) in a worker_threads thread: the Worker globals it uses
// (onmessage, postMessage) over parentPort. For the tests only.
import { parentPort, workerData } from "node:worker_threads";

interface Scope {
  postMessage(m: unknown, transfer?: readonly ArrayBuffer[]): void;
  onmessage: ((e: { data: unknown }) => void) | null;
}
const scope = globalThis as unknown as Scope;
const port = parentPort!;
scope.postMessage = (m, transfer) => port.postMessage(m, transfer as ArrayBuffer[] | undefined);
await import((workerData as { url: string }).url);
port.on("message", (data: unknown) => scope.onmessage?.({ data }));
