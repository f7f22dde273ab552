package engine

import (
	"encoding/binary"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
)

// TestCorruptWeights: a NaN or infinity anywhere in the weights is refused at load, naming the
// tensor, whichever part holds it.
func TestCorruptWeights(t *testing.T) {
	dir := "../../conformance/testdata/official/c1_w32_zero_e2/"
	b, err := os.ReadFile(dir + "model.safetensors")
	if err != nil {
		t.Skip("no reference checkpoint")
	}
	cfg, _ := os.ReadFile(dir + "config.json")
	vae, _ := os.ReadFile(dir + "vae/config.json")
	f, err := safetensors.OpenBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBytes(b, cfg, vae, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"decoder.module_dict.dec_transformer.blocks.0.attn.wq.weight",
		"encoder.module_dict.enc_to_latents.proj.weight",
		"decoder.module_dict.dec_nested_dropout.dropout_mask_token",
		"vae.vae.decoder.conv_out.weight",
	} {
		info, ok := f.Info(name)
		if !ok {
			t.Fatalf("no tensor %s", name)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			c := append([]byte(nil), b...)
			off := 8 + int(f.HeaderSize()) + int(info.Begin)
			binary.LittleEndian.PutUint32(c[off:], math.Float32bits(bad))
			_, err := LoadBytes(c, cfg, vae, Options{})
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(name, "vae.vae.")) {
				t.Errorf("%s = %v: err = %v", name, bad, err)
			}
		}
	}
}
