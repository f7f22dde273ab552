// Package arfixture builds the AR test fixture of the conformance suite: a random-weight AR
// checkpoint (docs/ar-checkpoint.md) paired with the embedded default tokenizer (its identity,
// its 64,000-code vocabulary), so that every front end of sdk/service — native Go, the
// GOOS=wasip1 module under wazero, the GOOS=js module and the TypeScript package under Node —
// can generate with it and be compared bit for bit.
//
// The checkpoint is built, not committed: with 64,000 codes the embedding and head alone are
// 2 MB at width 8 in BF16, over the repository's budget for test data. Build is deterministic
// (ar.RandomWeights with a fixed seed, BF16 rounding, the canonical config.json writer), and
// conformance's TestARFixture pins the sha256 of both files, so the bytes cannot drift
// unnoticed. `go run ./conformance/arfixture/mkfixture DIR` writes them for the TypeScript
// tests (make bindings does).
package arfixture

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Seed is the seed of the fixture's random weights.
const Seed = 20261207

// Classes are the fixture's class names (the default model's training classes are shapes; the
// fixture's are arbitrary).
var Classes = []string{"circle", "square", "triangle"}

// Shape sizes a random AR model: width, layers, query and key/value heads, and the SwiGLU
// hidden size's multiple (ar.FFNHiddenRule).
type Shape struct{ Dim, Layers, Heads, KVHeads, MultipleOf int }

// ConfigFor is the config of an AR model of shape s made for the tokenizer tok (its digest, FSQ
// levels, codebook and token count), with the named classes and a null class (CFG works).
func ConfigFor(tok payload.Model, s Shape, classes []string) *ar.Config {
	return &ar.Config{
		Dim: s.Dim, Layers: s.Layers, Heads: s.Heads, KVHeads: s.KVHeads, MultipleOf: s.MultipleOf,
		FFNHidden: ar.FFNHiddenRule(s.Dim, s.MultipleOf, nil),
		NormEps:   1e-5, RopeBase: 10000, BlockSize: tok.MaxTokens, NumClasses: len(classes), ClassDropout: 0.1,
		VocabSize: tok.CodebookSize(), Classes: classes,
		Tokenizer: ar.TokenizerSpec{Digest: tok.Digest, Levels: tok.Levels, CodebookSize: tok.CodebookSize(), Registers: tok.MaxTokens},
	}
}

// RandomForDefault is a random-weight AR model (ar.RandomWeights with seed) of shape s made
// for the embedded default tokenizer, with the named classes: what tests of the generate paths
// (CLI, server, ONNX Runtime) run when no trained AR model is at hand.
func RandomForDefault(s Shape, classes []string, seed uint64) (*ar.Model, error) {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	c := ConfigFor(e.Identity(), s, classes)
	return ar.New(c, ar.RandomWeights(c, seed))
}

// Config is the fixture's config: width 8, 1 layer, 2 heads over 1 KV head, the default
// tokenizer's identity and vocabulary, 3 classes and the null row (CFG works).
func Config() (*ar.Config, error) {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	id := e.Identity()
	c := ConfigFor(id, Shape{Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8}, Classes)
	c.Name, c.Tokenizer.Name = "conformance-random-ar", id.Name
	return c, nil
}

// Write writes config.json and model.safetensors (BF16) into dir.
func Write(dir string) error {
	cfg, err := Config()
	if err != nil {
		return err
	}
	m, err := ar.New(cfg, ar.RandomWeights(cfg, Seed))
	if err != nil {
		return err
	}
	return m.Save(dir, true)
}

// Build returns the fixture's config.json and model.safetensors bytes.
func Build() (config, weights []byte, err error) {
	dir, err := os.MkdirTemp("", "arfixture")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	if err := Write(dir); err != nil {
		return nil, nil, fmt.Errorf("arfixture: %w", err)
	}
	if config, err = os.ReadFile(filepath.Join(dir, "config.json")); err != nil {
		return nil, nil, err
	}
	weights, err = os.ReadFile(filepath.Join(dir, "model.safetensors"))
	return config, weights, err
}

// InterimShape is the shape of the default AR model the recipe trains (docs/ar-checkpoint.md,
// "Size budget"): width 64, 6 layers, 4 heads, SwiGLU multiple 64.
var InterimShape = Shape{Dim: 64, Layers: 6, Heads: 4, KVHeads: 4, MultipleOf: 64}

// WriteInterimDefault writes into dir a random-weight AR checkpoint with exactly the shape,
// classes (models/default/labels.json) and sampling hints of the trained default AR model
// (BF16, about 17 MB): a stand-in for models/default/ar while the trained one is not there, so
// that the embedded-model paths (models.DefaultAR, flextok generate, the wasm modules, the
// demo) build and run. Its images are noise. Never commit its output.
func WriteInterimDefault(dir string, classes []string) error {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		return err
	}
	id := e.Identity()
	e.Close()
	c := ConfigFor(id, InterimShape, classes)
	c.Name, c.Tokenizer.Name = "flextok-sdk-shapes32-ar-interim-random", id.Name
	cfg, t, k, p := 2.0, 1.0, 0, 1.0
	c.Hints = &ar.SamplingHints{CFGScale: &cfg, Temperature: &t, TopK: &k, TopP: &p}
	m, err := ar.New(c, ar.RandomWeights(c, Seed))
	if err != nil {
		return err
	}
	return m.Save(dir, true)
}
