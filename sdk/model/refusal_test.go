package model

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
)

// The tests of this file mutate the known-good tiny config (testdata/tiny_config.json, a copy of
// the official tiny checkpoints' layout) one key at a time, in the places where the official code
// would compute something other than the executors, and check that the parser refuses each one
// with ErrConfig, naming the key path, or still accepts the variants that mean the same.

// edit sets the key at a dotted path to a Python literal; del removes it.
type edit struct {
	path string
	lit  string // Python literal; "" with del
	del  bool
}

func set(path, lit string) edit { return edit{path: path, lit: lit} }
func del(path string) edit      { return edit{path: path, del: true} }

// refusal is one table row: the edits, and the key path the error must name ("" = must parse).
type refusal struct {
	name  string
	edits []edit
	path  string   // "" when the config must still parse
	words []string // further words the error must contain
}

const (
	enc = "encoder.module_dict."
	dec = "decoder.module_dict."
)

// applyEdits returns the tiny config with the edits applied.
func applyEdits(t *testing.T, edits []edit) pyliteral.Value {
	t.Helper()
	cfg, _ := readTestdata(t)
	tree, err := parseJSONTree(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		keys := strings.Split(e.path, ".")
		d := &tree
		for _, k := range keys[:len(keys)-1] {
			i := entryIndex(d, k)
			if i < 0 {
				t.Fatalf("%s: no %s", e.path, k)
			}
			d = &d.Dict[i].Value
		}
		last := keys[len(keys)-1]
		i := entryIndex(d, last)
		if e.del {
			if i < 0 {
				t.Fatalf("%s: nothing to delete", e.path)
			}
			d.Dict = append(d.Dict[:i], d.Dict[i+1:]...)
			continue
		}
		v, err := pyliteral.Parse(e.lit)
		if err != nil {
			t.Fatalf("%s: %v", e.lit, err)
		}
		if i < 0 {
			d.Dict = append(d.Dict, pyliteral.Entry{Key: pyliteral.StrValue(last), Value: v})
		} else {
			d.Dict[i].Value = v
		}
	}
	return tree
}

func entryIndex(d *pyliteral.Value, k string) int {
	for i, e := range d.Dict {
		if e.Key.Kind == pyliteral.Str && e.Key.Str == k {
			return i
		}
	}
	return -1
}

func runRefusals(t *testing.T, cases []refusal) {
	t.Helper()
	_, vae := readTestdata(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTree(applyEdits(t, c.edits), vae)
			checkRefusal(t, err, c.path, c.words)
		})
	}
}

