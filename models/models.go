package models

import (
	"embed"
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/model"
)

//go:embed default/model.safetensors default/config.json default/vae/config.json default/labels.json
var files embed.FS

// Files are the bytes of an official-format checkpoint directory. The default model's name
// ("flextok-sdk-shapes32") and decode hints (10 Euler steps of plain CFG with scale 1.5: on
// held-out images they match or beat the official README's 20 steps of APG 7.5 at half the
// cost, MODEL_CARD.md) are the "name" and "decode_hints" keys of its config.json, which every
// surface (Go, CLI, WebAssembly, TypeScript) reads from there.
type Files struct {
	Weights   []byte // model.safetensors
	Config    []byte // config.json
	VAEConfig []byte // vae/config.json
	Labels    []byte // labels.json: class names of the training data
}

// Default returns the embedded default model's files (shared, read-only: do not modify).
func Default() Files {
	read := func(name string) []byte {
		b, err := files.ReadFile(name)
		if err != nil {
			panic(fmt.Sprintf("flextok/models: embedded %s missing: %v", name, err)) // a build error
		}
		return b
	}
	return Files{
		Weights:   read("default/model.safetensors"),
		Config:    read("default/config.json"),
		VAEConfig: read("default/vae/config.json"),
		Labels:    read("default/labels.json"),
	}
}

// Model loads the files as a checkpoint (model.LoadBytes).
func (f Files) Model() (*model.Model, error) {
	return model.LoadBytes(f.Weights, f.Config, f.VAEConfig)
}

// LoadDefault builds the pure-Go engine of the embedded default model in one call; its
// payloads carry the model's name and decode hints. engine.DefaultOptions() suits servers,
// engine.Options{} gives the bits that every platform reproduces.
func LoadDefault(o engine.Options) (*engine.Engine, error) {
	d := Default()
	e, err := engine.LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		return nil, fmt.Errorf("flextok/models: the embedded default model: %w", err)
	}
	return e, nil
}
