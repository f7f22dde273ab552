// AR generation through the TypeScript API (Node, the GOOS=js module in a worker): the random-
// weight AR fixture of conformance/arfixture beside the embedded default tokenizer. The ids and
// payloads must be those of the Go service natively and under wazero:
// conformance/testdata/ar/generate_golden.json (conformance/ar_generate_test.go).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { FlexTokError, initialize, type ARModel, type FlexTok, type Model, type TokensEvent } from "../src/node.js";
import { ROOT, WASM, WASM_EXEC, ensureDefaultAR, ensureWasm, read, sha256 } from "./util.js";

interface Golden {
  config_sha256: string;
  weights_sha256: string;
  payloads_sha256: Record<string, string[]>;
  ids: Record<string, number[][]>;
}
const golden = JSON.parse(readFileSync(join(ROOT, "conformance", "testdata", "ar", "generate_golden.json"), "utf8")) as Golden;

/** The conformance script's CFG generation (conformance/ar_generate_test.go). */
const CFG = { class: "triangle", n: 2, k: 32, seed: 42, cfg: 3, temperature: 1, topK: 200, topP: 0.9 } as const;

let ft: FlexTok;
let tok: Model;
let arm: ARModel;
let config: Uint8Array;
let weights: Uint8Array;

before(async () => {
  ensureWasm();
  const dir = mkdtempSync(join(tmpdir(), "flextok-ar-"));
  try {
    execFileSync(process.env.GO ?? "go", ["run", "./conformance/arfixture/mkfixture", dir], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
    config = read(join(dir, "config.json"));
    weights = read(join(dir, "model.safetensors"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(sha256(config), golden.config_sha256, "the AR fixture's config.json drifted");
  assert.equal(sha256(weights), golden.weights_sha256, "the AR fixture's weights drifted");
  ft = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC });
  tok = await ft.openDefault();
  arm = await tok.openAR(config, weights);
});
after(() => ft?.close());

describe("AR generation", () => {
  test("openAR reports the model", () => {
    assert.deepEqual(arm.classes, ["circle", "square", "triangle"]);
    assert.equal(arm.maxTokens, 32);
    assert.equal(arm.info.vocab, 64000);
    assert.equal(arm.info.cfg, true);
  });

  for (const perCall of [undefined, 1, 5]) {
    test(`the same seed gives the Go service's ids and payloads (perCall ${perCall})`, async () => {
      const events: TokensEvent[] = [];
      const r = await arm.generate({ ...CFG, ...(perCall ? { perCall } : {}), onTokens: (e) => void events.push(e) });
      assert.deepEqual(r.ids, golden.ids.cfg);
      assert.deepEqual(r.payloads.map(sha256), golden.payloads_sha256.next_cfg_31);
      assert.equal(r.class, 2);
      // The events cover every position once, in order.
      let at = 0;
      for (const e of events) {
        assert.equal(e.start, at);
        if (perCall) assert.ok(e.count <= perCall);
        at += e.count;
        assert.equal(e.received, at);
        assert.equal(e.chunks.length, 2);
      }
      assert.equal(at, 32);
      assert.ok(events.at(-1)!.done);
    });
  }

  test("greedy", async () => {
    const r = await arm.generate({ class: 0, k: 8, greedy: true });
    assert.deepEqual(r.ids, golden.ids.greedy);
    assert.deepEqual(r.payloads.map(sha256), golden.payloads_sha256.next_greedy_7);
  });

  test("streamed chunks decode coarse to fine, the last as the whole payload", async () => {
    const seen: number[] = [];
    let stream: Awaited<ReturnType<Model["openStream"]>> | undefined;
    let last: Uint8Array | undefined;
    const r = await arm.generate({
      class: "square",
      k: 8,
      seed: 3,
      perCall: 1,
      onTokens: async (e) => {
        stream ??= await tok.openStream(e.headers[0]!, { steps: 1 });
        const decode = [1, 2, 4, 8].includes(e.received);
        const p = await stream.push(e.chunks[0], { decode, output: ["png"] });
        if (p.image) {
          seen.push(p.image.k);
          last = p.image.png;
        }
      },
    });
    assert.deepEqual(seen, [1, 2, 4, 8]);
    const whole = await tok.decode(r.payloads[0]!, { steps: 1, output: ["png"] });
    assert.equal(sha256(last), sha256(whole.png));
    await stream!.close();
  });

  test("bad requests fail with stable codes", async () => {
    const code = (c: string) => (e: unknown) => e instanceof FlexTokError && e.code === c;
    await assert.rejects(arm.generate({ class: "hexagon" }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 3 }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 0, k: 0 }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 0, k: 33 }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 0, temperature: -1 }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 0, topP: 0 }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 0, topP: 1.5 }), code("bad_request"));
    await assert.rejects(arm.generate({ class: 0, topK: -1 }), code("bad_request"));
    const tiny = join(ROOT, "conformance", "testdata", "ar", "tiny");
    await assert.rejects(tok.openAR(read(join(tiny, "config.json")), read(join(tiny, "model.safetensors"))), code("tokenizer_mismatch"));
    await assert.rejects(tok.openAR(config, weights.subarray(0, 1000)), code("bad_model"));
    await assert.rejects(tok.openAR("{}", weights), code("bad_model"));
  });

  test("close, then generate fails with closed", async () => {
    const a = await tok.openAR(config, weights);
    await a.close();
    await assert.rejects(a.generate({ class: 0 }), (e: unknown) => e instanceof FlexTokError && e.code === "closed");
  });

  test("openAR() without files opens the default AR model from ar/ next to the package", async () => {
    ensureDefaultAR();
    const def = await tok.openAR();
    assert.deepEqual(def.classes, ["circle", "ring", "square", "triangle", "cross", "star", "hexagon", "crescent"]);
    assert.equal(def.maxTokens, 32);
    const dir = join(ROOT, "models", "default", "ar");
    const same = await tok.openAR(read(join(dir, "config.json")), read(join(dir, "model.safetensors")));
    const a = await def.generate({ class: "star", k: 4, seed: 9 });
    const b = await same.generate({ class: "star", k: 4, seed: 9 });
    assert.deepEqual(a.ids, b.ids);
    assert.deepEqual(a.payloads.map(sha256), b.payloads.map(sha256));
    await def.close();
    await same.close();
  });

  test("openAR() where the package has no AR files, or the module embeds none", async () => {
    const code = (c: string) => (e: unknown) => e instanceof FlexTokError && e.code === c;
    const missing = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC, arPath: join(tmpdir(), "no-such-flextok-ar") });
    try {
      await assert.rejects((await missing.openDefault()).openAR(), code("load_failed"));
    } finally {
      missing.close();
    }
    const none = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC, arPath: false });
    try {
      await assert.rejects((await none.openDefault()).openAR(), (e: unknown) => code("bad_request")(e) && /embeds no default AR model/.test(String((e as Error).message)));
    } finally {
      none.close();
    }
  });

  // Last: an abort restarts the worker, closing every handle.
  test("abort rejects with aborted", async () => {
    const ac = new AbortController();
    await assert.rejects(
      arm.generate({ class: 1, perCall: 1, signal: ac.signal, onTokens: (e) => (e.received === 2 ? ac.abort() : undefined) }),
      (e: unknown) => e instanceof FlexTokError && e.code === "aborted",
    );
  });
});