func checkRefusal(t *testing.T, err error, path string, words []string) {
	t.Helper()
	if path == "" {
		if err != nil {
			t.Fatalf("want the config accepted, got %v", err)
		}
		return
	}
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("want ErrConfig naming %s, got %v", path, err)
	}
	t.Log(err)
	for _, w := range append([]string{"flextok/model: ", path}, words...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// The tiny config must parse unchanged, or every refusal below would pass for the wrong reason.
func TestRefusalBase(t *testing.T) {
	runRefusals(t, []refusal{{name: "unchanged"}})
}

// 1. norm_layer: nn.LayerNorm defaults to elementwise_affine=True; only an explicit False is the
// non-affine norm the executors run (bias is then unused).
func TestRefuseAffineNormLayer(t *testing.T) {
	const ln = "'_target_': 'flextok.model.layers.norm.Fp32LayerNorm', '_partial_': True"
	var cases []refusal
	for _, at := range []string{enc + "enc_transformer", dec + "dec_transformer", enc + "enc_to_latents", dec + "dec_to_patches"} {
		p := at + ".norm_layer"
		cases = append(cases,
			refusal{at + " no flags", []edit{set(p, "{"+ln+"}")}, p + ".elementwise_affine", []string{"absent", "elementwise_affine=False"}},
			refusal{at + " bias only", []edit{set(p, "{"+ln+", 'bias': False}")}, p + ".elementwise_affine", []string{"absent"}},
			refusal{at + " affine", []edit{set(p, "{"+ln+", 'elementwise_affine': True, 'bias': False}")}, p + ".elementwise_affine", []string{"True"}},
			refusal{at + " affine None", []edit{set(p, "{"+ln+", 'elementwise_affine': None}")}, p + ".elementwise_affine", []string{"None"}},
			refusal{at + " non-affine", []edit{set(p, "{"+ln+", 'elementwise_affine': False, 'bias': False, 'eps': 1e-6}")}, "", nil},
			refusal{at + " non-affine with bias", []edit{set(p, "{"+ln+", 'elementwise_affine': False, 'bias': True}")}, "", nil},
		)
	}
	runRefusals(t, cases)
}

// 2. norm_layer: None means no norm on a head, and cannot build a trunk.
func TestRefuseNoneNormLayer(t *testing.T) {
	runRefusals(t, []refusal{
		{"encoder head", []edit{set(enc+"enc_to_latents.norm_layer", "None")}, enc + "enc_to_latents.norm_layer", []string{"None", "no LayerNorm"}},
		{"decoder head", []edit{set(dec+"dec_to_patches.norm_layer", "None")}, dec + "dec_to_patches.norm_layer", []string{"None", "no LayerNorm"}},
		{"encoder trunk", []edit{set(enc+"enc_transformer.norm_layer", "None")}, enc + "enc_transformer.norm_layer", []string{"None"}},
		{"decoder trunk", []edit{set(dec+"dec_transformer.norm_layer", "None")}, dec + "dec_transformer.norm_layer", []string{"None"}},
	})
}

// 3. eval_keep_k_read_key / eval_drop_flag_read_key: None turns the module off at eval, and the
// official pipeline marks the unconditional pass under "eval_dropout_mask" only.
func TestRefuseEvalReadKeys(t *testing.T) {
	keep, drop := dec+"dec_nested_dropout.eval_keep_k_read_key", dec+"dec_latent_dropout.eval_drop_flag_read_key"
	runRefusals(t, []refusal{
		{"keep_k None", []edit{set(keep, "None")}, keep, []string{"None", "not supported"}},
		{"keep_k absent", []edit{del(keep)}, "", nil},
		{"keep_k renamed", []edit{set(keep, "'my_keep_k'")}, "", nil}, // the wrapper reads the module's key
		{"drop flag None", []edit{set(drop, "None")}, drop, []string{"None", `"eval_dropout_mask"`}},
		{"drop flag renamed", []edit{set(drop, "'my_mask'")}, drop, []string{"my_mask", `"eval_dropout_mask"`}},
		{"drop flag absent", []edit{del(drop)}, "", nil},
		{"learned null cond None", []edit{
			set(dec+"dec_latent_dropout", "{'_target_': 'flextok.model.preprocessors.nullcond.LearnedNullCond', 'read_write_key': 'dec_quants', 'dim': 32, 'eval_drop_flag_read_key': None}"),
		}, drop, []string{"None"}},
	})
}

// 4. Registers1D.n_eval: the official encoder emits registers[:n_eval or n_max] at eval.
func TestRefuseRegistersNEval(t *testing.T) {
	p := enc + "enc_register_module.n_eval"
	runRefusals(t, []refusal{
		{"fewer", []edit{set(p, "16")}, p, []string{"16", "emits 16 tokens", "n_max = 32"}},
		{"negative", []edit{set(p, "-4")}, p, []string{"emits 28 tokens"}},
		{"very negative", []edit{set(p, "-40")}, p, []string{"emits 0 tokens"}},
		{"more", []edit{set(p, "64")}, "", nil}, // registers[:64] stops at n_max
		{"not an int", []edit{set(p, "'16'")}, p, nil},
		{"n_max", []edit{set(p, "32")}, "", nil},
		{"None", []edit{set(p, "None")}, "", nil},
		{"zero", []edit{set(p, "0")}, "", nil},
	})
}

// 5. PatchEmbedder.flatten_patches defaults to True officially: flattened patches cannot take the
// 2-D sin-cos embedding (nor be unpatchified), so only an explicit False is accepted.
func TestRefuseFlattenPatches(t *testing.T) {
	var cases []refusal
	for _, pe := range []string{enc + "enc_patch_emb", dec + "dec_noise_patch_emb"} {
		p := pe + ".flatten_patches"
		cases = append(cases,
			refusal{pe + " absent", []edit{del(p)}, p, []string{"absent", "True", "flatten_patches=False"}},
			refusal{pe + " True", []edit{set(p, "True")}, p, []string{"True"}},
			refusal{pe + " None", []edit{set(p, "None")}, p, []string{"None"}},
			refusal{pe + " False", []edit{set(p, "False")}, "", nil},
		)
	}
	runRefusals(t, cases)
}

// 6. FlexTransformer.block_mask_read_key: absent means unmasked attention officially.
func TestRefuseBlockMaskReadKey(t *testing.T) {
	e, d := enc+"enc_transformer.block_mask_read_key", dec+"dec_transformer.block_mask_read_key"
	runRefusals(t, []refusal{
		{"encoder absent", []edit{del(e)}, e, []string{"absent", "without a mask", `"enc_block_mask"`}},
		{"decoder absent", []edit{del(d)}, d, []string{"absent", `"dec_sa_block_mask"`}},
		{"encoder None", []edit{set(e, "None")}, e, []string{"absent"}},
		{"encoder other", []edit{set(e, "'other_mask'")}, e, []string{"other_mask", "block_mask_write_key"}},
		{"decoder other", []edit{set(d, "'enc_block_mask'")}, d, []string{"enc_block_mask"}},
		{"both renamed", []edit{set(e, "'m'"), set(enc+"enc_seq_packer.block_mask_write_key", "'m'")}, "", nil},
	})
}

// 7. The module wiring: what the packers pack and in which order, what the heads read, and the
// keys around them.
func TestRefuseModuleWiring(t *testing.T) {
	encPk, decPk := enc+"enc_seq_packer.input_list_read_keys", dec+"dec_seq_packer.input_list_read_keys"
	runRefusals(t, []refusal{
		{"encoder packer order", []edit{set(encPk, "['enc_registers', 'enc_vae_latents_patched']")}, encPk, []string{"then the registers"}},
		{"encoder packer one list", []edit{set(encPk, "['enc_vae_latents_patched']")}, encPk, nil},
		{"encoder packer raw patches", []edit{set(encPk, "['enc_n_patches', 'enc_registers']")}, encPk, nil},
		{"decoder packer order", []edit{set(decPk, "['dec_quants', 'dec_patches']")}, decPk, nil},
		{"encoder head reads the patches", []edit{set(enc+"enc_to_latents.read_key", "'enc_vae_latents_patched'")},
			enc + "enc_to_latents.read_key", []string{`"enc_registers"`}},
		{"encoder unpacker swapped", []edit{set(enc+"enc_unpacker.inner_seq_write_keys", "['enc_registers', 'enc_vae_latents_patched']")},
			enc + "enc_to_latents.read_key", nil},
		{"encoder unpacker renamed", []edit{ // same layout under other names: accepted
			set(enc+"enc_unpacker.inner_seq_write_keys", "['p_out', 'r_out']"), set(enc+"enc_to_latents.read_key", "'r_out'")}, "", nil},
		{"encoder no unpacker", []edit{del(enc + "enc_unpacker")}, "encoder.module_dict", []string{"SequenceUnpacker"}},
		{"encoder trunk input", []edit{set(enc+"enc_transformer.input_seq_read_key", "'x'")}, enc + "enc_transformer.input_seq_read_key", nil},
		{"encoder posemb input", []edit{set(enc+"enc_posemb_module.read_key", "'enc_registers'")}, enc + "enc_posemb_module.read_key", nil},
		{"decoder head reads the quants", []edit{set(dec+"dec_to_patches.read_key", "'dec_quants'")}, dec + "dec_to_patches.read_key", nil},
		{"decoder dropout key", []edit{set(dec+"dec_nested_dropout.read_write_key", "'dec_patches'")}, dec + "dec_nested_dropout.read_write_key", nil},
		{"decoder null cond key", []edit{set(dec+"dec_latent_dropout.read_write_key", "'x'")}, dec + "dec_latent_dropout.read_write_key", nil},
		{"decoder register posemb input", []edit{set(dec+"dec_registers_posemb_module.read_key", "'dec_patches'")}, dec + "dec_registers_posemb_module.read_key", nil},
		{"decoder patch posemb input", []edit{set(dec+"dec_patches_posemb_module.read_key", "'dec_quants'")}, dec + "dec_patches_posemb_module.read_key", nil},
		{"decoder adaLN input", []edit{set(dec+"dec_transformer.adaLN_emb_read_key", "'dec_quants'")}, dec + "dec_transformer.adaLN_emb_read_key", nil},
		{"decoder head adaLN input", []edit{set(dec+"dec_to_patches.adaLN_emb_read_key", "'x'")}, dec + "dec_to_patches.adaLN_emb_read_key", nil},
		{"decoder head adaLN packing", []edit{set(dec+"dec_to_patches.adaLN_emb_read_key", "'dec_temb'"),
			set(dec+"dec_to_patches.adaLN_packing_fn_read_key", "'dec_emb_packing_fn'")}, dec + "dec_to_patches.adaLN_packing_fn_read_key", nil},
		{"decoder head adaLN", []edit{set(dec+"dec_to_patches.adaLN_emb_read_key", "'dec_temb'")}, "", nil},
		{"encoder score mod", []edit{set(enc+"enc_transformer.score_mod_read_key", "'enc_score_mod'")}, enc + "enc_transformer.score_mod_read_key", nil},
		{"decoder score mod None", []edit{set(dec+"dec_transformer.score_mod_read_key", "None")}, "", nil},
	})
}

// 8. dtype_override other than fp32/None turns on the official autocast.
func TestRefuseDTypeOverride(t *testing.T) {
	var cases []refusal
	for _, at := range []string{"vae", dec + "dec_from_latents", enc + "enc_to_latents", dec + "dec_to_patches"} {
		p := at + ".dtype_override"
		cases = append(cases,
			refusal{at + " bf16", []edit{set(p, "'bf16'")}, p, []string{`"bf16"`, "autocast", "fp32"}},
			refusal{at + " float16", []edit{set(p, "'float16'")}, p, nil},
			refusal{at + " unknown", []edit{set(p, "'int8'")}, p, nil},
			refusal{at + " fp32", []edit{set(p, "'fp32'")}, "", nil},
			refusal{at + " float32", []edit{set(p, "'float32'")}, "", nil},
			refusal{at + " None", []edit{set(p, "None")}, "", nil},
		)
	}
	runRefusals(t, cases)
}

// 10. The VAE's down_block_types / up_block_types: plain blocks, one per block_out_channels entry
// (absent: diffusers' default of one block).
func TestRefuseVAEBlockTypes(t *testing.T) {
	cfg, vae := readTestdata(t)
	cases := []struct {
		name  string
		edit  func(m map[string]any)
		path  string
		words []string
	}{
		{"attention down block", func(m map[string]any) { m["down_block_types"] = []any{"DownEncoderBlock2D", "AttnDownEncoderBlock2D"} },
			"down_block_types[1]", []string{"AttnDownEncoderBlock2D", "only DownEncoderBlock2D"}},
		{"attention up block", func(m map[string]any) { m["up_block_types"] = []any{"AttnUpDecoderBlock2D", "UpDecoderBlock2D"} },
			"up_block_types[0]", []string{"only UpDecoderBlock2D"}},
		{"too few", func(m map[string]any) { m["down_block_types"] = []any{"DownEncoderBlock2D"} },
			"down_block_types", []string{"1 blocks", "has 2"}},
		{"too many", func(m map[string]any) {
			m["up_block_types"] = []any{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}
		},
			"up_block_types", []string{"3 blocks"}},
		{"absent with two widths", func(m map[string]any) { delete(m, "down_block_types") },
			"down_block_types", []string{"absent: diffusers' default, 1"}},
		{"not strings", func(m map[string]any) { m["up_block_types"] = []any{1, 2} }, "up_block_types[0]", nil},
		{"absent with one width", func(m map[string]any) {
			delete(m, "down_block_types")
			delete(m, "up_block_types")
			m["block_out_channels"] = []any{8}
		}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(vae, &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m)
			v, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseConfigJSON(cfg, v)
			path := c.path
			if path != "" {
				path = "vae(vae/config.json)." + path
			}
			checkRefusal(t, err, path, c.words)
		})
	}
}

