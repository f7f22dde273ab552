package model

// Arch is one transformer part of a FlexTok model, the encoder or the decoder, in the terms the
// executors build it in. Per image, the part packs a sequence of its patches (ph×pw latent
// patches, each embedded to the trunk width, plus the sin-cos position table), then its
// registers; runs one FlexTransformer trunk over it; and applies a head to one of the two
// parts: the encoder's to the registers, the decoder's to the patches. The two parts share
// this shape, so one trunk definition can serve both. What only one part has (the registers'
// own modules, FSQ, the time embedding, the null condition) stays in [EncoderConfig] and
// [DecoderConfig].
//
// An Arch is derived from a parsed [Config] ([Config.EncoderArch], [Config.DecoderArch]) and
// holds nothing that the config does not. Like the config, it describes a layout that parses;
// whether the executors run it is [Config.CanEncode] and [Config.CanDecode].
type Arch struct {
	Part   string      // "encoder" or "decoder"
	Prefix string      // weight prefix of the part's modules: EncoderPrefix or DecoderPrefix
	Trunk  TrunkConfig // the FlexTransformer; Trunk.AdaLNExpansion 2 gives the patches and the registers one adaLN chunk each
	// TrunkModule is the trunk's module_dict key, e.g. "dec_transformer": its per-block weights
	// are Block(format, Prefix, TrunkModule, i), as [Arch.Block] gives them.
	TrunkModule string
	Patch       [2]int       // patch size on the latent grid (ph, pw)
	PatchIn     int          // features of one patch: ph·pw·C, for C latent channels
	PatchPosemb PosembConfig // the patches' position table, with its module key
	Registers   int          // R: registers per image, the encoder's n_max
	// CausalLast is mask_mode causal_last. The patches then attend to the patches, and each
	// register to the patches and to the registers up to itself. Without it, every token attends
	// to every token of its image.
	CausalLast  bool
	HeadOut     int     // features out of the head per token: D per register (encoder), ph·pw·C per patch (decoder)
	HeadNormEps float64 // eps of the head's non-affine LayerNorm
	HeadAdaLN   bool    // the head's normalised input is shifted and scaled by the time embedding (decoder only)
}

// Tokens is the length of an image's packed sequence with the given number of patches: the
// patches, then the registers.
func (a Arch) Tokens(patches int) int { return patches + a.Registers }

// Block is the name of the trunk's weight of block i, from one of the Block* formats.
func (a Arch) Block(format string, i int) string { return Block(format, a.Prefix, a.TrunkModule, i) }

// EncoderArch describes the encoder: image latents → patches and registers → trunk → the head's
// D dims per register (then FSQ).
func (c *Config) EncoderArch() Arch {
	e := c.Encoder
	pd := e.PatchSize[0] * e.PatchSize[1] * e.ChannelsIn
	return Arch{Part: "encoder", Prefix: EncoderPrefix, Trunk: e.Trunk, TrunkModule: moduleKey(e.Modules, "FlexTransformer"),
		Patch: e.PatchSize, PatchIn: pd, PatchPosemb: e.Posemb, Registers: e.RegistersNMax, CausalLast: e.MaskMode == "causal_last",
		HeadOut: e.LatentDim, HeadNormEps: e.HeadNormEps}
}

// DecoderArch describes the decoder's velocity model: noised latents → patches, FSQ codes →
// registers → trunk (adaLN from the time embedding) → the head's ph·pw·C values per patch.
func (c *Config) DecoderArch() Arch {
	d := c.Decoder
	return Arch{Part: "decoder", Prefix: DecoderPrefix, Trunk: d.Trunk, TrunkModule: moduleKey(d.Modules, "FlexTransformer"),
		Patch: d.PatchSize, PatchIn: d.PatchSize[0] * d.PatchSize[1] * d.ChannelsIn, PatchPosemb: d.PatchPosemb,
		Registers: c.Encoder.RegistersNMax, CausalLast: d.MaskMode == "causal_last",
		HeadOut: d.PatchSize[0] * d.PatchSize[1] * d.ChannelsOut, HeadNormEps: d.HeadNormEps, HeadAdaLN: d.HeadAdaLN}
}

// moduleKey is the module_dict key of the first module of the class, "" when there is none.
func moduleKey(mods []Module, class string) string {
	for _, m := range mods {
		if m.Class == class {
			return m.Name
		}
	}
	return ""
}
