// Runs requests through the GOOS=js module under Node, for the conformance suite
// (conformance/service_test.go) and for scripts:
//
//   node wasm/js/run.mjs <flextok.wasm> <wasm_exec.js> <requests> <responses>
//
// <requests> holds length-prefixed msgpack requests (4-byte little-endian length, then the
// bytes), in order, each after the previous one's response (handle returns a Promise); the
// responses are written the same way to <responses>. Requests are sent as they are, so this
// script needs no msgpack library.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [wasmPath, execPath, inPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node run.mjs <flextok.wasm> <wasm_exec.js> <requests> <responses>");
  process.exit(2);
}
await import(pathToFileURL(execPath).href); // defines globalThis.Go
const go = new Go();
const { instance } = await WebAssembly.instantiate(readFileSync(wasmPath), go.importObject);
go.run(instance); // returns once main waits in select{}, with globalThis.flextok set
if (typeof globalThis.flextok?.handle !== "function") {
  console.error("flextok/wasm/js: the module did not set globalThis.flextok.handle");
  process.exit(1);
}

const input = readFileSync(inPath);
const out = [];
for (let off = 0; off < input.length; ) {
  const n = input.readUInt32LE(off);
  const req = new Uint8Array(input.buffer, input.byteOffset + off + 4, n);
  off += 4 + n;
  const resp = await globalThis.flextok.handle(req);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(resp.length);
  out.push(len, Buffer.from(resp.buffer, resp.byteOffset, resp.length));
}
writeFileSync(outPath, Buffer.concat(out));
process.exit(0);
