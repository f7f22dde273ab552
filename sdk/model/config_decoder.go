package model

import "fmt"

// The decoder section: its module_dict, read module by module in the official order, then the
// checks that need all of them (one of each module, the two position embeddings, adaLN and the
// packer, the wiring of config_keys.go).

func (c *Config) parseDecoder(n node) error {
	d := &c.Decoder
	mods, nodes, err := moduleDict(n)
	if err != nil {
		return err
	}
	d.Modules = mods
	tr, err := findOne(mods, nodes, n.path, "FlexTransformer")
	if err != nil {
		return err
	}
	if d.Trunk, err = parseTrunk(tr); err != nil {
		return err
	}
	if d.Trunk.AdaLNExpansion == 0 {
		return fmt.Errorf("%w: %s.adaLN_emb_read_key: the decoder trunk needs adaLN", ErrConfig, tr.path)
	}
	W := d.Trunk.Width
	// The data_dict keys of the two parts: the registers (quants) and the patches, the nodes whose
	// keys are compared after the loop, and the time embedding.
	var opRead, opWrite, quants, patches, temb string
	var regPosemb, patchPosemb, pk, hd node
	var regUsers []node // read_write_key must be the registers' key
	for _, m := range mods {
		mn := nodes[m.Name]
		var err error
		switch m.Class {
		case "LinearLayer":
			err = mn.read(reqInt("dim_in", &d.LatentDim), sameDim(W), projBias, reqStr("read_key", &d.QuantsReadKey),
				reqStr("write_key", &quants), fp32Only)
		case "PositionalEmbeddingAdder":
			var p PosembConfig
			if p, err = parsePosemb(mn, W); err == nil {
				p.Module = m.Name
				if p.Type == "sincos" {
					d.PatchPosemb, patchPosemb = p, mn
				} else {
					d.RegisterPosemb, regPosemb = p, mn
				}
			}
		case "MaskedNestedDropout":
			err = mn.read(sameDim(W),
				refuseNone("eval_keep_k_read_key", "(the official module then does nothing at eval: "+
					"no truncation to the given tokens) is not supported; leave it out or name a key"),
				optStr("eval_keep_k_read_key", &d.EvalKeepKReadKey, "eval_keep_k"))
			regUsers = append(regUsers, mn)
		case "ZeroNullCond", "LearnedNullCond":
			err = d.parseNullCond(mn, m.Class)
			regUsers = append(regUsers, mn)
		case "PerSampleOp":
			var op string
			if op, err = perSampleOp(mn); err == nil && op == "channels_first_to_last" {
				err = mn.read(reqStr("read_key", &opRead), reqStr("write_key", &opWrite))
			}
		case "PatchEmbedder":
			err = patchEmbedder(mn, W, &d.PatchSize, &d.ChannelsIn, &d.NoiseReadKey, &patches)
		case "BlockWiseSequencePacker":
			err = mn.read(optStr("mask_mode", &d.MaskMode, "full"), optIntIn("pad_to_multiple", &d.PadToMultiple, 0, 0, maxDim),
				optBool("per_subseq_embs", &d.PerSubseqEmbs, false))
			pk = mn
		case "TimestepEmbedder":
			err = mn.read(optFloatIn("max_timestep", &d.MaxTimestep, 1000, 1e-6, 1e9),
				optInt("frequency_embedding_size", &d.FreqEmbSize, 256), sameDim(W),
				reqStr("timesteps_read_key", &d.TimestepsReadKey), reqStr("time_embedding_write_key", &temb),
				func(mn node) error {
					if b, _ := mn.optBool("temb_as_tokens", false); b {
						return fmt.Errorf("%w: %s.temb_as_tokens: not supported", ErrConfig, mn.path)
					}
					return nil
				})
		case "ToPatchesLinearHead":
			d.HeadAdaLN = mn.has("adaLN_emb_read_key")
			hd = mn
			err = mn.read(reqInt("channels_out", &d.ChannelsOut), sameDim(W), noMup,
				// The packer's function spreads over patches and registers; the head reads the patches only.
				refuseKey("adaLN_packing_fn_read_key", "not supported (the packer's function spans the registers too); "+
					"leave it out: the head then spreads the embedding over its own tokens"),
				fp32Only, normEps(&d.HeadNormEps, true),
				func(mn node) error {
					var ps [2]int
					if err := patchSizes(&ps)(mn); err != nil {
						return err
					}
					if ps != d.PatchSize { // the patch embedder's, when it comes first
						return fmt.Errorf("%w: %s.patch_sizes: %v differs from the patch embedder's %v", ErrConfig, mn.path, ps, d.PatchSize)
					}
					return nil
				})
		case "FlexTransformer", "SequenceUnpacker", "DictKeyFilter":
		default:
			return fmt.Errorf("%w: %s: %s is not a decoder module", ErrTarget, mn.path, m.Class)
		}
		if err != nil {
			return err
		}
	}
	for _, need := range [][]string{{"LinearLayer"}, {"MaskedNestedDropout"}, {"PatchEmbedder"}, {"BlockWiseSequencePacker"},
		{"TimestepEmbedder"}, {"ToPatchesLinearHead"}, {"ZeroNullCond", "LearnedNullCond"}} {
		if _, err := findOne(mods, nodes, n.path, need...); err != nil {
			return err
		}
	}
	if d.PatchPosemb.Type == "" || d.RegisterPosemb.Type == "" {
		return fmt.Errorf("%w: %s: needs one sincos patch posemb and one learnable register posemb", ErrConfig, n.path)
	}
	if d.Trunk.AdaLNExpansion == 2 && !d.PerSubseqEmbs {
		return fmt.Errorf("%w: %s: adaLN_expansion 2 needs per_subseq_embs=True in the packer", ErrConfig, tr.path)
	}
	if d.Trunk.AdaLNExpansion == 1 && d.PerSubseqEmbs {
		// expand_emb_per_subseq splits each embedding into one chunk per packed part: with an
		// expansion of 1 the official blocks get chunks of the wrong width and fail.
		return fmt.Errorf("%w: %s: adaLN_expansion 1 with per_subseq_embs=True in the packer is not supported; "+
			"want adaLN_expansion 2, or per_subseq_embs=False", ErrConfig, tr.path)
	}
	if err := c.decoderWiring(mods, nodes, tr, pk, hd, regPosemb, patchPosemb, regUsers, quants, patches, temb); err != nil {
		return err
	}
	if d.MaskMode != "full" && d.MaskMode != "causal_last" {
		return fmt.Errorf("%w: %s: decoder mask_mode %q", ErrConfig, n.path, d.MaskMode)
	}
	if opWrite != "" && d.NoiseReadKey == opWrite {
		d.NoiseReadKey = opRead // the noise enters through channels_first_to_last
	}
	// The decoder's last write is what the pipeline reads back.
	last := nodes[mods[len(mods)-1].Name]
	if d.OutputWriteKey, err = last.str("write_key"); err != nil {
		return err
	}
	return nil
}

