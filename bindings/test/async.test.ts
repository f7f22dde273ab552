// The asynchronous wasm entry: wasm/js's handle returns a Promise (each request on a
// goroutine). Requests in flight together give the bits of one at a time (golden.json), on the
// module itself and through the API on the calling thread; runGo and worker.ts turn a
// rejection or an exit of the Go program into an error, never a call that hangs.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, describe, test } from "node:test";
import { encode as msgpackEncode } from "@msgpack/msgpack";
import { DirectTransport, FlexTok, NodeWorker, WorkerTransport, decodeResponse, encodeRequest, initialize, startModule, type Request } from "../src/node.js";
import { runGo, type GoGlobals, type GoInstance } from "../src/protocol.js";
import { PKG_DIST, ROOT, WASM, WASM_EXEC, c1Files, ensureWasm, scriptBMP, sha256 } from "./util.js";

const golden = new Map(
  (JSON.parse(readFileSync(join(ROOT, "conformance", "testdata", "service", "golden.json"), "utf8")) as { name: string; sha256?: Record<string, string> }[]).map(
    (g) => [g.name, g.sha256 ?? {}],
  ),
);
const KS = [1, 4, 16, 32] as const;

describe("the module's handle", () => {
  test("returns a Promise; decodes in flight together equal golden.json, each with its id", async () => {
    ensureWasm();
    const m = await startModule({ wasmPath: WASM, wasmExecPath: WASM_EXEC });
    try {
      // The module's own handle (globalThis.flextok, which startModule leaves set), not runGo's.
      const raw = (globalThis as GoGlobals).flextok!;
      const call = async (req: Request): Promise<Record<string, unknown>> => {
        const p = raw.handle(encodeRequest(req));
        assert.ok(p instanceof Promise, "the module's handle returned no Promise");
        const r = decodeResponse(await p) as unknown as Record<string, unknown>;
        assert.equal(r.ok, true, JSON.stringify(r.error));
        return r;
      };
      const c1 = c1Files();
      const handle = (await call({ op: "open", weights: c1.weights, config: c1.config, vae_config: c1.vaeConfig, name: "c1" })).handle as number;
      const enc = await call({ op: "encode", handle, image: scriptBMP() });
      assert.equal(sha256(enc.payload as Uint8Array), golden.get("encode")!.payload);
      const rs = await Promise.all(KS.map((k, i) => call({ id: 100 + i, op: "decode", handle, payload: enc.payload as Uint8Array, k, steps: 2, seed: 7 } as Request)));
      rs.forEach((r, i) => {
        assert.equal(r.id, 100 + i);
        assert.equal(sha256(r.rgba as Uint8Array), golden.get(`decode_k${KS[i]}`)!.rgba, `k=${KS[i]}`);
      });
      // A request that is not a Uint8Array is a bad_request response, not a rejection.
      const bad = decodeResponse(await (m.handle as unknown as (x: unknown) => Promise<Uint8Array>)("junk"));
      assert.equal(bad.ok, false);
    } finally {
      m.stop();
    }
  });

  test("worker: false: concurrent decodes through the API equal golden.json", async () => {
    ensureWasm();
    const ft = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC, worker: false });
    try {
      const c1 = c1Files();
      const model = await ft.openModel(c1.weights, { config: c1.config, vaeConfig: c1.vaeConfig, name: "c1" });
      const pb = (await model.encode(scriptBMP())).payload;
      const imgs = await Promise.all(KS.map((k) => model.decode(pb, { k, steps: 2, seed: 7, output: ["rgba", "png"] })));
      imgs.forEach((img, i) => {
        assert.equal(sha256(img.rgba), golden.get(`decode_k${KS[i]}`)!.rgba);
        assert.equal(sha256(img.png), golden.get(`decode_k${KS[i]}`)!.png);
      });
    } finally {
      ft.close();
    }
  });
});

/** A stand-in for wasm_exec.js's Go whose program sets handle and can be made to exit. */
function fakeGo(g: GoGlobals, handle: (b: Uint8Array) => Promise<Uint8Array> | Uint8Array): GoInstance & { exit(): void } {
  let exit = (): void => {};
  return {
    importObject: {},
    run: () =>
      new Promise<void>((resolve) => {
        exit = resolve;
        g.flextok = { handle, version: "fake" };
      }),
    exit: () => exit(),
  };
}

