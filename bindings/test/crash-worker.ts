// A worker that starts, then dies on its first call (for the worker_died test).
const scope = globalThis as unknown as { postMessage(m: unknown): void; onmessage: ((e: { data: { type: string } }) => void) | null };
scope.onmessage = (e) => {
  if (e.data.type === "init") scope.postMessage({ type: "ready", version: "crash" });
  else throw new Error("simulated crash");
};
export {};
