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
)

// Seed is the seed of the fixture's random weights.
const Seed = 20261207

// Classes are the fixture's class names (the default model's training classes are shapes; the
// fixture's are arbitrary).
var Classes = []string{"circle", "square", "triangle"}

// Config is the fixture's config: width 8, 1 layer, 2 heads over 1 KV head, the default
// tokenizer's identity and vocabulary, 3 classes and the null row (CFG works).
func Config() (*ar.Config, error) {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	id := e.Identity()
	return &ar.Config{
		Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8, FFNHidden: ar.FFNHiddenRule(8, 8, nil),
		NormEps: 1e-5, RopeBase: 10000, BlockSize: id.MaxTokens, NumClasses: len(Classes), ClassDropout: 0.1,
		VocabSize: id.CodebookSize(), Name: "conformance-random-ar", Classes: Classes,
		Tokenizer: ar.TokenizerSpec{Name: id.Name, Digest: id.Digest, Levels: id.Levels,
			CodebookSize: id.CodebookSize(), Registers: id.MaxTokens},
	}, nil
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
