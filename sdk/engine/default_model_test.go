package engine

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// defaultFiles reads the default model from models/default (these tests are inside package
// engine, which package models imports: they cannot import it).
func defaultFiles(t testing.TB) (d struct{ Weights, Config, VAEConfig []byte }) {
	t.Helper()
	for _, f := range []struct {
		dst  *[]byte
		name string
	}{{&d.Weights, "model.safetensors"}, {&d.Config, "config.json"}, {&d.VAEConfig, "vae/config.json"}} {
		b, err := os.ReadFile("../../models/default/" + f.name)
		if err != nil {
			t.Fatal(err)
		}
		*f.dst = b
	}
	return d
}

func loadDefault(t *testing.T) *Engine {
	t.Helper()
	d := defaultFiles(t)
	e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestDefaultModelAgreesWithRecipe: the Go engine and the PyTorch training recipe agree on the default
// model (conformance/testdata/default, made by train/make_default_reference.py): token ids
// exactly, the decoded image (4 CFG steps from the recipe's noise) within the engine's bounds.
func TestDefaultModelAgreesWithRecipe(t *testing.T) {
	ref, err := safetensors.OpenFile("../../conformance/testdata/default/reference.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	read := func(name string) []float32 {
		v, err := ref.ReadFloat32(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	e := loadDefault(t)
	H, W := e.ImageSize()
	ids := encodeAndCheckIDs(t, e, ref, "recipe")
	B := len(ids)
	ks, _ := ref.ReadInt64("keep_k")
	noise, decoded := read("noise"), read("decoded")
	C := len(noise) / B
	for i := 0; i < B; i++ {
		n := tensor.Tensor{Shape: e.geo.Latent(e.ImageSize()), Data: noise[i*C : (i+1)*C]}
		p := &payload.Payload{Model: e.Identity(), Image: payload.Image{Height: H, Width: W}, IDs: ids[i]}
		out, err := e.Decode(context.Background(), p, DecodeOptions{K: int(ks[i]), Steps: 4, Guidance: 2, Noise: &n})
		if err != nil {
			t.Fatal(err)
		}
		w := decoded[i*3*H*W : (i+1)*3*H*W]
		var num, den float64
		for j := range w {
			d := float64(out.Data[j]) - float64(w[j])
			num += d * d
			den += float64(w[j]) * float64(w[j])
		}
		// Bound: NMSE 1e-10 (1e-5 relative), the engine's per-stage bound against PyTorch
		// (docs/conformance.md); the recipe's modules match the official code (train/verify_reference.py).
		if nm := num / den; !(nm <= 1e-10) || math.IsNaN(nm) {
			t.Fatalf("image %d (k=%d): NMSE %.3g against the recipe, bound 1e-10", i, ks[i], nm)
		} else {
			t.Logf("image %d (k=%d): NMSE %.3g", i, ks[i], nm)
		}
	}
}
