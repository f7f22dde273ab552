// browser.ts's `new Worker(url)` under Node: the package's NodeWorker (node.ts) over
// worker_threads, running a Web Worker script by URL through worker-boot.js.
import { NodeWorker } from "../src/node.js";

export class ShimWorker extends NodeWorker {
  static spawned = 0;
  constructor(url: string | URL) {
    super(new URL("./worker-boot.js", import.meta.url), { workerData: { url: String(url) } });
    ShimWorker.spawned++;
  }
}
