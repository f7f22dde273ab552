package engine

import (
	"encoding/binary"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
)

// c1Checkpoint reads the official-code reference checkpoint c1 (weights, config, VAE config
// and the parsed safetensors header); the test is skipped where it is absent.
func c1Checkpoint(t *testing.T) (b, cfg, vae []byte, f *safetensors.File) {
	t.Helper()
	dir := "../../conformance/testdata/official/c1_w32_zero_e2/"
	b, err := os.ReadFile(dir + "model.safetensors")
	if err != nil {
		t.Skip("no reference checkpoint")
	}
	cfg, _ = os.ReadFile(dir + "config.json")
	vae, _ = os.ReadFile(dir + "vae/config.json")
	if f, err = safetensors.OpenBytes(b); err != nil {
		t.Fatal(err)
	}
	return b, cfg, vae, f
}

// poisoned returns a copy of the checkpoint b (header f) with the first float32 of each named
// tensor set to v.
func poisoned(t *testing.T, b []byte, f *safetensors.File, v float32, names ...string) []byte {
	t.Helper()
	c := append([]byte(nil), b...)
	for _, name := range names {
		info, ok := f.Info(name)
		if !ok {
			t.Fatalf("no tensor %s", name)
		}
		binary.LittleEndian.PutUint32(c[8+int(f.HeaderSize())+int(info.Begin):], math.Float32bits(v))
	}
	return c
}

// TestCorruptWeights: a NaN or infinity anywhere in the weights is refused at load, naming the
// tensor, whichever part holds it.
func TestCorruptWeights(t *testing.T) {
	b, cfg, vae, f := c1Checkpoint(t)
	if _, err := LoadBytes(b, cfg, vae, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"decoder.module_dict.dec_transformer.blocks.0.attn.wq.weight",
		"encoder.module_dict.enc_to_latents.proj.weight",
		"decoder.module_dict.dec_nested_dropout.dropout_mask_token",
		"vae.vae.decoder.conv_out.weight",
	} {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			c := poisoned(t, b, f, bad, name)
			_, err := LoadBytes(c, cfg, vae, Options{})
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(name, "vae.vae.")) {
				t.Errorf("%s = %v: err = %v", name, bad, err)
			}
		}
	}
}
