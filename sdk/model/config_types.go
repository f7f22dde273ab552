package model

import "errors"

// The types of a parsed config. ParseTree (config.go) fills them; every field is a plain value,
// checked on the way in, and no field refers back to the tree.

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
