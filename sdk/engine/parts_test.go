package engine

import (
	"context"
	"errors"
	"image"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// TestDecodeOnlyDecodesAsFull: a DecodeOnly engine decodes every payload to the same bits as
// an engine with every part, in fp32 and bf16; an EncodeOnly engine makes the same payloads.
// Each refuses the other direction with an error that names Options.Parts.
func TestDecodeOnlyDecodesAsFull(t *testing.T) {
	ctx := context.Background()
	d := defaultFiles(t)
	for _, base := range []Options{{}, {Fast: true, Precision: BF16}} {
		load := func(p Parts) *Engine {
			o := base
			o.Parts = p
			e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
			if err != nil {
				t.Fatalf("%v %v: %v", base.Precision, p, err)
			}
			return e
		}
		full, dec, enc := load(AllParts), load(DecodeOnly), load(EncodeOnly)
		if dec.Identity().Digest != full.Identity().Digest || enc.Identity().Digest != full.Identity().Digest {
			t.Fatalf("%v: the identity depends on Parts", base.Precision)
		}
		imgs := []image.Image{testImage(), image.NewNRGBA(image.Rect(0, 0, 32, 32))}
		ps, err := full.EncodeBatch(ctx, imgs, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pe, err := enc.EncodeBatch(ctx, imgs, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range ps {
			if !slices.Equal(ps[i].IDs, pe[i].IDs) {
				t.Errorf("%v: EncodeOnly image %d: ids %v, full engine %v", base.Precision, i, pe[i].IDs, ps[i].IDs)
			}
		}
		o := DecodeOptions{Steps: 3, Guidance: 2.5, APG: true, Seed: 7}
		for _, k := range []int{0, 3} {
			o.K = k
			want, err := full.DecodeBatch(ctx, ps, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dec.DecodeBatch(ctx, ps, o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if !slices.Equal(floatBits(got[i]), floatBits(want[i])) {
					t.Errorf("%v K=%d image %d: DecodeOnly decodes other bits than the full engine", base.Precision, k, i)
				}
			}
		}

		// The refused direction: every entry point, an error that names the option.
		refused := func(what, option string, err error) {
			t.Helper()
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "Options.Parts = "+option) {
				t.Errorf("%v: %s: err = %v, want ErrUnsupported naming Options.Parts = %s", base.Precision, what, err, option)
			}
		}
		_, err = dec.Encode(ctx, testImage(), EncodeOptions{})
		refused("DecodeOnly Encode", "DecodeOnly", err)
		_, err = dec.EncodeBatch(ctx, imgs, EncodeOptions{})
		refused("DecodeOnly EncodeBatch", "DecodeOnly", err)
		_, err = dec.EncodeTensor(ctx, tensor.Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 3*32*32)})
		refused("DecodeOnly EncodeTensor", "DecodeOnly", err)
		_, err = enc.Decode(ctx, ps[0], o)
		refused("EncodeOnly Decode", "EncodeOnly", err)
		_, err = enc.DecodeImage(ctx, ps[0], o)
		refused("EncodeOnly DecodeImage", "EncodeOnly", err)
		_, _, err = enc.Graphs()
		refused("EncodeOnly Graphs", "EncodeOnly", err)
		if _, _, err := dec.Graphs(); err != nil {
			t.Errorf("DecodeOnly Graphs: %v", err)
		}
	}
}

// floatBits is t's values as bits, so that a comparison tells -0 from 0 and NaN from NaN.
func floatBits(t tensor.Tensor) []uint32 {
	b := make([]uint32, len(t.Data))
	for i, v := range t.Data {
		b[i] = math.Float32bits(v)
	}
	return b
}

// TestVAEParts: a VAE built for one direction refuses the other, without panicking.
func TestVAEParts(t *testing.T) {
	d := defaultFiles(t)
	m, err := model.LoadBytes(d.Weights, d.Config, d.VAEConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img := tensor.Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 3*32*32)}
	dec, err := NewVAE(m, Options{Parts: DecodeOnly})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Encode(ctx, img); !errors.Is(err, ErrUnsupported) {
		t.Errorf("DecodeOnly VAE Encode: err = %v", err)
	}
	enc, err := NewVAE(m, Options{Parts: EncodeOnly})
	if err != nil {
		t.Fatal(err)
	}
	lat, err := enc.Encode(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Decode(ctx, lat); !errors.Is(err, ErrUnsupported) {
		t.Errorf("EncodeOnly VAE Decode: err = %v", err)
	}
	if _, err := dec.Decode(ctx, lat); err != nil {
		t.Errorf("DecodeOnly VAE Decode: %v", err)
	}
	if _, err := NewVAE(m, Options{Parts: 9}); !errors.Is(err, ErrArgument) {
		t.Errorf("Parts(9): err = %v", err)
	}
}

// TestPartsSkipWeights: the half that Options.Parts leaves out is never read: a NaN in an
// encoder or VAE encoder weight fails a full load, naming the tensor, but not a DecodeOnly
// one (and the other way round for the decoder). Its identity still covers that tensor.
func TestPartsSkipWeights(t *testing.T) {
	b, cfg, vae, f := c1Checkpoint(t)
	clean, err := LoadBytes(b, cfg, vae, Options{Parts: DecodeOnly})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		names   []string
		loads   Parts // the Parts that still loads
		refuses []Parts
	}{
		{[]string{"encoder.module_dict.enc_to_latents.proj.weight", "vae.vae.encoder.conv_in.weight", "vae.vae.quant_conv.bias"}, DecodeOnly, []Parts{AllParts, EncodeOnly}},
		{[]string{"decoder.module_dict.dec_transformer.blocks.0.attn.wq.weight", "vae.vae.decoder.conv_out.weight", "vae.vae.post_quant_conv.weight"}, EncodeOnly, []Parts{AllParts, DecodeOnly}},
	} {
		e, err := LoadBytes(poisoned(t, b, f, float32(math.NaN()), c.names...), cfg, vae, Options{Parts: c.loads})
		if err != nil {
			t.Errorf("%v with NaNs in %v: %v", c.loads, c.names, err)
		} else if e.Identity().Digest == clean.Identity().Digest {
			t.Errorf("%v: the identity does not cover the tensors it skips", c.loads)
		}
		// A load stops at the first part with a bad weight, so each tensor is tried alone.
		for _, name := range c.names {
			bad := poisoned(t, b, f, float32(math.NaN()), name)
			for _, p := range c.refuses {
				_, err := LoadBytes(bad, cfg, vae, Options{Parts: p})
				if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(name, model.VAEPrefix)) {
					t.Errorf("%v with a NaN in %s: err = %v", p, name, err)
				}
			}
		}
	}
}

