package model

import (
	"fmt"
	"slices"
	"strings"
)

// The data_dict wiring: the official modules pass tensors to each other through a dict, under
// keys the config names. The executors run one fixed dataflow, so each key a module reads must be
// the key that the module before it in that dataflow writes. The checks within the encoder and
// the decoder are here (called from config_encoder.go and config_decoder.go at the point the
// modules are read, so that the first problem is the one reported); checkKeys checks the links
// between the sections.

// wantKey checks that the string k of the module is want, the key another module writes (what):
// "path.k: "got"; want "want", what".
func wantKey(k, want, what string) field {
	return func(n node) error {
		r, err := n.str(k)
		if err == nil && r != want {
			err = fmt.Errorf("%w: %s.%s: %q; want %q, %s", ErrConfig, n.path, k, r, want, what)
		}
		return err
	}
}

// posembKeys checks that the position embedding pm reads key (what its part is written to
// before it) and returns the key it writes: the key that part goes on under.
func posembKeys(pm node, key, what string) (string, error) {
	if err := wantKey("read_key", key, what)(pm); err != nil {
		return "", err
	}
	return pm.str("write_key")
}

// checkPacking checks the wiring of the packer pk and the trunk tr that the executors assume: the
// packer packs exactly parts, in this order (mask_mode causal_last makes the last part causal, and
// a per-part adaLN gives its first chunk to the first part); the trunk reads the packed sequence
// and the packer's attention mask (without block_mask_read_key the official trunk attends
// unmasked: across the images of a batch and onto the padding); one SequenceUnpacker reads the
// trunk's output back into two lists. It returns that unpacker's keys, in the packed order.
func checkPacking(mods []Module, nodes map[string]node, pk, tr node, parts []string, what string) ([]string, error) {
	in, err := pk.strs("input_list_read_keys")
	if err != nil {
		return nil, err
	}
	if !slices.Equal(in, parts) {
		return nil, fmt.Errorf("%w: %s.input_list_read_keys: %q; want %q (%s)", ErrConfig, pk.path, in, parts, what)
	}
	seq, err := pk.str("packed_seq_write_key")
	if err != nil {
		return nil, err
	}
	if err := wantKey("input_seq_read_key", seq, "the packer's packed_seq_write_key")(tr); err != nil {
		return nil, err
	}
	mask, err := pk.str("block_mask_write_key")
	if err != nil {
		return nil, err
	}
	if !tr.has("block_mask_read_key") {
		return nil, fmt.Errorf("%w: %s.block_mask_read_key: absent (the official trunk then attends without a mask, across "+
			"images and onto padding); only the packer's mask is supported: want %q", ErrConfig, tr.path, mask)
	}
	if err := wantKey("block_mask_read_key", mask, "the packer's block_mask_write_key")(tr); err != nil {
		return nil, err
	}
	seqOut, err := tr.str("output_seq_write_key")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range findAll(mods, nodes, "SequenceUnpacker") {
		if r, err := u.str("packed_seq_read_key"); err != nil || r != seqOut {
			if err != nil {
				return nil, err
			}
			continue // e.g. an unpacker of intermediate layers (REPA)
		}
		if out != nil {
			return nil, fmt.Errorf("%w: %s: a second SequenceUnpacker of the trunk's output %q", ErrConfig, u.path, seqOut)
		}
		if out, err = u.strs("inner_seq_write_keys"); err != nil {
			return nil, err
		}
		if len(out) != len(parts) {
			return nil, fmt.Errorf("%w: %s.inner_seq_write_keys: %q; want %d lists, as packed", ErrConfig, u.path, out, len(parts))
		}
	}
	if out == nil {
		return nil, fmt.Errorf("%w: %s: no SequenceUnpacker reads the trunk's output %q", ErrConfig, pk.path[:strings.LastIndexByte(pk.path, '.')], seqOut)
	}
	return out, nil
}

