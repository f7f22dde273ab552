// fetchModelPackage in headless Chromium with the browser's own Cache API (the Node tests use a
// polyfill): a package of the default model exported by the Go CLI is downloaded into the Cache
// API, a page reload takes every chunk from it, a server dying half way gives "truncated" and the
// retry requests exactly the chunks the cache lacks, and a corrupted chunk gives
// "hash_mismatch". Run by `make test-package-browser` (after `make bindings`; Debian's chromium
// and conformance/browser's pinned playwright-core, as `make test-browser`).
//
//	node bindings/test/package-chromium.mjs --flextok bin/flextok
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const flag = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const flextok = flag("--flextok", join(root, "bin", "flextok"));
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const { chromium } = await import(pathToFileURL(join(root, "conformance", "browser", "node_modules", "playwright-core", "index.mjs")).href);
const dist = join(root, "bindings", "dist", "src");

const tmp = mkdtempSync(join(tmpdir(), "flextok-pkg-chromium-"));
const pkg = join(tmp, "pkg");
execFileSync(flextok, ["export-web", "-o", pkg, "--fp16", "--chunk-size", "256KiB"], { stdio: ["ignore", "inherit", "inherit"] });
const manifest = JSON.parse(readFileSync(join(pkg, "manifest.json"), "utf8"));
const chunks = Object.values(manifest.files).flatMap((f) => f.chunks.map((c) => c.name));
const total = Object.values(manifest.files).reduce((s, f) => s + f.size, 0);

const page = `<!doctype html><meta charset="utf-8"><title>package</title><pre id="out"></pre>
<script type="module" src="/page.js"></script>`;
// The page's script runs the step named in the URL's hash and writes the result as JSON.
const script = `
import { fetchModelPackage, CHUNK_CACHE_NAME } from "/dist/package.js";
import { FlexTokError } from "/dist/errors.js";
const out = {};
try {
  const step = location.hash.slice(1);
  if (step === "clear") out.deleted = await caches.delete(CHUNK_CACHE_NAME);
  else {
    let events = 0, last = 0;
    const p = await fetchModelPackage("/pkg/", { onProgress: (e) => { events++; last = e.bytes; } });
    out.downloaded = p.downloadedBytes; out.cached = p.cachedBytes; out.events = events; out.last = last;
  }
} catch (e) {
  out.code = e instanceof FlexTokError ? e.code : "not a FlexTokError: " + String(e);
  out.message = String(e.message);
}
out.entries = (await (await caches.open(CHUNK_CACHE_NAME)).keys()).length;
document.getElementById("out").textContent = JSON.stringify(out);
`;

const faults = { dieAfter: Infinity, corrupt: "" };
let requested = [];
let served = 0;
const server = createServer((req, res) => {
  const u = new URL(req.url ?? "/", "http://x");
  const send = (type, body) => res.writeHead(200, { "Content-Type": type, "Content-Length": body.length }).end(body);
  if (u.pathname === "/") return send("text/html", Buffer.from(page));
  if (u.pathname === "/page.js") return send("text/javascript", Buffer.from(script));
  if (u.pathname === "/dist/package.js" || u.pathname === "/dist/errors.js") return send("text/javascript", readFileSync(join(dist, u.pathname.slice(6))));
  if (!u.pathname.startsWith("/pkg/")) return void res.writeHead(404).end();
  const name = decodeURIComponent(u.pathname.slice(5));
  if (name !== "manifest.json") requested.push(name);
  let body;
  try {
    if (name.includes("/") || name.includes("..")) throw new Error("path");
    body = readFileSync(join(pkg, name));
  } catch {
    return void res.writeHead(404).end();
  }
  if (name === faults.corrupt) body[body.length >> 1] ^= 0xff;
  if (name !== "manifest.json" && served++ >= faults.dieAfter) {
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": body.length });
    return void res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
  }
  send(name === "manifest.json" ? "application/json" : "application/octet-stream", body);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;

let failed = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed++;
};
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const tab = await browser.newPage();
  const run = async (step) => {
    requested = [];
    served = 0;
    await tab.goto(`${origin}/?${Date.now()}#${step}`);
    await tab.waitForFunction(() => document.getElementById("out")?.textContent !== "", null, { timeout: 120_000 });
    return JSON.parse((await tab.textContent("#out")) ?? "{}");
  };
  await run("clear");
  let r = await run("download");
  check(r.downloaded === total && r.cached === 0 && r.last === total && r.events >= chunks.length, `first download: ${JSON.stringify(r)}, ${total} bytes`);
  check(requested.length === chunks.length && r.entries === chunks.length, `${requested.length} chunk requests, ${r.entries} Cache API entries, ${chunks.length} chunks`);
  r = await run("reload");
  check(r.cached === total && r.downloaded === 0 && requested.length === 0, `after a reload, every chunk from the Cache API: ${JSON.stringify(r)}, ${requested.length} chunk requests`);

  await run("clear");
  faults.dieAfter = 10;
  r = await run("interrupted");
  check(r.code === "truncated" && r.entries > 0 && r.entries < chunks.length, `a server dying half way: ${JSON.stringify(r)}`);
  const kept = r.entries;
  faults.dieAfter = Infinity;
  r = await run("resume");
  const fetched = new Set(requested);
  check(r.downloaded + r.cached === total && fetched.size === chunks.length - kept && requested.length === fetched.size,
    `the retry fetched ${requested.length} chunks (${fetched.size} distinct), the cache lacked ${chunks.length - kept}: ${JSON.stringify(r)}`);

  await run("clear");
  faults.corrupt = chunks[3];
  r = await run("corrupt");
  check(r.code === "hash_mismatch" && r.message.includes(chunks[3]), `a corrupted chunk: ${JSON.stringify(r)}`);
} finally {
  await browser.close();
  server.close();
  rmSync(tmp, { recursive: true, force: true });
}
if (failed) {
  console.error(`${failed} check(s) failed`);
  process.exit(1);
}
console.log("all checks passed");
