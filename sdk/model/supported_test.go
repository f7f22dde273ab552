package model_test

import (
	"errors"
	"strings"
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

// TestPartReader: checked reads against the config's table; every problem lands in one error.
func TestPartReader(t *testing.T) {
	d := models.Default()
	m, err := model.LoadBytes(d.Weights, d.Config, d.VAEConfig)
	if err != nil {
		t.Fatal(err)
	}
	r := model.NewPartReader(m.Config, "decoder", m)
	var name string
	var n int
	for _, tn := range m.Config.ExpectedTensors() {
		if tn.Part == "decoder" {
			name, n = tn.Name, 1
			for _, s := range tn.Shape {
				n *= s
			}
			break
		}
	}
	if v := r.Tensor(name, n); len(v) != n || r.Err() != nil {
		t.Fatalf("%s: %d values, %v", name, len(v), r.Err())
	}
	r.Tensor("decoder.no.such.weight", 3)
	r.Tensor(name, n+1)
	r.Module("decoder.", m.Config.Decoder.Modules, "NoSuchClass")
	err = r.Err()
	for _, want := range []string{"not in the config's weight table", "want", "no NoSuchClass module"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
