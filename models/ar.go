package models

import (
	"embed"
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// The default AR model is a separate embed.FS from the tokenizer's, so that a program that
// never calls DefaultAR (the decode-only wasm module) does not link its 17 MB: the linker
// drops an unreferenced variable and the files with it (TestDefaultARNotLinked).
//
//go:embed default/ar/config.json default/ar/model.safetensors
var arFiles embed.FS

// ARFiles are the bytes of an AR checkpoint directory (docs/ar-checkpoint.md).
type ARFiles struct {
	Config  []byte // config.json: architecture, classes, the tokenizer it was made for, sampling hints
	Weights []byte // model.safetensors (BF16)
}

// DefaultAR returns the embedded default AR model's files (shared, read-only: do not
// modify): a class-conditional generator of the default tokenizer's tokens, trained for it
// (its config names the tokenizer's content digest), with the classes of
// default/labels.json and the sampling hints that suit it.
func DefaultAR() ARFiles {
	read := func(name string) []byte {
		b, err := arFiles.ReadFile(name)
		if err != nil {
			panic(fmt.Sprintf("flextok/models: embedded %s missing: %v", name, err)) // a build error
		}
		return b
	}
	return ARFiles{Config: read("default/ar/config.json"), Weights: read("default/ar/model.safetensors")}
}

// Model loads the files as an AR model (ar.LoadBytes).
func (f ARFiles) Model() (*ar.Model, error) {
	return ar.LoadBytes(f.Config, f.Weights)
}

// DefaultGenerator builds a generator of the embedded default AR model for tok, which must be
// the default tokenizer (LoadDefault's engine, or the same checkpoint in ONNX Runtime: an
// ar.Tokenizer of another model is refused with ar.ErrTokenizer). exec selects the kernels:
// the zero value is the portable path (the same ids for the same seed everywhere).
func DefaultGenerator(tok ar.Tokenizer, exec nn.Options) (*ar.Generator, error) {
	m, err := DefaultAR().Model()
	if err != nil {
		return nil, fmt.Errorf("flextok/models: the embedded default AR model: %w", err)
	}
	g, err := ar.NewGenerator(m, ar.Options{Tokenizer: tok, Exec: exec})
	if err != nil {
		return nil, fmt.Errorf("flextok/models: the embedded default AR model: %w", err)
	}
	return g, nil
}

// LoadDefaultGenerator loads the embedded default tokenizer (LoadDefault with o) and the
// default AR model beside it in one call: the generator makes payloads of the tokenizer,
// which the returned engine decodes. o's Fast and Threads select the AR model's kernels
// too: engine.Options{} gives the ids and images that every platform reproduces. Close the
// engine when done.
func LoadDefaultGenerator(o engine.Options) (*ar.Generator, *engine.Engine, error) {
	e, err := LoadDefault(o)
	if err != nil {
		return nil, nil, err
	}
	g, err := DefaultGenerator(e, nn.Options{Fast: o.Fast, Threads: o.Threads})
	if err != nil {
		e.Close()
		return nil, nil, err
	}
	return g, e, nil
}
