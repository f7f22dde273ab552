package model

import (
	"errors"
	"fmt"
	"math"
)

// ErrUnsupported is wrapped by the errors of configs that parse but that this SDK's executors
// (the Go engine and the ONNX export) cannot run.
var ErrUnsupported = errors.New("flextok/model: unsupported")

// The Supported methods hold the one list of layouts the executors run, so that the Go engine
// and the ONNX export refuse the same configs with the same words.

// Supported reports whether the VAE layout can be run (the kernels would fail on the others).
func (c VAEConfig) Supported() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: VAE config: "+format, append([]any{ErrUnsupported}, a...)...)
	}
	switch {
	case len(c.BlockOutChannels) == 0:
		return bad("block_out_channels is empty")
	case len(c.BlockOutChannels) > 16:
		return bad("%d blocks (at most 16)", len(c.BlockOutChannels))
	case c.LayersPerBlock < 1:
		return bad("layers_per_block = %d (want >= 1)", c.LayersPerBlock)
	case c.NormGroups < 1:
		return bad("norm_num_groups = %d (want >= 1)", c.NormGroups)
	case c.LatentChannels < 1 || c.InChannels < 1 || c.OutChannels < 1:
		return bad("channels in/out/latent = %d/%d/%d (want >= 1)", c.InChannels, c.OutChannels, c.LatentChannels)
	case c.NormEps < 0 || math.IsNaN(c.NormEps):
		return bad("norm eps = %v", c.NormEps)
	}
	s := float32(c.ScalingFactor)
	if s == 0 || math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
		return bad("scaling_factor = %v (want a finite non-zero float32)", c.ScalingFactor)
	}
	for i, ch := range c.BlockOutChannels {
		if ch < 1 || ch%c.NormGroups != 0 {
			return bad("block_out_channels[%d] = %d is not a positive multiple of norm_num_groups = %d", i, ch, c.NormGroups)
		}
	}
	return nil
}

// Supported reports whether the encoder layout can be run.
func (e EncoderConfig) Supported() error {
	switch {
	case e.Posemb.Type != "sincos" || len(e.Posemb.MaxSizes) != 2:
		return fmt.Errorf("%w: encoder patch posemb %q %v: only a 2-D sin-cos table is supported", ErrUnsupported, e.Posemb.Type, e.Posemb.MaxSizes)
	case e.MaskMode != "causal_last" && e.MaskMode != "full":
		return fmt.Errorf("%w: encoder mask_mode %q", ErrUnsupported, e.MaskMode)
	case e.Trunk.AdaLNExpansion != 0:
		return fmt.Errorf("%w: encoder trunk with adaLN", ErrUnsupported)
	}
	return nil
}

// Supported reports whether the decoder layout can be run with registers tokens per image (the
// encoder's n_max).
func (d DecoderConfig) Supported(registers int) error {
	switch {
	case d.PatchPosemb.Type != "sincos" || len(d.PatchPosemb.MaxSizes) != 2:
		return fmt.Errorf("%w: decoder patch posemb %q %v: only a 2-D sin-cos table is supported", ErrUnsupported, d.PatchPosemb.Type, d.PatchPosemb.MaxSizes)
	case d.RegisterPosemb.Type != "learnable_sum" || len(d.RegisterPosemb.MaxSizes) != 1:
		return fmt.Errorf("%w: decoder register posemb %q %v: only a 1-D learnable_sum table is supported", ErrUnsupported, d.RegisterPosemb.Type, d.RegisterPosemb.MaxSizes)
	case d.MaskMode != "full" && d.MaskMode != "causal_last":
		return fmt.Errorf("%w: decoder mask_mode %q", ErrUnsupported, d.MaskMode)
	case d.Trunk.AdaLNExpansion < 1 || d.Trunk.AdaLNExpansion > 2:
		return fmt.Errorf("%w: decoder adaLN expansion %d", ErrUnsupported, d.Trunk.AdaLNExpansion)
	case d.ChannelsIn != d.ChannelsOut:
		return fmt.Errorf("%w: decoder channels in %d != out %d", ErrUnsupported, d.ChannelsIn, d.ChannelsOut)
	case d.FreqEmbSize < 2 || !(d.MaxTimestep > 0):
		return fmt.Errorf("%w: decoder time embedding size %d, max_timestep %v", ErrUnsupported, d.FreqEmbSize, d.MaxTimestep)
	case registers < 1 || registers > d.RegisterPosemb.MaxSizes[0]:
		return fmt.Errorf("%w: %d registers do not fit the decoder's register table of %d", ErrUnsupported, registers, d.RegisterPosemb.MaxSizes[0])
	}
	return nil
}

// CanEncode reports whether the executors can encode (tokenize) with this model: its VAE and
// encoder layouts are supported. A model that cannot decode may still encode.
func (c *Config) CanEncode() error {
	if err := c.VAE.Supported(); err != nil {
		return err
	}
	return c.Encoder.Supported()
}

// CanDecode reports whether the executors can decode (detokenize) with this model: its VAE and
// decoder layouts are supported. A model that cannot encode may still decode.
func (c *Config) CanDecode() error {
	if err := c.VAE.Supported(); err != nil {
		return err
	}
	return c.Decoder.Supported(c.Encoder.RegistersNMax)
}
