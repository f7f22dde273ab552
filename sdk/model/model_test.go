package model

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
)

func readTestdata(t *testing.T) (cfg, vae []byte) {
	t.Helper()
	cfg, err := os.ReadFile("testdata/tiny_config.json")
	if err != nil {
		t.Fatal(err)
	}
	vae, err = os.ReadFile("testdata/tiny_vae_config.json")
	if err != nil {
		t.Fatal(err)
	}
	return cfg, vae
}

// synth writes a checkpoint whose metadata is the Python repr of each
// top-level config key (as save_safetensors does) and whose weights follow
// ExpectedTensors; rename and reshape alter one weight.
func synth(t *testing.T, tree pyliteral.Value, vae []byte, rename func(string) string, reshape map[string][]int) []byte {
	t.Helper()
	c, err := ParseTree(tree, vae)
	if err != nil {
		t.Fatal(err)
	}
	var w safetensors.Writer
	for _, e := range tree.Dict {
		s := e.Value.String()
		if e.Value.Kind == pyliteral.Str { // str(v) of a str is the bare text
			s = e.Value.Str
		}
		w.SetMetadata(e.Key.Str, s)
	}
	for _, x := range c.ExpectedTensors() {
		shape := x.Shape
		if s, ok := reshape[x.Name]; ok {
			shape = s
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		name := x.Name
		if rename != nil {
			name = rename(name)
		}
		if err := w.AddFloat32(name, safetensors.BF16, shape, make([]float32, n)); err != nil {
			t.Fatal(err)
		}
	}
	return w.Bytes()
}

func TestMetadataRoundTrip(t *testing.T) {
	cfgJSON, vae := readTestdata(t)
	tree, err := parseJSONTree(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	data := synth(t, tree, vae, nil, nil)
	f, err := safetensors.OpenBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := load(f, nil, vae)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if m.ConfigSource != "metadata" || c.Target != "flextok.flextok_wrapper.FlexTok" {
		t.Fatal(m.ConfigSource, c.Target)
	}
	if c.Decoder.Modules[0].Name != "dec_from_latents" || c.Decoder.Modules[len(c.Decoder.Modules)-1].Name != "dec_channels_to_first" {
		t.Fatalf("module order %v", c.Decoder.Modules)
	}
	if c.VAE.ScalingFactor != 0.75 || c.VAE.SamplePosterior || c.VAE.NormGroups < 1 || c.Decoder.Trunk.AdaLNExpansion != 2 || c.Encoder.Trunk.MLPHidden != 85 {
		t.Fatalf("%+v", c)
	}
	if c.CodebookSize() != 64000 || c.Decoder.NullCond != NullCondZero || c.Encoder.MaskMode != "causal_last" {
		t.Fatal(c)
	}
	s := Summarize(m)
	if !strings.Contains(s.String(), "research use only") || s.DTypes["BF16"] == 0 || s.TotalParams == 0 {
		t.Fatal(s)
	}

	// Without the VAE config.json the model is refused, naming what is missing: the group
	// count is not in the weights, and a guessed one decodes wrong silently.
	_, err = load(f, nil, nil)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "hf_hub_path") ||
		!strings.Contains(err.Error(), "norm_num_groups") || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("want a refusal naming the missing VAE config.json, got %v", err)
	}
}

