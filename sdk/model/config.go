package model

import (
	"errors"
	"fmt"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
	"github.com/flextok-sdk/flextok/sdk/internal/safetensors"
)

// Sentinel errors; every error of this package wraps one of them.
var (
	ErrConfig  = errors.New("flextok/model: invalid config")
	ErrTarget  = errors.New("flextok/model: unsupported _target_")
	ErrKeys    = errors.New("flextok/model: inconsistent data_dict keys")
	ErrWeights = errors.New("flextok/model: weights do not match the config")
)

// NullCondKind is how the decoder's unconditional pass replaces the registers.
type NullCondKind int

const (
	// NullCondZero (ZeroNullCond) writes zeros.
	NullCondZero NullCondKind = iota
	// NullCondLearned (LearnedNullCond) writes the learned vector nullcond.
	NullCondLearned
)

func (k NullCondKind) String() string {
	if k == NullCondLearned {
		return "learned"
	}
	return "zero"
}

// Module is one entry of an ordered module_dict.
type Module struct {
	Name  string // module_dict key, e.g. "dec_transformer"
	Class string // last component of _target_, e.g. "FlexTransformer"
}

// VAEConfig describes the diffusers AutoencoderKL and its wrapper.
type VAEConfig struct {
	InChannels, OutChannels int
	LatentChannels          int   // C
	BlockOutChannels        []int // per down/up block
	LayersPerBlock          int   // resnets per down block; up blocks have one more
	NormGroups              int   // GroupNorm groups
	NormEps                 float64
	MidBlockAttention       bool
	UseQuantConv            bool
	UsePostQuantConv        bool
	ScalingFactor           float64
	SamplePosterior         bool
	DTypeOverride           string
	HFHubPath               string // "" when the VAE is built from the base config

	ImagesReadKey, LatentsReadKey, LatentsWriteKey, ImagesReconstWriteKey string
}

// DownsampleFactor is 2^(len(BlockOutChannels)-1).
func (v VAEConfig) DownsampleFactor() int { return 1 << (len(v.BlockOutChannels) - 1) }

// TrunkConfig is a FlexTransformer.
type TrunkConfig struct {
	Width, Depth, HeadDim, Heads int
	MLPRatio                     float64
	MLPHidden                    int // int(2*int(W*ratio)/3) when gated
	Gated, QKNorm                bool
	QKVBias, ProjBias, MLPBias   bool
	NormEps                      float64
	AdaLNExpansion               int // 0 when the trunk has no adaLN
}

// EncoderConfig is the encoder module_dict.
type EncoderConfig struct {
	Modules        []Module
	Trunk          TrunkConfig
	ChannelsIn     int    // VAE latent channels
	PatchSize      [2]int // (ph, pw)
	PosembMaxSizes []int  // (S_h, S_w)
	PosembType     string
	Posemb         PosembConfig
	RegistersNMin  int
	RegistersNMax  int // R
	MaskMode       string
	PadToMultiple  int
	LatentDim      int // FSQ dims, the head's dim_out
	HeadNormEps    float64

	InputReadKey, RegistersWriteKey, OutputWriteKey string
}

// FSQConfig is the regularizer.
type FSQConfig struct {
	Levels                                         []int
	LatentsReadKey, QuantsWriteKey, TokensWriteKey string
}

// DecoderConfig is the decoder module_dict.
type DecoderConfig struct {
	Modules        []Module
	Trunk          TrunkConfig
	LatentDim      int // dim_in of dec_from_latents
	ChannelsIn     int // noise channels
	ChannelsOut    int
	PatchSize      [2]int
	PatchPosemb    PosembConfig
	RegisterPosemb PosembConfig
	NullCond       NullCondKind
	NullCondSingle bool // LearnedNullCond.replace_with_single_token
	PerSubseqEmbs  bool
	MaskMode       string
	PadToMultiple  int
	MaxTimestep    float64
	FreqEmbSize    int
	HeadAdaLN      bool
	HeadNormEps    float64

	QuantsReadKey, NoiseReadKey, TimestepsReadKey, EvalKeepKReadKey, EvalDropFlagReadKey, OutputWriteKey string
}

// PosembConfig is a PositionalEmbeddingAdder.
type PosembConfig struct {
	Module   string // module_dict key
	Type     string // "sincos", "learnable_sum" or "learnable_prod"
	MaxSizes []int
	Scaling  string // "absolute" or "interpolate"
}

// PipelineConfig is the MinRFPipeline partial.
type PipelineConfig struct {
	OutChannels                                                                                        int
	NoiseReadKey, TargetSizesReadKey, LatentsReadKey, TimestepsReadKey, NoisedReadKey, ReconstWriteKey string
}

// Config is a validated FlexTok architecture.
type Config struct {
	Target   string // top-level _target_, "" when absent (HF config.json)
	VAE      VAEConfig
	Encoder  EncoderConfig
	FSQ      FSQConfig
	Decoder  DecoderConfig
	Pipeline PipelineConfig
	// ImageSize is the size the model states it runs at (the top-level "image_size", an SDK
	// extension; height, width), zero if it states none. See Geometry.
	ImageSize [2]int
}