// 12. use_mup_readout is a required argument of both heads.
func TestRefuseMissingMupReadout(t *testing.T) {
	e, d := enc+"enc_to_latents.use_mup_readout", dec+"dec_to_patches.use_mup_readout"
	runRefusals(t, []refusal{
		{"encoder head", []edit{del(e)}, e, []string{"missing", "False"}},
		{"decoder head", []edit{del(d)}, d, []string{"missing"}},
		{"encoder True", []edit{set(e, "True")}, e, []string{"not supported"}},
		{"encoder None", []edit{set(e, "None")}, "", nil}, // Python: None is not MuReadout
	})
}

// 13. flow_matching_noise_module is a required argument of FlexTok (its value is unused).
func TestRefuseMissingNoiseModule(t *testing.T) {
	runRefusals(t, []refusal{
		{"absent", []edit{del("flow_matching_noise_module")}, "flow_matching_noise_module", []string{"missing"}},
		{"None", []edit{set("flow_matching_noise_module", "None")}, "", nil},
	})
}

// 14. adaLN_expansion 1 with per_subseq_embs: the official blocks get half-width chunks.
func TestRefuseAdaLNExpansionPerSubseq(t *testing.T) {
	x, ps := dec+"dec_transformer.adaLN_expansion", dec+"dec_seq_packer.per_subseq_embs"
	runRefusals(t, []refusal{
		{"expansion 1, per part", []edit{set(x, "1")}, dec + "dec_transformer", []string{"adaLN_expansion 1", "per_subseq_embs=True"}},
		{"expansion absent, per part", []edit{del(x)}, dec + "dec_transformer", []string{"adaLN_expansion 1"}},
		{"expansion 2, not per part", []edit{set(ps, "False")}, dec + "dec_transformer", []string{"per_subseq_embs=True"}},
		{"expansion 1, not per part", []edit{set(x, "1"), set(ps, "False")}, "", nil},
	})
}

// 15. The decoder trunk's adaLN needs the packer's packing function.
func TestRefuseMissingAdaLNPackingFn(t *testing.T) {
	r, w := dec+"dec_transformer.adaLN_packing_fn_read_key", dec+"dec_seq_packer.emb_packing_fn_write_key"
	runRefusals(t, []refusal{
		{"trunk absent", []edit{del(r)}, r, []string{"absent", `"dec_emb_packing_fn"`}},
		{"trunk None", []edit{set(r, "None")}, r, nil},
		{"trunk other", []edit{set(r, "'fn'")}, r, []string{`"fn"`, `want "dec_emb_packing_fn"`}},
		{"packer absent", []edit{del(w)}, w, []string{"absent"}},
		{"both renamed", []edit{set(r, "'fn'"), set(w, "'fn'")}, "", nil},
	})
}
