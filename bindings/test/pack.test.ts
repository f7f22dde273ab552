// The npm package as users get it: `npm pack`, then the tarball installed into an empty
// directory and used from Node by its exported names (the package, ./codec, the lean module),
// as a separate process. Also: what the tarball holds (LICENSE, the modules, no tests), every
// exports target and source map pointing at a file in it, and no "private".
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { after, before, test } from "node:test";
import { BINDINGS, PKG_DIST, ROOT, ensureWasm } from "./util.js";

const npm = process.platform === "win32" ? "npm.cmd" : "npm";
let tmp: string;
let tarball: string;
let files: Set<string>;

before(() => {
  ensureWasm();
  const lean = join(PKG_DIST, "flextok-lean.wasm");
  if (!existsSync(lean)) {
    execFileSync(process.env.GO ?? "go", ["build", "-trimpath", "-tags", "noweights", "-o", lean, "./wasm/js"], {
      cwd: ROOT,
      env: { ...process.env, GOOS: "js", GOARCH: "wasm" },
      stdio: ["ignore", "inherit", "inherit"],
    });
  }
  tmp = mkdtempSync(join(tmpdir(), "flextok-pack-"));
  const out = execFileSync(npm, ["pack", "--json", "--pack-destination", tmp], { cwd: BINDINGS, stdio: ["ignore", "pipe", "inherit"] });
  const [info] = JSON.parse(out.toString()) as { filename: string; files: { path: string }[] }[];
  tarball = join(tmp, info!.filename);
  files = new Set(info!.files.map((f) => f.path));
});
after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

test("the tarball: LICENSE (the repository's), the modules, no tests; publishable", () => {
  for (const f of ["LICENSE", "package.json", "README.md", "dist/src/node.js", "dist/src/node-worker.js", "dist/src/worker.js", "dist/src/browser.js", "dist/src/flextok.wasm", "dist/src/flextok-lean.wasm", "dist/src/wasm_exec.js"]) {
    assert.ok(files.has(f), `the tarball lacks ${f}`);
  }
  assert.deepEqual([...files].filter((f) => f.startsWith("dist/test/")), []);
  assert.ok(readFileSync(join(BINDINGS, "LICENSE")).equals(readFileSync(join(ROOT, "LICENSE"))), "bindings/LICENSE differs from the repository's LICENSE");
  assert.match(readFileSync(join(ROOT, "LICENSE"), "utf8"), /Apache License\s+Version 2\.0, January 2004/);
  const pkg = JSON.parse(readFileSync(join(BINDINGS, "package.json"), "utf8")) as { private?: boolean; license: string };
  assert.equal(pkg.private, undefined);
  assert.equal(pkg.license, "Apache-2.0");
});

test("every exports target and every source map's sources are in the tarball", () => {
  const pkg = JSON.parse(readFileSync(join(BINDINGS, "package.json"), "utf8")) as { exports: Record<string, unknown> };
  const targets: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === "string") targets.push(posix.normalize(v));
    else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(pkg.exports);
  for (const t of targets) assert.ok(files.has(t), `exports names ${t}, which the tarball lacks`);
  const maps = [...files].filter((f) => f.endsWith(".js.map"));
  assert.ok(maps.length > 0);
  for (const m of maps) {
    const { sources } = JSON.parse(readFileSync(join(BINDINGS, m), "utf8")) as { sources: string[] };
    for (const s of sources) {
      const p = posix.normalize(posix.join(posix.dirname(m), s));
      assert.ok(files.has(p), `${m} points at ${p}, which the tarball lacks`);
    }
  }
});

test("installed into an empty directory: the package and its lean module work from Node", () => {
  const app = join(tmp, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "pack-check", private: true, type: "module" }));
  execFileSync(npm, ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball], { cwd: app, stdio: ["ignore", "ignore", "inherit"] });
  writeFileSync(
    join(app, "check.mjs"),
    `import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { initialize } from "@flextok/sdk";
import { decodePayload } from "@flextok/sdk/codec";
const out = {};
for (const name of ["@flextok/sdk/browser", "@flextok/sdk/core", "@flextok/sdk/worker.js", "@flextok/sdk/node-worker.js", "@flextok/sdk/flextok.wasm", "@flextok/sdk/wasm_exec.js", "@flextok/sdk/package.json"]) import.meta.resolve(name);
const lean = fileURLToPath(import.meta.resolve("@flextok/sdk/flextok-lean.wasm"));
const ft = await initialize();
const model = await ft.openDefault();
const { payload } = await model.encode(await readFile(process.argv[2]));
out.count = decodePayload(payload).count;
out.k = (await model.decode(payload, { k: 0, steps: 1 })).k;
const leanFt = await initialize({ wasmPath: lean });
out.version = await leanFt.version();
out.leanDefault = await leanFt.openDefault().then(() => "opened", (e) => e.code);
out.leanFile = lean.slice(lean.indexOf("node_modules"));
console.log(JSON.stringify(out));
`,
  );
  const r = JSON.parse(execFileSync(process.execPath, ["check.mjs", join(ROOT, "testdata", "heldout", "000_cross.png")], { cwd: app, timeout: 120_000 }).toString()) as Record<string, unknown>;
  assert.deepEqual(r, {
    count: 32,
    k: 32,
    version: { protocol: 1, payload: [1, 0] },
    leanDefault: "bad_request",
    leanFile: join("node_modules", "@flextok", "sdk", "dist", "src", "flextok-lean.wasm"),
  });
  assert.ok(existsSync(join(app, "node_modules", "@flextok", "sdk", "LICENSE")));
});