// TestDecodeOnlyNeedsWholeCheckpoint: a checkpoint without its encoder tensors is refused
// with DecodeOnly too, naming a missing tensor: its digest would differ from the full
// model's, so no payload of that model would decode with it anyway.
func TestDecodeOnlyNeedsWholeCheckpoint(t *testing.T) {
	_, cfg, vae, f := c1Checkpoint(t)
	var w safetensors.Writer
	for _, m := range f.Metadata() {
		if err := w.SetMetadata(m.Key, m.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors() {
		if strings.HasPrefix(ti.Name, model.EncoderPrefix) {
			continue
		}
		raw, err := f.ReadRaw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddRaw(ti.Name, ti.DType, ti.Shape, raw); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadBytes(w.Bytes(), cfg, vae, Options{Parts: DecodeOnly})
	if err == nil || !strings.Contains(err.Error(), "missing "+model.EncoderPrefix) {
		t.Errorf("DecodeOnly without the encoder tensors: err = %v", err)
	}
}

// TestPartsHoldOneHalf: a DecodeOnly engine holds no encoder and no VAE encoder, an
// EncodeOnly one no decoder and no VAE decoder (the memory this saves is measured by
// BenchmarkD12/op=load, docs/benchmarks.md).
func TestPartsHoldOneHalf(t *testing.T) {
	d := defaultFiles(t)
	for _, o := range []Options{{}, {Fast: true, Precision: BF16}} {
		o.Parts = DecodeOnly
		e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
		if err != nil {
			t.Fatal(err)
		}
		if e.enc != nil || e.vae.enc != nil || e.dec == nil || e.vae.dec == nil {
			t.Errorf("%v DecodeOnly: encoder %v, VAE encoder %v, decoder %v, VAE decoder %v", o.Precision, e.enc != nil, e.vae.enc != nil, e.dec != nil, e.vae.dec != nil)
		}
		o.Parts = EncodeOnly
		if e, err = LoadBytes(d.Weights, d.Config, d.VAEConfig, o); err != nil {
			t.Fatal(err)
		}
		if e.enc == nil || e.vae.enc == nil || e.dec != nil || e.vae.dec != nil || len(e.vae.bf16) != 0 {
			t.Errorf("%v EncodeOnly: encoder %v, VAE encoder %v, decoder %v, VAE decoder %v (%d bf16 convolutions)", o.Precision, e.enc != nil, e.vae.enc != nil, e.dec != nil, e.vae.dec != nil, len(e.vae.bf16))
		}
	}
}

// TestParseParts: the names round-trip and bad values are refused.
func TestParseParts(t *testing.T) {
	for _, p := range []Parts{AllParts, DecodeOnly, EncodeOnly} {
		q, err := ParseParts(p.String())
		if err != nil || q != p {
			t.Errorf("ParseParts(%q) = %v, %v", p.String(), q, err)
		}
	}
	if _, err := ParseParts("decoder"); !errors.Is(err, ErrArgument) {
		t.Errorf("ParseParts(decoder): err = %v", err)
	}
	d := defaultFiles(t)
	if _, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, Options{Parts: 3}); !errors.Is(err, ErrArgument) {
		t.Errorf("Parts(3): err = %v", err)
	}
}
