// The subset of the Web Worker API that browser.ts uses, over worker_threads.
import { Worker as NodeWorker } from "node:worker_threads";

export class ShimWorker {
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: { message: string; preventDefault(): void }) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  static spawned = 0;
  private readonly w: NodeWorker;
  constructor(url: string | URL) {
    ShimWorker.spawned++;
    this.w = new NodeWorker(new URL("./worker-boot.js", import.meta.url), { workerData: { url: String(url) } });
    this.w.on("message", (data: unknown) => this.onmessage?.({ data }));
    this.w.on("error", (err: Error) => this.onerror?.({ message: err.message, preventDefault() {} }));
    this.w.on("messageerror", () => this.onmessageerror?.());
  }
  postMessage(m: unknown, transfer?: ArrayBuffer[]): void {
    this.w.postMessage(m, transfer);
  }
  terminate(): void {
    void this.w.terminate();
  }
}