// parseNullCond reads the null condition mn of class ZeroNullCond or LearnedNullCond.
func (d *DecoderConfig) parseNullCond(mn node, class string) error {
	d.NullCond = NullCondZero
	if class == "LearnedNullCond" {
		d.NullCond = NullCondLearned
		if err := mn.read(sameDim(d.Trunk.Width), optBool("replace_with_single_token", &d.NullCondSingle, false)); err != nil {
			return err
		}
	}
	// The official pipeline marks the unconditional pass under this one key (pipelines.py:132):
	// under any other key, or None, the null condition is never applied.
	err := mn.read(refuseNone("eval_drop_flag_read_key", "(the official module then does nothing at eval: "+
		"guidance without a null condition) is not supported; want \"eval_dropout_mask\""),
		optStr("eval_drop_flag_read_key", &d.EvalDropFlagReadKey, "eval_dropout_mask"))
	if err == nil && d.EvalDropFlagReadKey != "eval_dropout_mask" {
		err = fmt.Errorf("%w: %s.eval_drop_flag_read_key: %q (the official pipeline sets only \"eval_dropout_mask\", so the "+
			"null condition is never applied); want \"eval_dropout_mask\"", ErrConfig, mn.path, d.EvalDropFlagReadKey)
	}
	return err
}
