// The payload test vectors (conformance/testdata/payload): the TS codec's view of every valid
// vector equals the Go JSON view, re-encoding gives the same (canonical) bytes, and the
// invalid vectors are refused — by the codec where it checks, and always by the wasm module
// (its decode op on the c1 model validates the whole payload before it compares the model).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  FlexTokError,
  decodePayload,
  decodeStream,
  decodeStreamChunk,
  decodeStreamHeader,
  encodePayload,
  encodeStreamChunk,
  encodeStreamHeader,
  hex,
  initialize,
  splitPayload,
  type FlexTok,
  type Model,
  type PayloadView,
  type StreamHeaderView,
} from "../src/node.js";
import { VECTORS, WASM, WASM_EXEC, c1Files, ensureWasm, read, sha256 } from "./util.js";

interface Vector {
  name: string;
  kind: "tokens" | "stream";
  input: string;
  sha256: string;
  view?: string;
  error?: { code: string; field: string };
}

interface JSONModel {
  name: string;
  digest: string;
  fsq: number[];
  codebook_size: number;
  max_tokens: number;
}
interface JSONCommon {
  format: string;
  version: number;
  model: JSONModel;
  image: { height: number; width: number; resize?: string; crop?: string; source?: [number, number] };
  frames?: number;
  count?: number;
  cond?: { class?: number; prompt?: string };
  hints?: { steps?: number; guidance?: number; apg?: boolean; seed?: number };
}
interface JSONTokens extends JSONCommon {
  ids: number[];
}
interface JSONStream extends JSONCommon {
  received: number;
  done: boolean;
  chunks: { start: number; ids: number[]; end?: boolean }[];
}

const manifest = JSON.parse(readFileSync(join(VECTORS, "manifest.json"), "utf8")) as Vector[];
const valid = manifest.filter((v) => !v.error);
const invalid = manifest.filter((v) => v.error);

function checkCommon(got: PayloadView | StreamHeaderView, want: JSONCommon): void {
  assert.equal(got.format, want.format);
  assert.equal(got.version[0], want.version);
  assert.equal(got.model.name, want.model.name);
  assert.equal(`sha256:${hex(got.model.digest)}`, want.model.digest);
  assert.deepEqual(got.model.fsq, want.model.fsq);
  assert.equal(got.codebook, want.model.codebook_size);
  assert.equal(got.model.max_tokens, want.model.max_tokens);
  assert.deepEqual({ ...got.image }, want.image);
  assert.equal(got.frames, want.frames ?? 1);
  assert.deepEqual(got.cond, want.cond);
  if (want.hints) {
    // guidance is a float32 on the wire: compare after rounding both to float32
    const { guidance, ...rest } = want.hints;
    const g = got.hints?.guidance;
    assert.deepEqual({ ...got.hints, guidance: undefined }, { ...rest, guidance: undefined });
    if (guidance !== undefined) assert.equal(Math.fround(g ?? NaN), Math.fround(guidance));
  } else assert.equal(got.hints, undefined);
}