// CodebookSize is the product of the FSQ levels.
func (c *Config) CodebookSize() int {
	n := 1
	for _, l := range c.FSQ.Levels {
		n *= l
	}
	return n
}

// TreeFromMetadata builds the config tree from safetensors metadata: each
// value is parsed as a Python literal, or kept as a string when that fails,
// exactly as the official loader does.
func TreeFromMetadata(meta []safetensors.MetaEntry) pyliteral.Value {
	root := pyliteral.Value{Kind: pyliteral.Dict, Dict: []pyliteral.Entry{}}
	for _, m := range meta {
		root.Dict = append(root.Dict, pyliteral.Entry{Key: pyliteral.StrValue(m.Key), Value: pyliteral.ParseOrString(m.Value)})
	}
	return root
}

// ParseConfigJSON parses a Hugging Face config.json (key order kept) and
// interprets it.
func ParseConfigJSON(data []byte, vaeJSON []byte) (*Config, error) {
	t, err := parseJSONTree(data)
	if err != nil {
		return nil, err
	}
	return ParseTree(t, vaeJSON)
}

// ParseTree interprets a config tree. vaeJSON is the diffusers config.json
// of the VAE when the config names one with hf_hub_path (nil otherwise, or
// when unknown: the layout is then filled by [Config.CheckWeights]).
func ParseTree(tree pyliteral.Value, vaeJSON []byte) (*Config, error) {
	root := node{v: tree}
	if tree.Kind != pyliteral.Dict {
		return nil, root.typeErr("a dict")
	}
	c := &Config{}
	if root.has("_target_") {
		t, err := root.target()
		if err != nil {
			return nil, err
		}
		if t != "FlexTok" && t != "FlexTokFromHub" {
			return nil, fmt.Errorf("%w: _target_: %s (want FlexTok)", ErrTarget, t)
		}
		c.Target, _ = root.str("_target_")
	}
	for _, step := range []struct {
		key string
		fn  func(node) error
	}{
		{"vae", func(n node) error { return c.parseVAE(n, vaeJSON) }},
		{"encoder", c.parseEncoder},
		{"regularizer", c.parseFSQ},
		{"decoder", c.parseDecoder},
		{"pipeline", c.parsePipeline},
	} {
		n, err := root.get(step.key)
		if err != nil {
			return nil, err
		}
		if err := step.fn(n); err != nil {
			return nil, err
		}
	}
	// Training only, but a required argument of FlexTok (flextok_wrapper.py:37); None is allowed.
	if _, ok := tree.Get("flow_matching_noise_module"); !ok {
		return nil, fmt.Errorf("%w: flow_matching_noise_module: missing (a required argument of the official FlexTok; "+
			"the SDK ignores its value, None included)", ErrConfig)
	}
	if err := c.checkKeys(); err != nil {
		return nil, err
	}
	if err := c.parseImageSize(root); err != nil {
		return nil, err
	}
	return c, nil
}

func expectTarget(n node, classes ...string) (string, error) {
	t, err := n.target()
	if err != nil {
		return "", err
	}
	for _, c := range classes {
		if t == c {
			return t, nil
		}
	}
	full, _ := n.str("_target_")
	return "", fmt.Errorf("%w: %s._target_: %s (want %s)", ErrTarget, pathOr(n.path), full, strings.Join(classes, " or "))
}

