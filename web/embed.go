package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

//go:embed samples
var samples embed.FS

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

// Samples returns the demo's sample images: eight held-out images of the default model's
// shapes (copies of testdata/heldout's, which the model never trained on), so that
// `flextok serve` has samples wherever it runs.
func Samples() fs.FS {
	sub, err := fs.Sub(samples, "samples")
	if err != nil {
		panic(err) // "samples" is a valid path
	}
	return sub
}
