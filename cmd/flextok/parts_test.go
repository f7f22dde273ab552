package main

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// nanCheckpoint copies the official reference checkpoint c1_w32_zero_e2 to a temporary
// directory with a NaN at the start of tensor name.
func nanCheckpoint(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "conformance", "testdata", "official", "c1_w32_zero_e2")
	dst := t.TempDir()
	for _, f := range []string{"model.safetensors", "config.json", filepath.Join("vae", "config.json")} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Skip("no reference checkpoint")
		}
		if f == "model.safetensors" {
			st, err := safetensors.OpenBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			info, ok := st.Info(name)
			if !ok {
				t.Fatalf("no tensor %s", name)
			}
			binary.LittleEndian.PutUint32(b[8+int(st.HeaderSize())+int(info.Begin):], math.Float32bits(float32(math.NaN())))
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestCommandsLoadOneHalf: decode and generate load the decoder only, encode the encoder only
// (engine.Options.Parts): decode works with a checkpoint whose encoder weights hold a NaN,
// encode with one whose decoder weights do, and each of these fails the other command.
func TestCommandsLoadOneHalf(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join("..", "..", "testdata", "heldout", "023_star.png")

	badEnc := nanCheckpoint(t, "encoder.module_dict.enc_to_latents.proj.weight")
	e, err := engine.Load(badEnc, engine.Options{Parts: engine.DecodeOnly})
	if err != nil {
		t.Fatal(err)
	}
	h, w := e.ImageSize()
	p := &payload.Payload{Model: e.Identity(), Image: payload.Image{Height: h, Width: w}, IDs: make([]uint32, e.MaxTokens())}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	pay := filepath.Join(dir, "p.msgpack")
	if err := os.WriteFile(pay, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("decode", "-m", badEnc, "--steps", "2", pay, "-o", filepath.Join(dir, "p.png")); err != nil {
		t.Errorf("decode with a NaN in the encoder: %v: %s", err, out)
	}
	if _, err := run("encode", "-m", badEnc, img, "-o", filepath.Join(dir, "a.msgpack")); err == nil || !strings.Contains(err.Error(), "enc_to_latents") {
		t.Errorf("encode with a NaN in the encoder: err = %v", err)
	}

	badDec := nanCheckpoint(t, "vae.vae.decoder.conv_out.weight")
	if out, err := run("encode", "-m", badDec, img, "-o", filepath.Join(dir, "b.msgpack")); err != nil {
		t.Errorf("encode with a NaN in the VAE decoder: %v: %s", err, out)
	}
	if _, err := run("decode", "-m", badDec, "--steps", "2", filepath.Join(dir, "b.msgpack"), "-o", filepath.Join(dir, "b.png")); err == nil || !strings.Contains(err.Error(), "conv_out") {
		t.Errorf("decode with a NaN in the VAE decoder: err = %v", err)
	}
}
