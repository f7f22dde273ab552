package model_test

import (
	"errors"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// TestSupported: the default model's layout is supported; each unsupported variant is refused
// with ErrUnsupported.
func TestSupported(t *testing.T) {
	d := models.Default()
	m, err := model.LoadBytes(d.Weights, d.Config, d.VAEConfig)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	R := c.Encoder.RegistersNMax
	if err := c.VAE.Supported(); err != nil {
		t.Fatal(err)
	}
	if err := c.Encoder.Supported(); err != nil {
		t.Fatal(err)
	}
	if err := c.Decoder.Supported(R); err != nil {
		t.Fatal(err)
	}
	vae, enc, dec := c.VAE, c.Encoder, c.Decoder
	vae.NormGroups = 3
	enc.MaskMode = "causal"
	dec.Trunk.AdaLNExpansion = 3
	for what, err := range map[string]error{
		"VAE groups":    vae.Supported(),
		"encoder mask":  enc.Supported(),
		"decoder adaLN": dec.Supported(R),
		"registers":     c.Decoder.Supported(c.Decoder.RegisterPosemb.MaxSizes[0] + 1),
	} {
		if !errors.Is(err, model.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", what, err)
		}
	}
}
