// The worker_threads entry of the Node build (dist/src/node-worker.js): worker.ts, the Web
// Worker script the browser runs, given the two Web Worker globals it uses (postMessage and
// onmessage) over parentPort. node.ts's NodeWorker starts it; nothing else is here.

import { parentPort } from "node:worker_threads";
import "./worker.js"; // sets globalThis.onmessage; calls globalThis.postMessage only later

interface Scope {
  postMessage(m: unknown, transfer?: readonly Transferable[]): void;
  onmessage: ((e: { data: unknown }) => void) | null;
}

const scope = globalThis as unknown as Scope;
const port = parentPort;
if (!port) throw new Error("flextok: node-worker.js runs only as a worker_threads Worker");
scope.postMessage = (m, transfer) => port.postMessage(m, transfer as Parameters<typeof port.postMessage>[1]);
port.on("message", (data: unknown) => scope.onmessage?.({ data }));
