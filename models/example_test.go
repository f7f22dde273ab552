package models_test

import (
	"context"
	"fmt"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
)

// Generate images of a class with the embedded models: the AR model makes token payloads of
// the default tokenizer, token by token, and the tokenizer decodes them.
func ExampleLoadDefaultGenerator() {
	g, tok, err := models.LoadDefaultGenerator(engine.Options{}) // portable: same ids everywhere
	if err != nil {
		panic(err)
	}
	defer tok.Close()
	ctx := context.Background()
	s := ar.DefaultSampling()
	s.CFG = 2 // or the config's sampling_hints: g.Model().Cfg.Hints
	ps, err := g.Generate(ctx, ar.Request{
		Classes:  []int{5, 5}, // two stars (g.Model().Cfg.Classes names them)
		K:        8,           // tokens per sample: coarse images; 32 for the finest
		Sampling: s,
		Seed:     1,
		OnToken:  func(n int, ids []uint32) error { return nil }, // each token of every sample, as made
	})
	if err != nil {
		panic(err)
	}
	img, err := tok.DecodeImage(ctx, ps[0], engine.DecodeOptions{Steps: 2})
	if err != nil {
		panic(err)
	}
	fmt.Println(g.Model().Cfg.Classes[*ps[0].Cond.Class], ps[0].Count(), "tokens,", img.Bounds().Dx(), "x", img.Bounds().Dy())
	// Output: star 8 tokens, 32 x 32
}