func TestWeightNames(t *testing.T) {
	cfgJSON, vae := readTestdata(t)
	tree, _ := parseJSONTree(cfgJSON)
	// Wrapped blocks and old attention names are accepted.
	data := synth(t, tree, vae, func(s string) string {
		s = strings.Replace(s, ".blocks.0.", ".blocks.0._checkpoint_wrapped_module.", 1)
		return strings.Replace(s, "attentions.0.to_q.", "attentions.0.query.", 1)
	}, nil)
	f, _ := safetensors.OpenBytes(data)
	m, err := load(f, nil, vae)
	if err != nil {
		t.Fatal(err)
	}
	key := m.Report.Key[Block(BlockWQ, DecoderPrefix, "dec_transformer", 0)]
	if !strings.Contains(key, "_checkpoint_wrapped_module") {
		t.Fatal(key)
	}
	if _, err := m.Tensor(VAEPrefix + "encoder.mid_block.attentions.0.to_q.weight"); err != nil {
		t.Fatal(err)
	}

	// A wrong shape names the key and the expected shape.
	bad := Block(BlockAdaLN, DecoderPrefix, "dec_transformer", 0)
	data = synth(t, tree, vae, nil, map[string][]int{bad: {192, 32}})
	f, _ = safetensors.OpenBytes(data)
	_, err = load(f, nil, vae)
	if !errors.Is(err, ErrWeights) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "[384 32]") {
		t.Fatal(err)
	}
	// A missing tensor too.
	data = synth(t, tree, vae, func(s string) string { return strings.Replace(s, "dropout_mask_token", "x", 1) }, nil)
	f, _ = safetensors.OpenBytes(data)
	if _, err = load(f, nil, vae); !errors.Is(err, ErrWeights) || !strings.Contains(err.Error(), "dropout_mask_token") {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	cfgJSON, vae := readTestdata(t)
	cases := []struct {
		old, new string
		want     error
		path     string
	}{
		{`"flextok.model.preprocessors.nullcond.ZeroNullCond"`, `"torch.nn.Identity"`, ErrTarget, "decoder.module_dict.dec_latent_dropout"},
		{`"depth": 1,`, `"depth": "one",`, ErrConfig, "encoder.module_dict.enc_transformer.depth"},
		{`"reconst_write_key": "vae_latents_reconst"`, `"reconst_write_key": "other"`, ErrKeys, "pipeline.reconst_write_key"},
		{`"quants_write_key": "enc_registers_quant"`, `"quants_write_key": "q"`, ErrKeys, "regularizer.quants_write_key"},
		{"\"_partial_\": true,\n    \"target_sizes_read_key\"", "\"_partial_\": false,\n    \"target_sizes_read_key\"", ErrConfig, "pipeline._partial_"},
		{`"adaLN_expansion": 2`, `"adaLN_expansion": 3`, ErrConfig, "adaLN_expansion"},
	}
	for _, c := range cases {
		src := strings.Replace(string(cfgJSON), c.old, c.new, 1)
		if src == string(cfgJSON) {
			t.Fatalf("case %q did not apply", c.old)
		}
		_, err := ParseConfigJSON([]byte(src), vae)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.path) || !strings.HasPrefix(err.Error(), "flextok/model: ") {
			t.Errorf("%s: got %v", c.path, err)
		}
	}
	// HF config.json without a top-level _target_ is accepted.
	src := strings.Replace(string(cfgJSON), `"_target_": "flextok.flextok_wrapper.FlexTok",`, "", 1)
	c, err := ParseConfigJSON([]byte(src), vae)
	if err != nil || c.Target != "" {
		t.Fatal(err)
	}
	// Metadata values that are not literals stay strings, and then fail typed.
	tree := TreeFromMetadata([]safetensors.MetaEntry{{Key: "vae", Value: "{'a': inf}"}})
	if _, err := ParseTree(tree, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "vae") {
		t.Fatal(err)
	}
}

// TestExpectedTensorsEmptyVAE: a hand-built config without VAE blocks must not panic.
func TestExpectedTensorsEmptyVAE(t *testing.T) {
	var c Config
	for _, x := range c.ExpectedTensors() {
		if strings.HasPrefix(x.Name, VAEPrefix) {
			t.Fatalf("VAE tensor %s for a config without VAE blocks", x.Name)
		}
	}
}

// TestBaseVAEHint: a config whose vae has no hf_hub_path (None) expects the official base VAE
// layout; weights of another VAE are refused saying so.
func TestBaseVAEHint(t *testing.T) {
	cfgJSON, vae := readTestdata(t)
	tree, _ := parseJSONTree(cfgJSON)
	f, err := safetensors.OpenBytes(synth(t, tree, vae, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	none, err := parseJSONTree([]byte(strings.Replace(string(cfgJSON), `"hf_hub_path": "vae"`, `"hf_hub_path": null`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseTree(none, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CheckWeights(f.Tensors())
	if !errors.Is(err, ErrWeights) || !strings.Contains(err.Error(), "no hf_hub_path, so the official base VAE layout is expected") {
		t.Fatalf("want the base-layout hint, got %v", err)
	}
	// With hf_hub_path and its config the same weights load, and no error carries the hint.
	if _, err := load(f, nil, vae); err != nil {
		t.Fatal(err)
	}
}
