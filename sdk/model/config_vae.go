package model

import "fmt"

// The VAE section: the official StableDiffusionVAE wrapper, and the diffusers AutoencoderKL
// config.json it names with hf_hub_path.

func (c *Config) parseVAE(n node, vaeJSON []byte) error {
	if _, err := expectTarget(n, "StableDiffusionVAE"); err != nil {
		return err
	}
	v := &c.VAE
	err := n.read(
		reqStr("images_read_key", &v.ImagesReadKey), reqStr("vae_latents_read_key", &v.LatentsReadKey),
		reqStr("vae_latents_write_key", &v.LatentsWriteKey), reqStr("images_reconst_write_key", &v.ImagesReconstWriteKey),
		optIntIn("latent_channels", &v.LatentChannels, 16, 1, maxDim),
		optFloatIn("scaling_factor", &v.ScalingFactor, 0, 0, 1e6), // 0 (or absent): the VAE's own
		optBool("sample_posterior", &v.SamplePosterior, true),
		optStr("dtype_override", &v.DTypeOverride, "fp32"),
		fp32Only,
		optStr("hf_hub_path", &v.HFHubPath, ""),
		wantBool("learnable_logvar", false, false, "learnable_logvar=True is not supported"),
	)
	if err != nil {
		return err
	}
	// VAE_BASE_CFG of the official wrapper.
	v.InChannels, v.OutChannels = 3, 3
	v.BlockOutChannels = []int{128, 256, 512, 512}
	v.LayersPerBlock, v.NormGroups, v.NormEps = 2, 32, 1e-6
	v.MidBlockAttention, v.UseQuantConv, v.UsePostQuantConv = true, true, true
	if v.HFHubPath == "" {
		return nil
	}
	if vaeJSON == nil {
		// The GroupNorm group count, among others, is not in the weights: a layout read from
		// them would be a guess that decodes wrong without an error (RATIONALE).
		where := "vae/config.json"
		if v.HFHubPath != "vae" {
			where = v.HFHubPath + "/config.json or " + where
		}
		return fmt.Errorf("%w: %s is %q, but that VAE's diffusers config.json was not given: put it "+
			"(AutoencoderKL: block_out_channels, layers_per_block, norm_num_groups, latent_channels, "+
			"scaling_factor) at %s beside model.safetensors", ErrConfig, n.child("hf_hub_path"), v.HFHubPath, where)
	}
	t, err := parseJSONTree(vaeJSON)
	if err != nil {
		return err
	}
	d := node{t, "vae(" + v.HFHubPath + "/config.json)"}
	if cls, err := d.str("_class_name"); err != nil || cls != "AutoencoderKL" {
		if err == nil {
			err = fmt.Errorf("%w: %s._class_name: %s (want AutoencoderKL)", ErrTarget, d.path, cls)
		}
		return err
	}
	err = d.read(
		optIntIn("in_channels", &v.InChannels, 3, 1, 64),
		optIntIn("out_channels", &v.OutChannels, 3, 1, 64),
		optIntIn("latent_channels", &v.LatentChannels, 4, 1, maxDim),
		blockOutChannels(&v.BlockOutChannels),
		func(d node) error { return plainVAEBlocks(d, len(v.BlockOutChannels)) },
		optIntIn("layers_per_block", &v.LayersPerBlock, 1, 1, maxVAEDepth),
		optIntIn("norm_num_groups", &v.NormGroups, 32, 1, maxDim),
		optBool("mid_block_add_attention", &v.MidBlockAttention, true),
		optBool("use_quant_conv", &v.UseQuantConv, true),
		optBool("use_post_quant_conv", &v.UsePostQuantConv, true),
		func(d node) error {
			if act, _ := d.optStr("act_fn", "silu"); act != "silu" {
				return fmt.Errorf("%w: %s.act_fn: %s (want silu)", ErrConfig, d.path, act)
			}
			return nil
		},
	)
	if err != nil {
		return err
	}
	if v.ScalingFactor == 0 {
		if v.ScalingFactor, err = d.optFloatIn("scaling_factor", 0.18215, 1e-12, 1e6); err != nil {
			return err
		}
	}
	if len(v.BlockOutChannels) == 0 || v.LayersPerBlock < 1 || v.NormGroups < 1 || v.LatentChannels < 1 {
		return fmt.Errorf("%w: %s: empty or non-positive layout", ErrConfig, d.path)
	}
	for _, ch := range v.BlockOutChannels {
		if ch < 1 || ch%v.NormGroups != 0 {
			return fmt.Errorf("%w: %s.block_out_channels: %d not a multiple of norm_num_groups %d", ErrConfig, d.path, ch, v.NormGroups)
		}
	}
	return nil
}

// blockOutChannels reads block_out_channels: 1 to 8 widths, diffusers' [64] when absent.
func blockOutChannels(p *[]int) field {
	return func(d node) error {
		if !d.has("block_out_channels") {
			*p = []int{64}
			return nil
		}
		var err error
		if *p, err = d.ints("block_out_channels"); err != nil {
			return err
		}
		if err = d.inRange("block_out_channels (count)", len(*p), 1, 8); err != nil {
			return err
		}
		for _, ch := range *p {
			if err = d.inRange("block_out_channels", ch, 1, maxDim); err != nil {
				return err
			}
		}
		return nil
	}
}

// plainVAEBlocks checks a diffusers VAE config's down_block_types and up_block_types: diffusers
// builds one block per entry (default: one), taking its width from block_out_channels, and the
// executors run only the plain blocks, one per block_out_channels entry.
func plainVAEBlocks(d node, blocks int) error {
	for _, b := range []struct{ key, want string }{{"down_block_types", "DownEncoderBlock2D"}, {"up_block_types", "UpDecoderBlock2D"}} {
		types, absent := []string{b.want}, " (absent: diffusers' default, 1)"
		if d.has(b.key) {
			absent = ""
			var err error
			if types, err = d.strs(b.key); err != nil {
				return err
			}
		}
		if len(types) != blocks {
			return fmt.Errorf("%w: %s: %d blocks%s, but block_out_channels has %d; want one %s per entry",
				ErrConfig, d.child(b.key), len(types), absent, blocks, b.want)
		}
		for i, t := range types {
			if t != b.want {
				return fmt.Errorf("%w: %s[%d]: %s (only %s is supported)", ErrConfig, d.child(b.key), i, t, b.want)
			}
		}
	}
	return nil
}