// decoderWiring checks the data_dict keys between the decoder's modules against the layout the
// executors run: the quants get the learnable position embedding, the nested dropout and the null
// condition; the patches get the sin-cos one; the packer packs the patches, then the registers;
// the trunk's adaLN reads the time embedding, spread by the packer's emb_packing_fn; the head
// reads the patches back from the unpacker.
func (c *Config) decoderWiring(mods []Module, nodes map[string]node, tr, pk, hd, regPosemb, patchPosemb node, regUsers []node, quants, patches, temb string) error {
	regs, err := posembKeys(regPosemb, quants, "dec_from_latents' write_key")
	if err != nil {
		return err
	}
	for _, u := range regUsers {
		if err := wantKey("read_write_key", regs, "the position-embedded registers")(u); err != nil {
			return err
		}
	}
	if patches, err = posembKeys(patchPosemb, patches, "the patch embedder's patches_list_write_key"); err != nil {
		return err
	}
	out, err := checkPacking(mods, nodes, pk, tr, []string{patches, regs}, "the position-embedded patches, then the registers")
	if err != nil {
		return err
	}
	if err := wantKey("read_key", out[0], "the patches as the unpacker gives them back from the trunk")(hd); err != nil {
		return err
	}
	for _, h := range []node{tr, hd} {
		if !h.has("adaLN_emb_read_key") {
			continue
		}
		if err := wantKey("adaLN_emb_read_key", temb, "the time embedder's time_embedding_write_key")(h); err != nil {
			return err
		}
	}
	// Without a packing function the official adaLN blocks cannot run (they call it).
	fn, err := pk.optStr("emb_packing_fn_write_key", "")
	if err != nil {
		return err
	}
	if fn == "" {
		return fmt.Errorf("%w: %s.emb_packing_fn_write_key: absent; the decoder trunk's adaLN needs the packer's packing function", ErrConfig, pk.path)
	}
	if r, err := tr.optStr("adaLN_packing_fn_read_key", ""); err != nil || r != fn {
		if err == nil {
			got := fmt.Sprintf("%q", r)
			if r == "" {
				got = "absent (the official adaLN blocks then fail)"
			}
			err = fmt.Errorf("%w: %s.adaLN_packing_fn_read_key: %s; want %q, the packer's emb_packing_fn_write_key", ErrConfig, tr.path, got, fn)
		}
		return err
	}
	return nil
}

// checkKeys applies the data_dict consistency rules between the sections (fact sheet §5.4) and
// the dimension links between them.
func (c *Config) checkKeys() error {
	p, v, d, e, f := c.Pipeline, c.VAE, c.Decoder, c.Encoder, c.FSQ
	for _, k := range []struct{ aName, a, bName, b string }{
		{"pipeline.reconst_write_key", p.ReconstWriteKey, "vae.vae_latents_read_key", v.LatentsReadKey},
		{"pipeline.reconst_write_key", p.ReconstWriteKey, "decoder's last write_key", d.OutputWriteKey},
		{"pipeline.latents_read_key", p.LatentsReadKey, "regularizer.quants_write_key", f.QuantsWriteKey},
		{"pipeline.timesteps_read_key", p.TimestepsReadKey, "dec_time_embedder.timesteps_read_key", d.TimestepsReadKey},
		{"regularizer.quants_write_key", f.QuantsWriteKey, "dec_from_latents.read_key", d.QuantsReadKey},
		{"regularizer.latents_read_key", f.LatentsReadKey, "enc_to_latents.write_key", e.OutputWriteKey},
		{"vae.vae_latents_write_key", v.LatentsWriteKey, "encoder input read_key", e.InputReadKey},
		{"pipeline.noised_images_read_key", p.NoisedReadKey, "decoder noise input", d.NoiseReadKey},
	} {
		if k.a != k.b {
			return fmt.Errorf("%w: %s = %q but %s = %q", ErrKeys, k.aName, k.a, k.bName, k.b)
		}
	}
	type link struct {
		what      string
		got, want int
	}
	dims := []link{
		{"encoder.enc_patch_emb.channels_in vs vae latent_channels", e.ChannelsIn, v.LatentChannels},
		{"decoder noise channels_in vs vae latent_channels", d.ChannelsIn, v.LatentChannels},
		{"decoder channels_out vs vae latent_channels", d.ChannelsOut, v.LatentChannels},
		{"encoder head dim_out vs FSQ levels", e.LatentDim, len(f.Levels)},
		{"dec_from_latents.dim_in vs FSQ levels", d.LatentDim, len(f.Levels)},
	}
	if p.OutChannels != 0 {
		dims = append(dims, link{"pipeline.out_channels vs vae latent_channels", p.OutChannels, v.LatentChannels})
	}
	for _, x := range dims {
		if x.got != x.want {
			return fmt.Errorf("%w: %s: %d != %d", ErrConfig, x.what, x.got, x.want)
		}
	}
	if d.PatchSize != e.PatchSize {
		return fmt.Errorf("%w: decoder patch size %v != encoder %v", ErrConfig, d.PatchSize, e.PatchSize)
	}
	if d.RegisterPosemb.MaxSizes[0] < e.RegistersNMax {
		return fmt.Errorf("%w: decoder register posemb max_sizes %v < n_max %d", ErrConfig, d.RegisterPosemb.MaxSizes, e.RegistersNMax)
	}
	return nil
}