describe("runGo", () => {
  const instance = {} as WebAssembly.Instance;
  test("a call pending when the Go program exits is rejected, and so are later calls", async () => {
    const g: GoGlobals = {};
    const go = fakeGo(g, () => new Promise<Uint8Array>(() => {}));
    let exited = 0;
    const ft = runGo(g, go, instance, () => exited++);
    const pending = ft.handle(new Uint8Array([1]));
    go.exit();
    await assert.rejects(pending, /the Go program exited/);
    assert.equal(exited, 1);
    await assert.rejects(ft.handle(new Uint8Array([2])), /the Go program exited/);
  });

  test("through FlexTok on this thread: worker_died, not a call that never settles", async () => {
    const g: GoGlobals = {};
    const go = fakeGo(g, () => new Promise<Uint8Array>(() => {}));
    const ft = new FlexTok(new DirectTransport(runGo(g, go, instance).handle));
    const v = ft.version();
    setTimeout(() => go.exit(), 5);
    await assert.rejects(v, { code: "worker_died" });
  });

  test("a handle that returns bytes (a module before the async entry), throws or rejects", async () => {
    const g: GoGlobals = {};
    const bytes = new Uint8Array([7]);
    assert.equal(await runGo(g, fakeGo(g, () => bytes), instance).handle(bytes), bytes);
    const thrown = runGo(g, fakeGo(g, () => { throw new Error("Go program has already exited"); }), instance);
    await assert.rejects(thrown.handle(bytes), /already exited/);
    const rejected = runGo(g, fakeGo(g, () => Promise.reject(new Error("boom"))), instance);
    await assert.rejects(rejected.handle(bytes), /boom/);
  });
});

// worker.ts itself (under node-worker.ts) with a fake wasm_exec.js: its Go class runs no
// wasm, it sets a handle whose Promise resolves late, rejects, or never settles while the
// program exits.
describe("worker.ts with an asynchronous handle", () => {
  const dir = mkdtempSync(join(tmpdir(), "flextok-async-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const version = msgpackEncode({ ok: true, protocol: 1, payload: [1, 0] });
  const script = join(dir, "fake_wasm_exec.js");
  writeFileSync(
    script,
    `const mode = new URL(import.meta.url).searchParams.get("mode");
const version = new Uint8Array(${JSON.stringify(Array.from(version))});
globalThis.Go = class {
  importObject = {};
  run() {
    return new Promise((exit) => {
      globalThis.flextok = { version: "fake", handle() {
        if (mode === "ok") return new Promise((res) => setTimeout(() => res(version.slice()), 20));
        if (mode === "reject") return Promise.reject(new Error("boom"));
        setTimeout(exit, 20); // "exit": the program ends with the call pending
        return new Promise(() => {});
      } };
    });
  }
};
`,
  );
  // The smallest wasm module: worker.ts instantiates it with the fake's importObject.
  const empty = new WebAssembly.Module(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  const start = (mode: string): { ft: FlexTok; t: WorkerTransport; workers: NodeWorker[] } => {
    const workers: NodeWorker[] = [];
    const t = new WorkerTransport(
      () => {
        const w = new NodeWorker(pathToFileURL(join(PKG_DIST, "node-worker.js")));
        workers.push(w);
        return w;
      },
      empty,
      `${pathToFileURL(script).href}?mode=${mode}`,
    );
    return { ft: new FlexTok(t), t, workers };
  };

  test("a Promise that resolves later: the response", async () => {
    const { ft, t } = start("ok");
    try {
      await t.ready;
      assert.deepEqual(await Promise.all([ft.version(), ft.version()]), [
        { protocol: 1, payload: [1, 0] },
        { protocol: 1, payload: [1, 0] },
      ]);
    } finally {
      ft.close();
    }
  });

  for (const [mode, why] of [
    ["reject", /boom/],
    ["exit", /exited/],
  ] as const) {
    test(`a Promise that ${mode === "reject" ? "rejects" : "never settles while the program exits"}: worker_died, and a new worker`, async () => {
      const { ft, t, workers } = start(mode);
      try {
        await t.ready;
        const gen = t.generation;
        await assert.rejects(ft.version(), (e: unknown) => (e as { code?: string }).code === "worker_died" && why.test(String((e as Error).message)));
        assert.equal(t.generation, gen + 1);
        await t.ready;
        assert.equal(workers.length, 2);
      } finally {
        ft.close();
      }
    });
  }
});
