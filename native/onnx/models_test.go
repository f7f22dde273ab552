package onnx

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// testModel is a checkpoint the graphs are checked on.
type testModel struct {
	name string
	m    *model.Model
}

// testModels are the embedded default model, the official reference checkpoints
// (conformance/testdata/official: random weights shaped like the released configs, f32 and bf16,
// zero and learned null conditions, adaLN expansions 1 and 2) and the variants of
// tools/mkcheckpoint (conformance/testdata/variants: trunk biases, a plain MLP, no QK-norm, a
// causal_last decoder, an odd frequency embedding size), so that every exported graph runs
// each config branch against the engine.
func testModels(t *testing.T) []testModel {
	t.Helper()
	d := models.Default()
	m, err := model.LoadBytes(d.Weights, d.Config, d.VAEConfig)
	if err != nil {
		t.Fatal(err)
	}
	out := []testModel{{"default", m}}
	for _, set := range []string{"official", "variants"} {
		root := filepath.Join("..", "..", "conformance", "testdata", set)
		ents, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			dir := filepath.Join(root, e.Name())
			if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
				continue
			}
			m, err := model.LoadFile(dir)
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			t.Cleanup(func() { m.Weights.Close() })
			name := e.Name()
			if set == "variants" {
				name = "variant_" + name
			}
			out = append(out, testModel{name, m})
		}
	}
	return out
}

// errStats returns the NMSE (error energy over signal energy) and the largest absolute error
// relative to the largest reference magnitude.
func errStats(got, want []float32) (nmse, maxRel float64) {
	maxRef := 0.0
	for _, w := range want {
		maxRef = math.Max(maxRef, math.Abs(float64(w)))
	}
	return tensor.NMSE(got, want), tensor.MaxAbsDiff(got, want) / maxRef
}
