// Package web holds the static files of the progressive-decoding demo page that
// `flextok serve` serves, and its default sample images (samples/): static/index.html,
// static/demo.js and static/demo.css (committed), and static/dist/ (not committed: `make
// demo` copies the @flextok/sdk browser modules, flextok.wasm, wasm_exec.js and
// @msgpack/msgpack's ES modules there from bindings/dist/).
//
// The whole static directory is embedded, so a binary built without `make demo` still
// compiles; it serves the page but not the module, and Assets reports what is missing.
package web
