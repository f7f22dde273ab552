//go:build cgo

package onnx

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// The VAE subgraphs run in ONNX Runtime (CPU) against sdk/engine's VAE on the same model and
// inputs, and on the official cases also against the PyTorch outputs recorded there.

// vaeBounds are the agreement bounds of the ONNX VAE with the engine (and with PyTorch on the
// official cases): NMSE (sum of squared differences over the sum of squares of the reference)
// and the largest absolute difference relative to the reference's range (max - min).
//
// Measured (ORT 1.24.3 CPU on an AVX-512 AMD EPYC, default session options), worst over the
// images and cases below: NMSE 1.2e-12 (c3_bf16 encode vs PyTorch; 8e-13 at most against the
// engine) and max abs / range 1.0e-6 (default model 128x96 decode vs engine; about 2e-6 to 5e-6
// absolute everywhere). The float32 reductions of ORT (convolutions, GroupNorm statistics,
// attention) against the engine's ordered ones explain it; the bounds leave a margin of 80× and
// 10× for other CPUs and ORT builds.
const (
	vaeNMSEBound   = 1e-10
	vaeMaxAbsBound = 1e-5
)

// vaeModels builds the encoder graph (fixed H×W, symbolic batch) and the decoder graph
// (symbolic batch, height and width) of m.
func vaeModels(t *testing.T, m *model.Model, H, W int) (enc, dec *Graph) {
	t.Helper()
	cfg := m.Config.VAE
	f := cfg.DownsampleFactor()
	enc = NewGraph("vae_encoder")
	lat, err := VAEEncoder(enc, m, enc.Input("images", Float, "n", cfg.InChannels, H, W))
	if err != nil {
		t.Fatal(err)
	}
	enc.Output(lat, "latents", Float, "n", cfg.LatentChannels, H/f, W/f)
	dec = NewGraph("vae_decoder")
	img, err := VAEDecoder(dec, m, dec.Input("latents", Float, "n", cfg.LatentChannels, "h", "w"))
	if err != nil {
		t.Fatal(err)
	}
	dec.Output(img, "images", Float, "n", cfg.OutChannels, "H", "W")
	return enc, dec
}

// runVAE runs one VAE graph on x and checks the output shape.
func runVAE(t *testing.T, g *Graph, in, out string, x tensor.Tensor, want []int) []float32 {
	t.Helper()
	shape := make([]int64, len(x.Shape))
	for i, d := range x.Shape {
		shape[i] = int64(d)
	}
	res, shapes := runGraph(t, g.Model("test"), []input{{name: in, shape: shape, f32: x.Data}}, out)
	if len(shapes[0]) != len(want) {
		t.Fatalf("%s: shape %v, want %v", out, shapes[0], want)
	}
	for i := range want {
		if shapes[0][i] != int64(want[i]) {
			t.Fatalf("%s: shape %v, want %v", out, shapes[0], want)
		}
	}
	return res[0]
}

// agree logs the error of got against want and fails beyond the bounds.
func agree(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range want {
		lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
	}
	nmse := tensor.NMSE(got, want)
	rel := tensor.MaxAbsDiff(got, want) / (hi - lo)
	t.Logf("%-34s NMSE %.2e  max abs %.2e (%.2e of the range %.3g)", what, nmse, tensor.MaxAbsDiff(got, want), rel, hi-lo)
	if !(nmse <= vaeNMSEBound) || !(rel <= vaeMaxAbsBound) {
		t.Errorf("%s: NMSE %.3g (bound %.0e), max abs / range %.3g (bound %.0e)", what, nmse, vaeNMSEBound, rel, vaeMaxAbsBound)
	}
}

// loadDefaultModel writes the embedded default model's files (the bytes engine.LoadBytes
// reads) to a directory and loads it: model.Load needs a safetensors file, whose package is
// internal to sdk/.
func loadDefaultModel(t *testing.T) *model.Model {
	t.Helper()
	d := models.Default()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "vae"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"model.safetensors": d.Weights, "config.json": d.Config, "vae/config.json": d.VAEConfig} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := model.LoadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Weights.Close() })
	return m
}

