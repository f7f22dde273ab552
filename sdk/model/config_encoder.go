package model

import (
	"fmt"
	"strings"
)

// The encoder section: its module_dict, read module by module in the order the official
// encoder runs them (the per-sample op, the patch embedder and its position embedding, the
// registers, the packer and the trunk, the unpacker, the head).

func (c *Config) parseEncoder(n node) error {
	e := &c.Encoder
	mods, nodes, err := moduleDict(n)
	if err != nil {
		return err
	}
	e.Modules = mods
	for _, m := range mods {
		switch m.Class {
		case "PerSampleOp", "PatchEmbedder", "PositionalEmbeddingAdder", "Registers1D", "BlockWiseSequencePacker",
			"FlexTransformer", "SequenceUnpacker", "LinearHead":
		default:
			return fmt.Errorf("%w: %s: %s is not an encoder module", ErrTarget, nodes[m.Name].path, m.Class)
		}
	}
	one := func(class string) (node, error) { return findOne(mods, nodes, n.path, class) }
	tr, err := one("FlexTransformer")
	if err != nil {
		return err
	}
	if e.Trunk, err = parseTrunk(tr); err != nil {
		return err
	}
	if e.Trunk.AdaLNExpansion != 0 {
		return fmt.Errorf("%w: %s: the encoder trunk has no adaLN", ErrConfig, tr.path)
	}
	W := e.Trunk.Width
	pe, err := one("PatchEmbedder")
	if err != nil {
		return err
	}
	var patches string
	if err := patchEmbedder(pe, W, &e.PatchSize, &e.ChannelsIn, &e.InputReadKey, &patches); err != nil {
		return err
	}
	if ops := findAll(mods, nodes, "PerSampleOp"); len(ops) > 0 {
		if e.InputReadKey, err = ops[0].str("read_key"); err != nil {
			return err
		}
		for _, op := range ops {
			if _, err := perSampleOp(op); err != nil {
				return err
			}
		}
	}
	pm, err := one("PositionalEmbeddingAdder")
	if err != nil {
		return err
	}
	pcfg, err := parsePosemb(pm, W)
	if err != nil {
		return err
	}
	e.PosembMaxSizes, e.PosembType = pcfg.MaxSizes, pcfg.Type
	if patches, err = posembKeys(pm, patches, "the patch embedder's patches_list_write_key"); err != nil {
		return err
	}
	e.Posemb = pcfg
	e.Posemb.Module = pm.path[strings.LastIndexByte(pm.path, '.')+1:]
	rg, err := one("Registers1D")
	if err != nil {
		return err
	}
	if err := e.parseRegisters(rg); err != nil {
		return err
	}
	pk, err := one("BlockWiseSequencePacker")
	if err != nil {
		return err
	}
	if e.MaskMode, err = pk.optStr("mask_mode", "full"); err != nil {
		return err
	}
	if e.MaskMode != "causal_last" && e.MaskMode != "full" {
		return fmt.Errorf("%w: %s.mask_mode: %q", ErrConfig, pk.path, e.MaskMode)
	}
	if e.PadToMultiple, err = pk.optIntIn("pad_to_multiple", 0, 0, maxDim); err != nil {
		return err
	}
	// The patches, then the registers: causal_last makes the registers causal.
	out, err := checkPacking(mods, nodes, pk, tr, []string{patches, e.RegistersWriteKey}, "the position-embedded patches, then the registers")
	if err != nil {
		return err
	}
	hd, err := one("LinearHead")
	if err != nil {
		return err
	}
	return hd.read(
		wantKey("read_key", out[1], "the registers as the unpacker gives them back from the trunk"),
		fp32Only,
		reqInt("dim_out", &e.LatentDim),
		sameDim(W),
		noMup,
		refuseKey("adaLN_emb_read_key", "the encoder head has no adaLN"),
		normEps(&e.HeadNormEps, true),
		reqStr("write_key", &e.OutputWriteKey),
	)
}

// parseRegisters reads the Registers1D module rg.
func (e *EncoderConfig) parseRegisters(rg node) error {
	err := rg.read(reqInt("n_min", &e.RegistersNMin), reqInt("n_max", &e.RegistersNMax), sameDim(e.Trunk.Width),
		refuseKey("extra_registers_write_key", "not supported"),
		func(rg node) error {
			if om, _ := rg.optStr("ordering_mode", "nested"); om != "nested" {
				return fmt.Errorf("%w: %s.ordering_mode: %q (only nested)", ErrConfig, rg.path, om)
			}
			return nil
		},
		reqStr("registers_write_key", &e.RegistersWriteKey))
	if err != nil {
		return err
	}
	if e.RegistersNMin < 0 || e.RegistersNMax < 1 || e.RegistersNMin > e.RegistersNMax || e.RegistersNMax > maxDim {
		return fmt.Errorf("%w: %s: n_min %d, n_max %d", ErrConfig, rg.path, e.RegistersNMin, e.RegistersNMax)
	}
	// At eval the official encoder emits registers[:n_eval or n_max] (registers.py:69, :120): 0
	// and None mean n_max, and a Python slice stops at n_max and counts a negative end from it.
	ne, err := rg.optInt("n_eval", 0)
	if err != nil {
		return err
	}
	emitted := ne
	switch {
	case ne == 0, ne > e.RegistersNMax:
		emitted = e.RegistersNMax
	case ne < 0:
		emitted = max(e.RegistersNMax+ne, 0)
	}
	if emitted != e.RegistersNMax {
		return fmt.Errorf("%w: %s.n_eval: %d (the official encoder then emits %d tokens per image); only n_eval "+
			"that emits all n_max = %d (absent, None, 0 or >= n_max) is supported", ErrConfig, rg.path, ne, emitted, e.RegistersNMax)
	}
	return nil
}
