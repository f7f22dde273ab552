// Package webpkg defines the browser model package (docs/web-package.md): the directory that
// `flextok export-web` writes and `flextok serve` serves, from which a browser downloads the
// ONNX graphs that onnxruntime-web runs.
//
// A package is manifest.json and the chunks of its files. The manifest (format "flextok-web",
// version 1) names the model the graphs were exported from (its payload identity and decode
// hints), the graphs' fixed sizes, each graph's files and precision, and for every file its
// size and SHA-256 with the list of chunks (name, size, SHA-256) that concatenate to it. A
// file no larger than the chunk size is its own single chunk; a larger one is split into
// <file>.part000, <file>.part001, ... so that HTTP caches keep each chunk and an interrupted
// download resumes chunk by chunk.
//
// Parse reads a manifest strictly: every failure is an *Error naming the field and wrapping
// ErrInvalid or ErrUnsupported. Split cuts a file into chunks and describes it; Manifest.Marshal
// writes the canonical JSON. The package is pure Go and builds for GOOS=js and wasip1.
package webpkg
