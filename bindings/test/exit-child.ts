// Run by node.test.ts as its own process: node exit-child.js MODE WASM WASM_EXEC. It must exit
// by itself with code 0. idle: a FlexTok left open after a call; pending: a decode still
// running when the script's code ends (its result must still come); closed: close() called.
import { initialize } from "../src/node.js";
import { c1Files, scriptBMP } from "./util.js";

const [mode, wasmPath, wasmExecPath] = process.argv.slice(2);
const ft = await initialize({ wasmPath: wasmPath!, wasmExecPath: wasmExecPath! });
const c1 = c1Files();
const model = await ft.openModel(c1.weights, { config: c1.config, vaeConfig: c1.vaeConfig });
const { payload } = await model.encode(scriptBMP(), { k: 4 });
if (mode === "pending") {
  void model.decode(payload, { steps: 2 }).then((img) => console.log(`decoded ${img.steps} steps`));
} else {
  await model.decode(payload, { steps: 1 });
  if (mode === "closed") ft.close();
  console.log("done");
}
