package ar

import (
	"context"
	"errors"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// TestDefaultTokenizer generates with a random-weight AR model made for the default tokenizer
// (its identity in the config) and decodes the payloads with the default tokenizer: generated
// payloads are ordinary payloads. The tiny conformance model is refused beside it.
func TestDefaultTokenizer(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and runs the default tokenizer")
	}
	eng, err := engine.Load("../../models/default", engine.Options{})
	if err != nil {
		t.Skip("default model:", err)
	}
	tiny, err := Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewGenerator(tiny, Options{Tokenizer: eng}); !errors.Is(err, ErrTokenizer) {
		t.Fatalf("tiny model beside the default tokenizer: %v", err)
	}
	id := eng.Identity()
	c := &Config{Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8, NormEps: 1e-5, RopeBase: 10000,
		BlockSize: id.MaxTokens, NumClasses: 8, ClassDropout: 0.1, VocabSize: 64000,
		Tokenizer: TokenizerSpec{Digest: id.Digest, Levels: id.Levels, CodebookSize: 64000, Registers: id.MaxTokens}}
	c.FFNHidden = FFNHiddenRule(c.Dim, c.MultipleOf, nil)
	m, err := New(c, RandomWeights(c, 3))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(m, Options{Tokenizer: eng, Exec: nn.Options{Fast: true}})
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSampling()
	s.CFG = 2
	ps, err := g.Generate(context.Background(), Request{Classes: []int{3}, K: 4, Sampling: s, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ps[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	img, err := eng.DecodeImage(context.Background(), ps[0], engine.DecodeOptions{Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("payload %d bytes, decoded %v", len(b), img.Bounds())
}
