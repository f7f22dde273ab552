package model

import (
	"slices"
	"testing"
)

// The architecture summaries agree with the config and name weights that ExpectedTensors lists.
func TestArch(t *testing.T) {
	cfg, vae := readTestdata(t)
	c, err := ParseConfigJSON(cfg, vae)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range c.ExpectedTensors() {
		names = append(names, x.Name)
	}
	for _, tc := range []struct {
		a                     Arch
		part, prefix          string
		trunk                 TrunkConfig
		patchIn, headOut      int
		causalLast, headAdaLN bool
		eps                   float64
	}{
		{c.EncoderArch(), "encoder", EncoderPrefix, c.Encoder.Trunk, c.Encoder.PatchSize[0] * c.Encoder.PatchSize[1] * c.VAE.LatentChannels,
			len(c.FSQ.Levels), c.Encoder.MaskMode == "causal_last", false, c.Encoder.HeadNormEps},
		{c.DecoderArch(), "decoder", DecoderPrefix, c.Decoder.Trunk, c.Decoder.PatchSize[0] * c.Decoder.PatchSize[1] * c.VAE.LatentChannels,
			c.Decoder.PatchSize[0] * c.Decoder.PatchSize[1] * c.VAE.LatentChannels, c.Decoder.MaskMode == "causal_last", c.Decoder.HeadAdaLN, c.Decoder.HeadNormEps},
	} {
		a := tc.a
		if a.Part != tc.part || a.Prefix != tc.prefix || a.Trunk != tc.trunk || a.PatchIn != tc.patchIn || a.HeadOut != tc.headOut ||
			a.CausalLast != tc.causalLast || a.HeadAdaLN != tc.headAdaLN || a.HeadNormEps != tc.eps || a.Registers != c.Encoder.RegistersNMax {
			t.Errorf("%s: %+v", tc.part, a)
		}
		if a.Tokens(6) != 6+c.Encoder.RegistersNMax {
			t.Errorf("%s: Tokens(6) = %d", tc.part, a.Tokens(6))
		}
		for i := range a.Trunk.Depth {
			for _, f := range []string{BlockWQ, BlockWK, BlockWV, BlockProj, BlockFC1, BlockFC2} {
				if n := a.Block(f, i); !slices.Contains(names, n) {
					t.Errorf("%s: %s is not an expected tensor", tc.part, n)
				}
			}
		}
		if n := a.Prefix + a.PatchPosemb.Module + ".posembs"; !slices.Contains(names, n) {
			t.Errorf("%s: %s is not an expected tensor", tc.part, n)
		}
	}
}