func (c *Config) parseVAE(n node, vaeJSON []byte) error {
	if _, err := expectTarget(n, "StableDiffusionVAE"); err != nil {
		return err
	}
	v := &c.VAE
	var err error
	get := func(k string) string {
		if err != nil {
			return ""
		}
		var s string
		s, err = n.str(k)
		return s
	}
	v.ImagesReadKey, v.LatentsReadKey = get("images_read_key"), get("vae_latents_read_key")
	v.LatentsWriteKey, v.ImagesReconstWriteKey = get("vae_latents_write_key"), get("images_reconst_write_key")
	if err != nil {
		return err
	}
	if v.LatentChannels, err = n.optIntIn("latent_channels", 16, 1, maxDim); err != nil {
		return err
	}
	// 0 (or absent): the VAE's own scaling factor.
	if v.ScalingFactor, err = n.optFloatIn("scaling_factor", 0, 0, 1e6); err != nil {
		return err
	}
	if v.SamplePosterior, err = n.optBool("sample_posterior", true); err != nil {
		return err
	}
	if v.DTypeOverride, err = n.optStr("dtype_override", "fp32"); err != nil {
		return err
	}
	if err = fp32Only(n); err != nil {
		return err
	}
	if v.HFHubPath, err = n.optStr("hf_hub_path", ""); err != nil {
		return err
	}
	if learn, err := n.optBool("learnable_logvar", false); err != nil || learn {
		if err == nil {
			err = fmt.Errorf("%w: %s: learnable_logvar=True is not supported", ErrConfig, n.child("learnable_logvar"))
		}
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
	if v.InChannels, err = d.optIntIn("in_channels", 3, 1, 64); err != nil {
		return err
	}
	if v.OutChannels, err = d.optIntIn("out_channels", 3, 1, 64); err != nil {
		return err
	}
	if v.LatentChannels, err = d.optIntIn("latent_channels", 4, 1, maxDim); err != nil {
		return err
	}
	if d.has("block_out_channels") {
		if v.BlockOutChannels, err = d.ints("block_out_channels"); err != nil {
			return err
		}
		if err = d.inRange("block_out_channels (count)", len(v.BlockOutChannels), 1, 8); err != nil {
			return err
		}
		for _, ch := range v.BlockOutChannels {
			if err = d.inRange("block_out_channels", ch, 1, maxDim); err != nil {
				return err
			}
		}
	} else {
		v.BlockOutChannels = []int{64}
	}
	if err = plainVAEBlocks(d, len(v.BlockOutChannels)); err != nil {
		return err
	}
	if v.LayersPerBlock, err = d.optIntIn("layers_per_block", 1, 1, maxVAEDepth); err != nil {
		return err
	}
	if v.NormGroups, err = d.optIntIn("norm_num_groups", 32, 1, maxDim); err != nil {
		return err
	}
	for _, f := range []struct {
		k string
		p *bool
	}{{"mid_block_add_attention", &v.MidBlockAttention}, {"use_quant_conv", &v.UseQuantConv}, {"use_post_quant_conv", &v.UsePostQuantConv}} {
		if *f.p, err = d.optBool(f.k, true); err != nil {
			return err
		}
	}
	if act, _ := d.optStr("act_fn", "silu"); act != "silu" {
		return fmt.Errorf("%w: %s.act_fn: %s (want silu)", ErrConfig, d.path, act)
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

// fp32Only refuses a dtype_override other than fp32 (or None, which is fp32 for the VAE wrapper and
// no autocast for the other modules): the official modules then autocast to bf16 or fp16, and the
// executors compute in float32 only.
func fp32Only(n node) error {
	dt, err := n.optStr("dtype_override", "fp32")
	if err != nil || dt == "fp32" || dt == "float32" {
		return err
	}
	return fmt.Errorf("%w: %s: %q: only fp32 (or None) is supported; the official module autocasts to bf16 or fp16, "+
		"and rejects other names", ErrConfig, n.child("dtype_override"), dt)
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

// moduleDict returns the ordered modules of a SequentialModuleDictWrapper.
func moduleDict(n node) ([]Module, map[string]node, error) {
	if _, err := expectTarget(n, "SequentialModuleDictWrapper"); err != nil {
		return nil, nil, err
	}
	md, err := n.get("module_dict")
	if err != nil {
		return nil, nil, err
	}
	if md.v.Kind != pyliteral.Dict {
		return nil, nil, md.typeErr("a dict")
	}
	var mods []Module
	nodes := map[string]node{}
	for _, e := range md.v.Dict {
		if e.Key.Kind != pyliteral.Str {
			return nil, nil, md.typeErr("string keys")
		}
		m := node{e.Value, md.child(e.Key.Str)}
		cls, err := m.target()
		if err != nil {
			return nil, nil, err
		}
		if !knownModules[cls] {
			full, _ := m.str("_target_")
			return nil, nil, fmt.Errorf("%w: %s._target_: %s", ErrTarget, m.path, full)
		}
		mods = append(mods, Module{e.Key.Str, cls})
		nodes[e.Key.Str] = m
	}
	return mods, nodes, nil
}

// knownModules are the module classes a module_dict may hold (fact sheet §5.3).
var knownModules = map[string]bool{
	"PerSampleOp": true, "PatchEmbedder": true, "PositionalEmbeddingAdder": true, "Registers1D": true,
	"BlockWiseSequencePacker": true, "FlexTransformer": true, "SequenceUnpacker": true, "LinearHead": true,
	"LinearLayer": true, "MaskedNestedDropout": true, "ZeroNullCond": true, "LearnedNullCond": true,
	"TimestepEmbedder": true, "ToPatchesLinearHead": true, "DictKeyFilter": true,
}

// findOne returns the single module of one of the classes, in order.
func findOne(mods []Module, nodes map[string]node, where string, classes ...string) (node, error) {
	var found []node
	for _, m := range mods {
		for _, c := range classes {
			if m.Class == c {
				found = append(found, nodes[m.Name])
			}
		}
	}
	if len(found) != 1 {
		return node{}, fmt.Errorf("%w: %s: want exactly one %s, found %d", ErrConfig, where, strings.Join(classes, " or "), len(found))
	}
	return found[0], nil
}

// findAll returns the modules of the class, in order.
func findAll(mods []Module, nodes map[string]node, class string) []node {
	var out []node
	for _, m := range mods {
		if m.Class == class {
			out = append(out, nodes[m.Name])
		}
	}
	return out
}

// parseNormEps reads the norm_layer partial at key of n and returns its eps. The official
// default (key absent) is a non-affine Fp32LayerNorm with eps 1e-5. A norm_layer that is given
// builds Fp32LayerNorm = nn.LayerNorm with that dict's arguments, whose elementwise_affine
// defaults to True: only an explicit elementwise_affine=False is the non-affine norm the executors
// run (bias is then unused: nn.LayerNorm only makes a bias when it is affine). head is true for
// the heads, where None means no norm at all; a trunk cannot be built with None.
func parseNormEps(n node, key string, head bool) (float64, error) {
	if n.isNone(key) {
		if head {
			return 0, fmt.Errorf("%w: %s: None (the head then applies no LayerNorm) is not supported; "+
				"leave it out or give a Fp32LayerNorm with elementwise_affine=False", ErrConfig, n.child(key))
		}
		return 0, fmt.Errorf("%w: %s: None (the official blocks cannot be built without a norm layer); "+
			"leave it out or give a Fp32LayerNorm with elementwise_affine=False", ErrConfig, n.child(key))
	}
	if !n.has(key) {
		return 1e-5, nil
	}
	nl, _ := n.get(key)
	if _, err := expectTarget(nl, "Fp32LayerNorm"); err != nil {
		return 0, err
	}
	if v, ok := nl.v.Get("elementwise_affine"); !ok || v.Kind != pyliteral.Bool || v.Bool {
		got := "absent (nn.LayerNorm's default: True)"
		if ok {
			got = trunc(v.String())
		}
		return 0, fmt.Errorf("%w: %s: %s: affine LayerNorms are not supported; want elementwise_affine=False",
			ErrConfig, nl.child("elementwise_affine"), got)
	}
	if _, err := nl.optBool("bias", true); err != nil { // unused without elementwise_affine
		return 0, err
	}
	return nl.optFloat("eps", 1e-5)
}

func parseTrunk(n node) (TrunkConfig, error) {
	var t TrunkConfig
	var err error
	if t.Width, err = n.optIntIn("dim", 768, 1, maxDim); err != nil {
		return t, err
	}
	if t.Depth, err = n.optIntIn("depth", 12, 1, maxDepth); err != nil {
		return t, err
	}
	if t.HeadDim, err = n.optIntIn("head_dim", 64, 1, maxDim); err != nil {
		return t, err
	}
	if t.MLPRatio, err = n.optFloatIn("mlp_ratio", 4, 0, 64); err != nil {
		return t, err
	}
	flags := []struct {
		k   string
		p   *bool
		def bool
	}{{"qkv_bias", &t.QKVBias, false}, {"proj_bias", &t.ProjBias, false}, {"mlp_bias", &t.MLPBias, false}, {"gated_mlp", &t.Gated, true}, {"qk_norm", &t.QKNorm, true}}
	for _, f := range flags {
		if *f.p, err = n.optBool(f.k, f.def); err != nil {
			return t, err
		}
	}
	if n.has("act_layer") {
		return t, fmt.Errorf("%w: %s: only the default SiLU is supported", ErrConfig, n.child("act_layer"))
	}
	if n.has("rope_forward_read_key") {
		return t, fmt.Errorf("%w: %s: RoPE is not supported", ErrConfig, n.child("rope_forward_read_key"))
	}
	if n.has("score_mod_read_key") { // no FlexTok module writes one: the official trunk fails
		return t, fmt.Errorf("%w: %s: attention score modifiers are not supported", ErrConfig, n.child("score_mod_read_key"))
	}
	if t.NormEps, err = parseNormEps(n, "norm_layer", false); err != nil {
		return t, err
	}
	if t.Width < 1 || t.Depth < 1 || t.HeadDim < 1 || t.Width%t.HeadDim != 0 {
		return t, fmt.Errorf("%w: %s: dim %d, depth %d, head_dim %d (dim must be a positive multiple of head_dim)", ErrConfig, n.path, t.Width, t.Depth, t.HeadDim)
	}
	t.Heads = t.Width / t.HeadDim
	t.MLPHidden = int(float64(t.Width) * t.MLPRatio)
	if t.Gated {
		t.MLPHidden = int(2 * float64(t.MLPHidden) / 3)
	}
	if t.MLPHidden < 1 {
		return t, fmt.Errorf("%w: %s.mlp_ratio: %v gives no hidden units", ErrConfig, n.path, t.MLPRatio)
	}
	if n.has("adaLN_emb_read_key") {
		if t.AdaLNExpansion, err = n.optInt("adaLN_expansion", 1); err != nil {
			return t, err
		}
		if t.AdaLNExpansion < 1 || t.AdaLNExpansion > 2 {
			return t, fmt.Errorf("%w: %s.adaLN_expansion: %d (want 1 or 2)", ErrConfig, n.path, t.AdaLNExpansion)
		}
	}
	return t, nil
}

func patchSizes(n node) ([2]int, error) {
	ps, err := n.ints("patch_sizes")
	if err != nil {
		return [2]int{}, err
	}
	if len(ps) != 2 || ps[0] < 1 || ps[1] < 1 {
		return [2]int{}, fmt.Errorf("%w: %s.patch_sizes: %v (want two positive sizes)", ErrConfig, n.path, ps)
	}
	return [2]int{ps[0], ps[1]}, nil
}

func parsePosemb(n node, dim int) (PosembConfig, error) {
	var p PosembConfig
	var err error
	if p.MaxSizes, err = n.ints("max_sizes"); err != nil {
		return p, err
	}
	if p.Type, err = n.optStr("posemb_type", "sincos"); err != nil {
		return p, err
	}
	if p.Scaling, err = n.optStr("posemb_scaling", "absolute"); err != nil {
		return p, err
	}
	if d, err := n.int("dim"); err != nil || d != dim {
		if err == nil {
			err = fmt.Errorf("%w: %s.dim: %d, but the trunk width is %d", ErrConfig, n.path, d, dim)
		}
		return p, err
	}
	switch p.Type {
	case "sincos":
		if len(p.MaxSizes) != 2 || dim%4 != 0 {
			return p, fmt.Errorf("%w: %s: sincos needs 2 max_sizes and dim divisible by 4", ErrConfig, n.path)
		}
	case "learnable_sum", "learnable_prod":
		for _, s := range p.MaxSizes {
			if s != p.MaxSizes[0] {
				return p, fmt.Errorf("%w: %s.max_sizes: %v must be equal", ErrConfig, n.path, p.MaxSizes)
			}
		}
		if len(p.MaxSizes) < 1 || len(p.MaxSizes) > 2 {
			return p, fmt.Errorf("%w: %s.max_sizes: %v (1 or 2 dims)", ErrConfig, n.path, p.MaxSizes)
		}
	default:
		return p, fmt.Errorf("%w: %s.posemb_type: %q", ErrConfig, n.path, p.Type)
	}
	if p.Scaling != "absolute" {
		return p, fmt.Errorf("%w: %s.posemb_scaling: %q (only absolute)", ErrConfig, n.path, p.Scaling)
	}
	for _, s := range p.MaxSizes {
		if s < 1 {
			return p, fmt.Errorf("%w: %s.max_sizes: %v", ErrConfig, n.path, p.MaxSizes)
		}
	}
	return p, nil
}

// perSampleOp returns the function name of a PerSampleOp.
func perSampleOp(n node) (string, error) {
	op, err := n.get("per_sample_op")
	if err != nil {
		return "", err
	}
	return expectTarget(op, "channels_first_to_last", "channels_last_to_first")
}

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
	tr, err := findOne(mods, nodes, n.path, "FlexTransformer")
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
	pe, err := findOne(mods, nodes, n.path, "PatchEmbedder")
	if err != nil {
		return err
	}
	if e.PatchSize, err = patchSizes(pe); err != nil {
		return err
	}
	if e.ChannelsIn, err = pe.int("channels_in"); err != nil {
		return err
	}
	if d, err := pe.int("dim"); err != nil || d != W {
		return dimErr(pe, d, W, err)
	}
	if e.InputReadKey, err = pe.str("input_tensor_list_read_key"); err != nil {
		return err
	}
	if err := unflattened(pe); err != nil {
		return err
	}
	patches, err := pe.str("patches_list_write_key")
	if err != nil {
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
	pm, err := findOne(mods, nodes, n.path, "PositionalEmbeddingAdder")
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
	rg, err := findOne(mods, nodes, n.path, "Registers1D")
	if err != nil {
		return err
	}
	if e.RegistersNMin, err = rg.int("n_min"); err != nil {
		return err
	}
	if e.RegistersNMax, err = rg.int("n_max"); err != nil {
		return err
	}
	if d, err := rg.int("dim"); err != nil || d != W {
		return dimErr(rg, d, W, err)
	}
	if rg.has("extra_registers_write_key") {
		return fmt.Errorf("%w: %s.extra_registers_write_key: not supported", ErrConfig, rg.path)
	}
	if om, _ := rg.optStr("ordering_mode", "nested"); om != "nested" {
		return fmt.Errorf("%w: %s.ordering_mode: %q (only nested)", ErrConfig, rg.path, om)
	}
	if e.RegistersWriteKey, err = rg.str("registers_write_key"); err != nil {
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
	pk, err := findOne(mods, nodes, n.path, "BlockWiseSequencePacker")
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
	hd, err := findOne(mods, nodes, n.path, "LinearHead")
	if err != nil {
		return err
	}
	if r, err := hd.str("read_key"); err != nil || r != out[1] {
		if err == nil {
			err = fmt.Errorf("%w: %s.read_key: %q; want %q, the registers as the unpacker gives them back from the trunk", ErrConfig, hd.path, r, out[1])
		}
		return err
	}
	if err := fp32Only(hd); err != nil {
		return err
	}
	if e.LatentDim, err = hd.int("dim_out"); err != nil {
		return err
	}
	if d, err := hd.int("dim"); err != nil || d != W {
		return dimErr(hd, d, W, err)
	}
	if err := noMup(hd); err != nil {
		return err
	}
	if hd.has("adaLN_emb_read_key") {
		return fmt.Errorf("%w: %s.adaLN_emb_read_key: the encoder head has no adaLN", ErrConfig, hd.path)
	}
	if e.HeadNormEps, err = parseNormEps(hd, "norm_layer", true); err != nil {
		return err
	}
	if e.OutputWriteKey, err = hd.str("write_key"); err != nil {
		return err
	}
	return nil
}

// unflattened refuses a PatchEmbedder that flattens its patch grid. flatten_patches defaults to
// True officially (patching.py:175); a flattened (B, n1*n2, D) list cannot take the 2-D sin-cos
// position embedding the executors add (posembs.py crops and broadcasts it to a different shape
// or fails) nor be unpatchified by ToPatchesLinearHead, so only an explicit False matches.
func unflattened(pe node) error {
	v, ok := pe.v.Get("flatten_patches")
	if ok && v.Kind == pyliteral.Bool && !v.Bool {
		return nil
	}
	got := "absent (the official default: True)"
	if ok {
		got = trunc(v.String())
	}
	return fmt.Errorf("%w: %s: %s: only flatten_patches=False (patches kept as a 2-D grid) is supported", ErrConfig, pe.child("flatten_patches"), got)
}

// posembKeys checks that the position embedding pm reads key (what its part is written to
// before it) and returns the key it writes: the key that part goes on under.
func posembKeys(pm node, key, what string) (string, error) {
	r, err := pm.str("read_key")
	if err != nil {
		return "", err
	}
	if r != key {
		return "", fmt.Errorf("%w: %s.read_key: %q; want %q, %s", ErrConfig, pm.path, r, key, what)
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
	if !sameKeys(in, parts) {
		return nil, fmt.Errorf("%w: %s.input_list_read_keys: %q; want %q (%s)", ErrConfig, pk.path, in, parts, what)
	}
	seq, err := pk.str("packed_seq_write_key")
	if err != nil {
		return nil, err
	}
	if r, err := tr.str("input_seq_read_key"); err != nil || r != seq {
		if err == nil {
			err = fmt.Errorf("%w: %s.input_seq_read_key: %q; want %q, the packer's packed_seq_write_key", ErrConfig, tr.path, r, seq)
		}
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
	if r, err := tr.str("block_mask_read_key"); err != nil || r != mask {
		if err == nil {
			err = fmt.Errorf("%w: %s.block_mask_read_key: %q; want %q, the packer's block_mask_write_key", ErrConfig, tr.path, r, mask)
		}
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

func sameKeys(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func noMup(n node) error {
	if _, ok := n.v.Get("use_mup_readout"); !ok {
		return fmt.Errorf("%w: %s.use_mup_readout: missing (the official head requires it); want False", ErrConfig, n.path)
	}
	if b, err := n.optBool("use_mup_readout", false); err != nil || b {
		if err == nil {
			err = fmt.Errorf("%w: %s.use_mup_readout: True needs mup base shapes; not supported", ErrConfig, n.path)
		}
		return err
	}
	if b, err := n.optBool("proj_bias", true); err != nil || !b {
		if err == nil {
			err = fmt.Errorf("%w: %s.proj_bias: False is not supported", ErrConfig, n.path)
		}
		return err
	}
	return nil
}

func dimErr(n node, got, want int, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s.dim: %d, but the trunk width is %d", ErrConfig, n.path, got, want)
}

func (c *Config) parseFSQ(n node) error {
	if _, err := expectTarget(n, "FSQ"); err != nil {
		return err
	}
	f := &c.FSQ
	var err error
	if f.Levels, err = n.ints("levels"); err != nil {
		return err
	}
	size := 1
	for _, l := range f.Levels {
		if l < 2 || size > 1<<31/l {
			return fmt.Errorf("%w: %s.levels: %v", ErrConfig, n.path, f.Levels)
		}
		size *= l
	}
	if len(f.Levels) == 0 {
		return fmt.Errorf("%w: %s.levels: empty", ErrConfig, n.path)
	}
	if f.LatentsReadKey, err = n.str("latents_read_key"); err != nil {
		return err
	}
	if f.QuantsWriteKey, err = n.str("quants_write_key"); err != nil {
		return err
	}
	if f.TokensWriteKey, err = n.str("tokens_write_key"); err != nil {
		return err
	}
	return nil
}

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
	var opRead, opWrite string
	// The data_dict keys of the two parts: the registers (quants) and the patches, the nodes whose
	// keys are compared after the loop, and the time embedding.
	var quants, patches, temb string
	var regPosemb, patchPosemb, pk, hd node
	var regUsers []node // read_write_key must be the registers' key
	for _, m := range mods {
		mn := nodes[m.Name]
		switch m.Class {
		case "LinearLayer":
			if d.LatentDim, err = mn.int("dim_in"); err != nil {
				return err
			}
			if w, err := mn.int("dim"); err != nil || w != W {
				return dimErr(mn, w, W, err)
			}
			if b, err := mn.optBool("proj_bias", true); err != nil || !b {
				if err == nil {
					err = fmt.Errorf("%w: %s.proj_bias: False is not supported", ErrConfig, mn.path)
				}
				return err
			}
			if d.QuantsReadKey, err = mn.str("read_key"); err != nil {
				return err
			}
			if quants, err = mn.str("write_key"); err != nil {
				return err
			}
			if err := fp32Only(mn); err != nil {
				return err
			}
		case "PositionalEmbeddingAdder":
			p, err := parsePosemb(mn, W)
			if err != nil {
				return err
			}
			p.Module = m.Name
			if p.Type == "sincos" {
				d.PatchPosemb, patchPosemb = p, mn
			} else {
				d.RegisterPosemb, regPosemb = p, mn
			}
		case "MaskedNestedDropout":
			if w, err := mn.int("dim"); err != nil || w != W {
				return dimErr(mn, w, W, err)
			}
			if mn.isNone("eval_keep_k_read_key") {
				return fmt.Errorf("%w: %s.eval_keep_k_read_key: None (the official module then does nothing at eval: "+
					"no truncation to the given tokens) is not supported; leave it out or name a key", ErrConfig, mn.path)
			}
			if d.EvalKeepKReadKey, err = mn.optStr("eval_keep_k_read_key", "eval_keep_k"); err != nil {
				return err
			}
			regUsers = append(regUsers, mn)
		case "ZeroNullCond", "LearnedNullCond":
			d.NullCond = NullCondZero
			if m.Class == "LearnedNullCond" {
				d.NullCond = NullCondLearned
				if w, err := mn.int("dim"); err != nil || w != W {
					return dimErr(mn, w, W, err)
				}
				if d.NullCondSingle, err = mn.optBool("replace_with_single_token", false); err != nil {
					return err
				}
			}
			// The official pipeline marks the unconditional pass under this one key
			// (pipelines.py:132): under any other key, or None, the null condition is never applied.
			if mn.isNone("eval_drop_flag_read_key") {
				return fmt.Errorf("%w: %s.eval_drop_flag_read_key: None (the official module then does nothing at eval: "+
					"guidance without a null condition) is not supported; want \"eval_dropout_mask\"", ErrConfig, mn.path)
			}
			if d.EvalDropFlagReadKey, err = mn.optStr("eval_drop_flag_read_key", "eval_dropout_mask"); err != nil {
				return err
			}
			if d.EvalDropFlagReadKey != "eval_dropout_mask" {
				return fmt.Errorf("%w: %s.eval_drop_flag_read_key: %q (the official pipeline sets only \"eval_dropout_mask\", so the "+
					"null condition is never applied); want \"eval_dropout_mask\"", ErrConfig, mn.path, d.EvalDropFlagReadKey)
			}
			regUsers = append(regUsers, mn)
		case "PerSampleOp":
			op, err := perSampleOp(mn)
			if err != nil {
				return err
			}
			if op == "channels_first_to_last" {
				if opRead, err = mn.str("read_key"); err != nil {
					return err
				}
				if opWrite, err = mn.str("write_key"); err != nil {
					return err
				}
			}
		case "PatchEmbedder":
			if d.PatchSize, err = patchSizes(mn); err != nil {
				return err
			}
			if d.ChannelsIn, err = mn.int("channels_in"); err != nil {
				return err
			}
			if w, err := mn.int("dim"); err != nil || w != W {
				return dimErr(mn, w, W, err)
			}
			if d.NoiseReadKey, err = mn.str("input_tensor_list_read_key"); err != nil {
				return err
			}
			if err := unflattened(mn); err != nil {
				return err
			}
			if patches, err = mn.str("patches_list_write_key"); err != nil {
				return err
			}
		case "BlockWiseSequencePacker":
			if d.MaskMode, err = mn.optStr("mask_mode", "full"); err != nil {
				return err
			}
			if d.PadToMultiple, err = mn.optIntIn("pad_to_multiple", 0, 0, maxDim); err != nil {
				return err
			}
			if d.PerSubseqEmbs, err = mn.optBool("per_subseq_embs", false); err != nil {
				return err
			}
			pk = mn
		case "TimestepEmbedder":
			if d.MaxTimestep, err = mn.optFloatIn("max_timestep", 1000, 1e-6, 1e9); err != nil {
				return err
			}
			if d.FreqEmbSize, err = mn.optInt("frequency_embedding_size", 256); err != nil {
				return err
			}
			if w, err := mn.int("dim"); err != nil || w != W {
				return dimErr(mn, w, W, err)
			}
			if d.TimestepsReadKey, err = mn.str("timesteps_read_key"); err != nil {
				return err
			}
			if temb, err = mn.str("time_embedding_write_key"); err != nil {
				return err
			}
			if b, _ := mn.optBool("temb_as_tokens", false); b {
				return fmt.Errorf("%w: %s.temb_as_tokens: not supported", ErrConfig, mn.path)
			}
		case "ToPatchesLinearHead":
			if d.ChannelsOut, err = mn.int("channels_out"); err != nil {
				return err
			}
			if w, err := mn.int("dim"); err != nil || w != W {
				return dimErr(mn, w, W, err)
			}
			if err := noMup(mn); err != nil {
				return err
			}
			d.HeadAdaLN = mn.has("adaLN_emb_read_key")
			if mn.has("adaLN_packing_fn_read_key") {
				// The packer's function spreads over patches and registers; the head reads the patches only.
				return fmt.Errorf("%w: %s.adaLN_packing_fn_read_key: not supported (the packer's function spans the registers too); "+
					"leave it out: the head then spreads the embedding over its own tokens", ErrConfig, mn.path)
			}
			if err := fp32Only(mn); err != nil {
				return err
			}
			hd = mn
			if d.HeadNormEps, err = parseNormEps(mn, "norm_layer", true); err != nil {
				return err
			}
			if ps, err := patchSizes(mn); err != nil || ps != d.PatchSize {
				if err == nil {
					err = fmt.Errorf("%w: %s.patch_sizes: %v differs from the patch embedder's %v", ErrConfig, mn.path, ps, d.PatchSize)
				}
				return err
			}
		case "FlexTransformer", "SequenceUnpacker", "DictKeyFilter":
		default:
			return fmt.Errorf("%w: %s: %s is not a decoder module", ErrTarget, mn.path, m.Class)
		}
	}
	for _, need := range []string{"LinearLayer", "MaskedNestedDropout", "PatchEmbedder", "BlockWiseSequencePacker", "TimestepEmbedder", "ToPatchesLinearHead"} {
		if _, err := findOne(mods, nodes, n.path, need); err != nil {
			return err
		}
	}
	if _, err := findOne(mods, nodes, n.path, "ZeroNullCond", "LearnedNullCond"); err != nil {
		return err
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
		if r, err := u.str("read_write_key"); err != nil || r != regs {
			if err == nil {
				err = fmt.Errorf("%w: %s.read_write_key: %q; want %q, the position-embedded registers", ErrConfig, u.path, r, regs)
			}
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
	if r, err := hd.str("read_key"); err != nil || r != out[0] {
		if err == nil {
			err = fmt.Errorf("%w: %s.read_key: %q; want %q, the patches as the unpacker gives them back from the trunk", ErrConfig, hd.path, r, out[0])
		}
		return err
	}
	for _, h := range []node{tr, hd} {
		if !h.has("adaLN_emb_read_key") {
			continue
		}
		if r, err := h.str("adaLN_emb_read_key"); err != nil || r != temb {
			if err == nil {
				err = fmt.Errorf("%w: %s.adaLN_emb_read_key: %q; want %q, the time embedder's time_embedding_write_key", ErrConfig, h.path, r, temb)
			}
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

func (c *Config) parsePipeline(n node) error {
	if _, err := expectTarget(n, "MinRFPipeline"); err != nil {
		return err
	}
	if b, err := n.optBool("_partial_", false); err != nil || !b {
		if err == nil {
			err = fmt.Errorf("%w: %s._partial_: the pipeline must be a partial (FlexTok calls it with model=)", ErrConfig, n.path)
		}
		return err
	}
	p := &c.Pipeline
	var err error
	if p.OutChannels, err = n.optInt("out_channels", 0); err != nil {
		return err
	}
	for _, f := range []struct {
		k string
		p *string
	}{{"noise_read_key", &p.NoiseReadKey}, {"target_sizes_read_key", &p.TargetSizesReadKey}, {"latents_read_key", &p.LatentsReadKey},
		{"timesteps_read_key", &p.TimestepsReadKey}, {"noised_images_read_key", &p.NoisedReadKey}, {"reconst_write_key", &p.ReconstWriteKey}} {
		if *f.p, err = n.optStr(f.k, ""); err != nil {
			return err
		}
	}
	return nil
}

// checkKeys applies the data_dict consistency rules (fact sheet §5.4) and
// the dimension links between the parts.
func (c *Config) checkKeys() error {
	eq := func(aName, a, bName, b string) error {
		if a != b {
			return fmt.Errorf("%w: %s = %q but %s = %q", ErrKeys, aName, a, bName, b)
		}
		return nil
	}
	p, v, d, e, f := c.Pipeline, c.VAE, c.Decoder, c.Encoder, c.FSQ
	for _, chk := range []error{
		eq("pipeline.reconst_write_key", p.ReconstWriteKey, "vae.vae_latents_read_key", v.LatentsReadKey),
		eq("pipeline.reconst_write_key", p.ReconstWriteKey, "decoder's last write_key", d.OutputWriteKey),
		eq("pipeline.latents_read_key", p.LatentsReadKey, "regularizer.quants_write_key", f.QuantsWriteKey),
		eq("pipeline.timesteps_read_key", p.TimestepsReadKey, "dec_time_embedder.timesteps_read_key", d.TimestepsReadKey),
		eq("regularizer.quants_write_key", f.QuantsWriteKey, "dec_from_latents.read_key", d.QuantsReadKey),
		eq("regularizer.latents_read_key", f.LatentsReadKey, "enc_to_latents.write_key", e.OutputWriteKey),
		eq("vae.vae_latents_write_key", v.LatentsWriteKey, "encoder input read_key", e.InputReadKey),
	} {
		if chk != nil {
			return chk
		}
	}
	if err := eq("pipeline.noised_images_read_key", p.NoisedReadKey, "decoder noise input", d.NoiseReadKey); err != nil {
		return err
	}
	dims := []struct {
		what      string
		got, want int
	}{
		{"encoder.enc_patch_emb.channels_in vs vae latent_channels", e.ChannelsIn, v.LatentChannels},
		{"decoder noise channels_in vs vae latent_channels", d.ChannelsIn, v.LatentChannels},
		{"decoder channels_out vs vae latent_channels", d.ChannelsOut, v.LatentChannels},
		{"encoder head dim_out vs FSQ levels", e.LatentDim, len(f.Levels)},
		{"dec_from_latents.dim_in vs FSQ levels", d.LatentDim, len(f.Levels)},
	}
	if p.OutChannels != 0 {
		dims = append(dims, struct {
			what      string
			got, want int
		}{"pipeline.out_channels vs vae latent_channels", p.OutChannels, v.LatentChannels})
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
