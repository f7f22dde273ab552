package model

import (
	"fmt"
	"strings"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
)

// The config parser's entry points and the parts that every section shares: the order of the
// sections, the module_dict reader and the small FSQ and pipeline sections. The sections have
// their own files: config_vae.go, config_layers.go (what the encoder and the decoder share),
// config_encoder.go, config_decoder.go and config_keys.go (the data_dict wiring).

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
	return n.read(reqStr("latents_read_key", &f.LatentsReadKey), reqStr("quants_write_key", &f.QuantsWriteKey),
		reqStr("tokens_write_key", &f.TokensWriteKey))
}

func (c *Config) parsePipeline(n node) error {
	if _, err := expectTarget(n, "MinRFPipeline"); err != nil {
		return err
	}
	p := &c.Pipeline
	return n.read(
		wantBool("_partial_", false, true, "the pipeline must be a partial (FlexTok calls it with model=)"),
		optInt("out_channels", &p.OutChannels, 0),
		optStr("noise_read_key", &p.NoiseReadKey, ""), optStr("target_sizes_read_key", &p.TargetSizesReadKey, ""),
		optStr("latents_read_key", &p.LatentsReadKey, ""), optStr("timesteps_read_key", &p.TimestepsReadKey, ""),
		optStr("noised_images_read_key", &p.NoisedReadKey, ""), optStr("reconst_write_key", &p.ReconstWriteKey, ""),
	)
}