describe("payload vectors: the TS codec", () => {
  test("manifest lists the vectors", () => {
    assert.ok(valid.length >= 7 && invalid.length >= 13, `${valid.length} valid, ${invalid.length} invalid`);
  });

  for (const v of valid) {
    test(`${v.name}: view equals the Go JSON view, bytes re-encode canonically`, () => {
      const input = read(join(VECTORS, v.input));
      assert.equal(sha256(input), v.sha256);
      if (v.kind === "tokens") {
        const want = JSON.parse(readFileSync(join(VECTORS, v.view!), "utf8")) as JSONTokens;
        const got = decodePayload(input);
        checkCommon(got, want);
        assert.equal(got.count, want.count);
        assert.equal(got.ids instanceof (got.codebook > 65536 ? Uint32Array : Uint16Array), true);
        assert.deepEqual(Array.from(got.ids), want.ids);
        assert.deepEqual(encodePayload(got), input);
      } else {
        const want = JSON.parse(readFileSync(join(VECTORS, v.view!), "utf8")) as JSONStream;
        const got = decodeStream(input);
        checkCommon(got.header, want);
        assert.equal(got.header.count, want.count);
        assert.equal(got.received, want.received);
        assert.equal(got.done, want.done);
        assert.deepEqual(
          got.chunks.map((c) => ({ start: c.start, ids: Array.from(c.ids), ...(c.end ? { end: true } : {}) })),
          want.chunks,
        );
        // Header and chunks re-encoded, one message each, concatenated: the input.
        const parts = [encodeStreamHeader(got.header), ...got.chunks.map((c) => encodeStreamChunk(c, got.header))];
        assert.deepEqual(Buffer.concat(parts), Buffer.from(input));
        // One message at a time, as from a WebSocket.
        const h = decodeStreamHeader(parts[0]!);
        parts.slice(1).forEach((p, i) => assert.deepEqual(decodeStreamChunk(p, h), got.chunks[i]));
      }
    });
  }

  test("splitPayload(tokens_cond_hints, 1,1,2,4,8,16) is stream_32, byte for byte", () => {
    const { header, chunks } = splitPayload(read(join(VECTORS, "tokens_cond_hints.msgpack")), [1, 1, 2, 4, 8, 16]);
    assert.deepEqual(Buffer.concat([header, ...chunks]), Buffer.from(read(join(VECTORS, "stream_32.msgpack"))));
  });

  // What the codec checks (the module checks the rest: ranges, limits, duplicate keys).
  const codecCodes: Record<string, string> = {
    err_empty: "truncated",
    err_not_map: "format",
    err_truncated: "truncated",
    err_trailing: "trailing",
    err_version: "version",
    err_wrong_type: "type",
    err_missing: "missing",
    err_stream_as_tokens: "format",
    err_stream_gap: "stream",
  };
  for (const v of invalid) {
    test(`${v.name}: the codec refuses it or leaves it to the module, never crashes`, () => {
      const input = read(join(VECTORS, v.input));
      assert.equal(sha256(input), v.sha256);
      let err: unknown;
      try {
        if (v.kind === "tokens") decodePayload(input);
        else decodeStream(input);
      } catch (e) {
        err = e;
      }
      const want = codecCodes[v.name];
      if (want === undefined) return; // range, too_long, duplicate, model_mismatch: the module's
      assert.ok(err instanceof FlexTokError, `want a FlexTokError, got ${String(err)}`);
      assert.equal(err.code, want);
      assert.equal(err.code, v.error!.code);
      if (["err_version", "err_wrong_type", "err_missing", "err_stream_as_tokens", "err_stream_gap", "err_not_map"].includes(v.name)) {
        assert.equal(err.field ?? "", v.error!.field);
      }
    });
  }
});

describe("payload vectors: the wasm module's decode op", () => {
  let ft: FlexTok;
  let model: Model;
  before(async () => {
    ensureWasm();
    ft = await initialize({ wasmPath: WASM, wasmExecPath: WASM_EXEC });
    const c1 = c1Files();
    model = await ft.openModel(c1.weights, { config: c1.config, vaeConfig: c1.vaeConfig, name: "c1" });
  });
  after(() => ft?.close());

  for (const v of invalid.filter((v) => v.kind === "tokens")) {
    test(`${v.name}: refused with code ${v.error!.code}, field ${JSON.stringify(v.error!.field)}`, async () => {
      await assert.rejects(model.decode(read(join(VECTORS, v.input)), { steps: 1 }), (e: unknown) => {
        assert.ok(e instanceof FlexTokError);
        assert.equal(e.code, v.error!.code);
        assert.equal(e.field ?? "", v.error!.field); // the service leaves out an empty field
        assert.equal(e.op, "decode");
        assert.match(e.message, /^flextok\/(payload|service)/);
        return true;
      });
    });
  }
  for (const v of valid.filter((v) => v.kind === "tokens")) {
    test(`${v.name}: valid, but another model's: model_mismatch`, async () => {
      await assert.rejects(model.decode(read(join(VECTORS, v.input))), (e: unknown) => {
        assert.ok(e instanceof FlexTokError);
        assert.ok(e.code === "model_mismatch" || e.code === "unsupported", e.code);
        return true;
      });
    });
  }
  test("stream vectors: stream_open refuses another model's header", async () => {
    const s = decodeStream(read(join(VECTORS, "stream_32.msgpack")));
    await assert.rejects(model.openStream(encodeStreamHeader(s.header)), { code: "model_mismatch" });
  });
});
