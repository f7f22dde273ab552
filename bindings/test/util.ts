// Shared by the tests: paths, the module build, the c1 checkpoint.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests run from bindings/dist/test/). */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BINDINGS = join(ROOT, "bindings");
/** Where `make bindings` puts the module next to the compiled package. */
export const PKG_DIST = join(BINDINGS, "dist", "src");
export const WASM = join(PKG_DIST, "flextok.wasm");
export const WASM_EXEC = join(PKG_DIST, "wasm_exec.js");
export const C1 = join(ROOT, "conformance", "testdata", "official", "c1_w32_zero_e2");
export const VECTORS = join(ROOT, "conformance", "testdata", "payload");

/**
 * Builds the GOOS=js module into bindings/dist/src unless it is there (FLEXTOK_REBUILD=1:
 * always; go's build cache makes that cheap when nothing changed).
 */
export function ensureWasm(): void {
  if (existsSync(WASM) && existsSync(WASM_EXEC) && process.env.FLEXTOK_REBUILD !== "1") return;
  mkdirSync(PKG_DIST, { recursive: true });
  const go = process.env.GO ?? "go";
  execFileSync(go, ["build", "-trimpath", "-o", WASM, "./wasm/js"], {
    cwd: ROOT,
    env: { ...process.env, GOOS: "js", GOARCH: "wasm" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const goroot = execFileSync(go, ["env", "GOROOT"], { cwd: ROOT }).toString().trim();
  copyFileSync(join(goroot, "lib", "wasm", "wasm_exec.js"), WASM_EXEC);
}

/**
 * Copies the default AR model's files (models/default/ar) into bindings/dist/src/ar, where
 * initialize() finds them, unless `make bindings` put them there.
 */
export function ensureDefaultAR(): void {
  const dir = join(PKG_DIST, "ar");
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors"]) {
    if (!existsSync(join(dir, f))) copyFileSync(join(ROOT, "models", "default", "ar", f), join(dir, f));
  }
}

export function read(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

export function sha256(b: Uint8Array | undefined): string {
  if (!b) throw new Error("no bytes");
  return createHash("sha256").update(b).digest("hex");
}

export function c1Files(): { weights: Uint8Array; config: Uint8Array; vaeConfig: Uint8Array } {
  return {
    weights: read(join(C1, "model.safetensors")),
    config: read(join(C1, "config.json")),
    vaeConfig: read(join(C1, "vae", "config.json")),
  };
}

/** A 24-bit BMP with the pixels of conformance's scriptImage (R=5x, G=3y, B=2(x+y)). */
export function scriptBMP(w = 40, h = 36): Uint8Array {
  const row = (w * 3 + 3) & ~3;
  const size = 54 + row * h;
  const b = Buffer.alloc(size);
  b.write("BM");
  b.writeUInt32LE(size, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = 54 + (h - 1 - y) * row + 3 * x;
      b[o] = (x + y) * 2;
      b[o + 1] = y * 3;
      b[o + 2] = x * 5;
    }
  return new Uint8Array(b);
}
