// Package webpkgtest builds web model package manifests for tests of the packages that open
// them (sdk/service, wasm/js).
package webpkgtest

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// Manifest is the manifest of a web model package of e whose files are placeholders (a test's
// graph runner runs e's own networks, engine.Engine.Graphs), with the fp16 decoder if fp16.
func Manifest(t testing.TB, e *engine.Engine, fp16 bool) []byte {
	t.Helper()
	gm, _, err := e.Graphs()
	if err != nil {
		t.Fatal(err)
	}
	id := gm.Identity
	z := gm.Sizes
	m := &webpkg.Manifest{
		Format: webpkg.Format, Version: webpkg.Version, Exporter: "test", Opset: 17,
		Model: webpkg.Model{Name: id.Name, Digest: hex.EncodeToString(id.Digest[:]), Levels: id.Levels, MaxTokens: id.MaxTokens},
		Sizes: webpkg.Sizes{Height: z.Height, Width: z.Width, C: z.C, H: z.H, W: z.W, R: z.R, D: len(id.Levels), FP16: fp16},
		Graphs: map[string]webpkg.Graph{
			webpkg.RoleDecoder:    {Graph: "decoder.onnx", Data: "decoder.onnx.data", Precision: webpkg.FP32},
			webpkg.RoleVAEDecoder: {Graph: "vae_decoder.onnx", Data: "vae_decoder.onnx.data", Precision: webpkg.FP32},
		},
		Files:       map[string]webpkg.File{},
		DecodeHints: webpkg.HintsFrom(gm.Hints),
	}
	if fp16 {
		m.Graphs[webpkg.RoleDecoderFP16] = webpkg.Graph{Graph: "decoder_fp16.onnx", Data: "decoder_fp16.onnx.data", Precision: webpkg.FP16}
	}
	for _, g := range m.Graphs {
		for _, name := range []string{g.Graph, g.Data} {
			f, err := webpkg.Split(name, bytes.NewReader([]byte(name)), int64(len(name)), webpkg.MinChunkSize, func(string, []byte) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			m.Files[name] = f
		}
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
