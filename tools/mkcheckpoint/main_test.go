package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

const official = "../../conformance/testdata/official/"

// The sin-cos tables equal the ones the official code built (c1 is f32 and keeps them as built).
func TestSinCosMatchesOfficial(t *testing.T) {
	m, err := model.LoadFile(official + "c1_w32_zero_e2")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Weights.Close()
	for _, tt := range m.Config.ExpectedTensors() {
		if filepath.Ext(tt.Name) != ".posembs" || len(tt.Shape) != 4 || tt.Shape[1] == 1 { // learned 1-D tables are [1,1,W,R]
			continue
		}
		want, err := m.Tensor(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(want))
		sinCos(got, tt.Shape[1], tt.Shape[2])
		if d := tensor.MaxAbsDiff(got, want); d > 1e-6 {
			t.Errorf("%s: max |diff| %g", tt.Name, d)
		}
	}
}

// metadata() gives the official __metadata__ strings from the official config.json.
func TestMetadataMatchesOfficial(t *testing.T) {
	for _, c := range []string{"c1_w32_zero_e2", "c2_w64_learned_t1", "c3_bf16_w48_e1_d2"} {
		cfg, err := os.ReadFile(official + c + "/config.json")
		if err != nil {
			t.Fatal(err)
		}
		meta, err := metadata(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.LoadFile(official + c)
		if err != nil {
			t.Fatal(err)
		}
		if len(meta) != len(m.Weights.Metadata()) {
			t.Errorf("%s: %d entries, official %d", c, len(meta), len(m.Weights.Metadata()))
		}
		for _, e := range meta {
			if want, _ := m.Weights.MetadataValue(e.key); e.value != want {
				t.Errorf("%s: %s:\n got %s\nwant %s", c, e.key, e.value, want)
			}
		}
		m.Weights.Close()
	}
}

// A tiny checkpoint loads (config from the metadata, equal to config.json's), and
// encodes and decodes to finite values, in f32 and bf16.
func TestTinyRoundTrip(t *testing.T) {
	for _, dt := range []string{"f32", "bf16"} {
		dir := filepath.Join(t.TempDir(), "tiny")
		st, err := Make(dir, "tiny", 7, dt)
		if err != nil {
			t.Fatal(err)
		}
		if st.ConfigSource != "metadata" {
			t.Fatalf("config from %s", st.ConfigSource)
		}
		e, err := engine.Load(dir, engine.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		H, W := e.ImageSize()
		img := make([]float32, 3*H*W)
		for i := range img {
			img[i] = float32(math.Sin(float64(i) * 0.37))
		}
		ctx := context.Background()
		ids, err := e.EncodeTensor(ctx, tensor.Tensor{Shape: []int{1, 3, H, W}, Data: img})
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[uint32]bool{}
		for _, id := range ids[0] {
			distinct[id] = true
		}
		if len(distinct) < 2 {
			t.Errorf("%s: all %d ids equal (%d): activations collapsed", dt, len(ids[0]), ids[0][0])
		}
		p := &payload.Payload{Model: e.Identity(), Image: payload.Image{Height: H, Width: W}, IDs: ids[0]}
		o := engine.DecodeOptions{Steps: 2, Guidance: 7.5, APG: true}
		out, err := e.Decode(ctx, p, o)
		if err != nil {
			t.Fatal(err)
		}
		var ss float64
		for _, v := range out.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: decoded image has %v", dt, v)
			}
			ss += float64(v) * float64(v)
		}
		rms := math.Sqrt(ss / float64(len(out.Data)))
		if rms == 0 || rms > 100 {
			t.Errorf("%s: decoded image rms %g", dt, rms)
		}
		t.Logf("%s: %d params, %d bytes, %d distinct ids, image rms %.3f", dt, st.Params, st.Bytes, len(distinct), rms)
	}
}

// The variant fixtures in conformance/testdata/variants are what this command makes (their
// README has the command line): regenerate each and compare the bytes.
func TestVariantFixtures(t *testing.T) {
	for v := range variants {
		dir := filepath.Join(t.TempDir(), v)
		if _, err := MakeVariant(dir, "micro", v, 1, "bf16"); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		for _, f := range []string{"model.safetensors", "config.json", "vae/config.json"} {
			got, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("../../conformance/testdata/variants", v, f))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s differs from a fresh -variant %s (regenerate it: see its README)", v, f, v)
			}
		}
	}
}
