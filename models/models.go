package models

import (
	"embed"
	"fmt"
)

//go:embed default/model.safetensors default/config.json default/vae/config.json default/labels.json
var files embed.FS

// DefaultName is the name the default model carries in payloads.
const DefaultName = "flextok-sdk-shapes32"

// Decode settings that suit the default model (MODEL_CARD.md: on held-out images they match or
// beat the official README's 20 steps of APG 7.5 at half the cost): 10 Euler steps of plain CFG
// with scale 1.5, about 1 GFLOP per image.
const (
	DefaultSteps    = 10
	DefaultGuidance = 1.5
)

// Files are the bytes of an official-format checkpoint directory.
type Files struct {
	Name      string
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
		Name:      DefaultName,
		Weights:   read("default/model.safetensors"),
		Config:    read("default/config.json"),
		VAEConfig: read("default/vae/config.json"),
		Labels:    read("default/labels.json"),
	}
}
