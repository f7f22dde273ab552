// Package web holds the static files of the progressive-decoding demo page that
// `flextok serve` serves: static/index.html, static/demo.js and static/demo.css (committed),
// and static/dist/ (not committed: `make demo` copies the @flextok/sdk browser modules,
// flextok.wasm, wasm_exec.js and @msgpack/msgpack's ES modules there from bindings/dist/).
//
// The whole static directory is embedded, so a binary built without `make demo` still
// compiles; it serves the page but not the module, and Assets reports what is missing.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// Static returns the demo's files, rooted at static/ (index.html at the top).
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // "static" is a valid path
	}
	return sub
}

// Required are the module files the page cannot run without, relative to Static.
var Required = []string{"dist/browser.js", "dist/worker.js", "dist/flextok.wasm", "dist/wasm_exec.js", "dist/msgpack/index.mjs"}

// Missing lists the Required files that are not embedded (all of them when the binary was
// built without `make demo`).
func Missing() []string {
	var out []string
	for _, name := range Required {
		if _, err := fs.Stat(Static(), name); err != nil {
			out = append(out, name)
		}
	}
	return out
}