// heldoutBatch preprocesses held-out images as the engine does (ToTensor at the model's size,
// default filter) into one [N, 3, H, W] batch.
func heldoutBatch(t *testing.T, H, W int, names ...string) tensor.Tensor {
	t.Helper()
	x := tensor.Tensor{Shape: []int{len(names), 3, H, W}}
	for _, name := range names {
		f, err := os.Open(filepath.Join("..", "..", "testdata", "heldout", name))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := ftimage.Decode(f, ftimage.Limits{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		one, _, err := ftimage.ToTensor(img, ftimage.Preprocess{Height: H, Width: W})
		if err != nil {
			t.Fatal(err)
		}
		x.Data = append(x.Data, one.Data...)
	}
	return x
}

// TestVAEDefaultModel: encoder and decoder of the embedded default model on held-out images,
// against the engine.
func TestVAEDefaultModel(t *testing.T) {
	needORT(t)
	m := loadDefaultModel(t)
	cfg := m.Config.VAE
	v, err := engine.NewVAE(m, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const H, W = 32, 32 // the default model's image size
	f := cfg.DownsampleFactor()
	images := heldoutBatch(t, H, W, "000_cross.png", "003_circle.png", "006_star.png", "013_hexagon.png")
	N := images.Shape[0]
	ctx := context.Background()
	want, err := v.Encode(ctx, images)
	if err != nil {
		t.Fatal(err)
	}
	enc, dec := vaeModels(t, m, H, W)
	got := runVAE(t, enc, "images", "latents", images, []int{N, cfg.LatentChannels, H / f, W / f})
	agree(t, "default: encode vs engine", got, want.Data)

	img, err := v.Decode(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	got = runVAE(t, dec, "latents", "images", want, []int{N, cfg.OutChannels, H, W})
	agree(t, "default: decode vs engine", got, img.Data)
}

// TestVAEDefaultModelLarge: the default model on a larger, non-square input (one held-out
// image resized to 128 wide, 96 high), so that the GroupNorm statistics run over up to
// 2·96·128 = 24576 values (ORT reduces in float32, the engine in float64) and the mid-block
// attention over 24·32 = 768 pixels.
func TestVAEDefaultModelLarge(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("about a second of engine time")
	}
	m := loadDefaultModel(t)
	cfg := m.Config.VAE
	v, err := engine.NewVAE(m, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const H, W = 96, 128
	f := cfg.DownsampleFactor()
	images := heldoutBatch(t, H, W, "008_ring.png")
	ctx := context.Background()
	want, err := v.Encode(ctx, images)
	if err != nil {
		t.Fatal(err)
	}
	enc, dec := vaeModels(t, m, H, W)
	got := runVAE(t, enc, "images", "latents", images, []int{1, cfg.LatentChannels, H / f, W / f})
	agree(t, "default 128x96: encode vs engine", got, want.Data)
	img, err := v.Decode(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	got = runVAE(t, dec, "latents", "images", want, []int{1, cfg.OutChannels, H, W})
	agree(t, "default 128x96: decode vs engine", got, img.Data)
}

// officialRoot holds the reference cases written by the official PyTorch code (see
// sdk/engine/refdata_test.go); c3 has bf16 weights.
var officialRoot = filepath.Join("..", "..", "conformance", "testdata", "official")

// TestVAEOfficial: every official case, against the engine and against PyTorch's vae_latents
// (encode of image) and vae_decode_out (decode of vae_decode_in).
func TestVAEOfficial(t *testing.T) {
	needORT(t)
	ents, err := os.ReadDir(officialRoot)
	if err != nil {
		t.Skip("no official reference data:", err)
	}
	cases := 0
	for _, e := range ents {
		dir := filepath.Join(officialRoot, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "reference.safetensors")); err != nil {
			continue
		}
		cases++
		t.Run(e.Name(), func(t *testing.T) {
			m, err := model.LoadFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Weights.Close()
			ref := readRefF32(t, filepath.Join(dir, "reference.safetensors"), "image", "vae_latents", "vae_decode_in", "vae_decode_out")
			cfg := m.Config.VAE
			v, err := engine.NewVAE(m, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			images := ref["image"]
			H, W := images.Shape[2], images.Shape[3]
			enc, dec := vaeModels(t, m, H, W)

			want, err := v.Encode(ctx, images)
			if err != nil {
				t.Fatal(err)
			}
			got := runVAE(t, enc, "images", "latents", images, ref["vae_latents"].Shape)
			agree(t, "encode vs engine", got, want.Data)
			agree(t, "encode vs PyTorch", got, ref["vae_latents"].Data)

			in := ref["vae_decode_in"]
			img, err := v.Decode(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			got = runVAE(t, dec, "latents", "images", in, ref["vae_decode_out"].Shape)
			agree(t, "decode vs engine", got, img.Data)
			agree(t, "decode vs PyTorch", got, ref["vae_decode_out"].Data)
			if cfg.OutChannels != ref["vae_decode_out"].Shape[1] {
				t.Errorf("out channels %d, reference %v", cfg.OutChannels, ref["vae_decode_out"].Shape)
			}
		})
	}
	if cases == 0 {
		t.Skip("no official reference cases")
	}
}

// readRefF32 reads the named F32 tensors of a safetensors file (the reader of sdk/ is internal
// to it; the reference files are plain little-endian F32).
func readRefF32(t *testing.T, path string, names ...string) map[string]tensor.Tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 {
		t.Fatalf("%s: too short", path)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		t.Fatalf("%s: header length %d", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data := b[8+n:]
	out := map[string]tensor.Tensor{}
	for _, name := range names {
		var info struct {
			DType   string `json:"dtype"`
			Shape   []int  `json:"shape"`
			Offsets [2]int `json:"data_offsets"`
		}
		raw, ok := hdr[name]
		if !ok {
			t.Fatalf("%s: no tensor %s", path, name)
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
		size := 1
		for _, d := range info.Shape {
			size *= d
		}
		lo, hi := info.Offsets[0], info.Offsets[1]
		if info.DType != "F32" || lo < 0 || hi > len(data) || hi-lo != 4*size {
			t.Fatalf("%s: %s: %+v", path, name, info)
		}
		x := tensor.Tensor{Shape: info.Shape, Data: make([]float32, size)}
		for i := range x.Data {
			x.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+4*i:]))
		}
		out[name] = x
	}
	return out
}

// TestVAEBadWeights: a missing, short or non-finite tensor fails the export with an error that
// names every bad tensor, and leaves the graph untouched.
func TestVAEBadWeights(t *testing.T) {
	m, err := model.LoadFile(filepath.Join(officialRoot, "c1_w32_zero_e2"))
	if err != nil {
		t.Skip("no official reference data:", err)
	}
	defer m.Weights.Close()
	const (
		missing = "vae.vae.encoder.down_blocks.1.resnets.0.conv1.weight"
		short   = "vae.vae.encoder.mid_block.attentions.0.to_q.bias"
		nan     = "vae.vae.quant_conv.weight"
	)
	get := func(name string) ([]float32, error) {
		w, err := m.Tensor(name)
		switch name {
		case missing:
			return nil, errors.New("not in the checkpoint")
		case short:
			return w[1:], err
		case nan:
			w = append([]float32(nil), w...)
			w[3] = float32(math.NaN())
		}
		return w, err
	}
	g := NewGraph("t")
	x := g.Input("images", Float, "n", 3, 32, 32)
	nodes, inits := len(g.g.Node), len(g.g.Initializer)
	_, err = vaeEncoder(g, m.Config.VAE, get, x)
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{missing, short, nan} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	t.Log(err)
	if len(g.g.Node) != nodes || len(g.g.Initializer) != inits {
		t.Errorf("the failed export added %d nodes and %d initializers", len(g.g.Node)-nodes, len(g.g.Initializer)-inits)
	}

	// A tensor missing from the model itself, through the public function.
	const gone = "vae.vae.decoder.up_blocks.0.resnets.1.norm2.bias"
	if _, ok := m.Report.Key[gone]; !ok {
		t.Fatalf("%s is not in the model", gone)
	}
	delete(m.Report.Key, gone)
	g = NewGraph("t")
	if _, err := VAEDecoder(g, m, g.Input("latents", Float, "n", 4, 16, 16)); err == nil || !strings.Contains(err.Error(), gone) {
		t.Errorf("missing %s: error %v", gone, err)
	}
	// The encoder does not need it.
	if _, err := VAEEncoder(g, m, g.Input("images", Float, "n", 3, 32, 32)); err != nil {
		t.Errorf("encoder: %v", err)
	}
	// Twice in one graph is an error, not a panic.
	if _, err := VAEEncoder(g, m, "images"); err == nil {
		t.Error("a second encoder in the same graph: no error")
	}
	if _, err := VAEEncoder(g, nil, "images"); err == nil {
		t.Error("nil model: no error")
	}
}
