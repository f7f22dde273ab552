package model

import (
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
)

// The modules that the encoder and the decoder share: the FlexTransformer trunk and its norm
// layer, the patch embedder, the position embeddings, the per-sample ops and the heads' checks.

// parseNormEps reads the norm_layer partial at key of n and returns its eps. The official
// default (key absent) is a non-affine Fp32LayerNorm with eps 1e-5. A norm_layer that is given
// builds Fp32LayerNorm = nn.LayerNorm with that dict's arguments, whose elementwise_affine
// defaults to True: only an explicit elementwise_affine=False is the non-affine norm the executors
// run (bias is then unused: nn.LayerNorm only makes a bias when it is affine). head is true for
// the heads, where None means no norm at all; a trunk cannot be built with None.
func parseNormEps(n node, key string, head bool) (float64, error) {
	why := "(the official blocks cannot be built without a norm layer); " +
		"leave it out or give a Fp32LayerNorm with elementwise_affine=False"
	if head {
		why = "(the head then applies no LayerNorm) is not supported; " +
			"leave it out or give a Fp32LayerNorm with elementwise_affine=False"
	}
	if err := refuseNone(key, why)(n); err != nil {
		return 0, err
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

// normEps is parseNormEps of the module's norm_layer as a field.
func normEps(p *float64, head bool) field {
	return func(n node) (err error) { *p, err = parseNormEps(n, "norm_layer", head); return err }
}

func parseTrunk(n node) (TrunkConfig, error) {
	var t TrunkConfig
	err := n.read(
		optIntIn("dim", &t.Width, 768, 1, maxDim),
		optIntIn("depth", &t.Depth, 12, 1, maxDepth),
		optIntIn("head_dim", &t.HeadDim, 64, 1, maxDim),
		optFloatIn("mlp_ratio", &t.MLPRatio, 4, 0, 64),
		optBool("qkv_bias", &t.QKVBias, false), optBool("proj_bias", &t.ProjBias, false), optBool("mlp_bias", &t.MLPBias, false),
		optBool("gated_mlp", &t.Gated, true), optBool("qk_norm", &t.QKNorm, true),
		refuseKey("act_layer", "only the default SiLU is supported"),
		refuseKey("rope_forward_read_key", "RoPE is not supported"),
		// No FlexTok module writes a score modifier: the official trunk fails.
		refuseKey("score_mod_read_key", "attention score modifiers are not supported"),
		normEps(&t.NormEps, false),
	)
	if err != nil {
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

// patchSizes reads patch_sizes (ph, pw) into p.
func patchSizes(p *[2]int) field {
	return func(n node) error {
		ps, err := n.ints("patch_sizes")
		if err != nil {
			return err
		}
		if len(ps) != 2 || ps[0] < 1 || ps[1] < 1 {
			return fmt.Errorf("%w: %s.patch_sizes: %v (want two positive sizes)", ErrConfig, n.path, ps)
		}
		*p = [2]int{ps[0], ps[1]}
		return nil
	}
}

// patchEmbedder reads a PatchEmbedder of a trunk of width w: its patch size, input channels,
// the key it reads and the key it writes its patches to.
func patchEmbedder(pe node, w int, size *[2]int, channels *int, read, patches *string) error {
	return pe.read(patchSizes(size), reqInt("channels_in", channels), sameDim(w),
		reqStr("input_tensor_list_read_key", read), unflattened, reqStr("patches_list_write_key", patches))
}

// sameDim checks that the module's dim is the trunk width w.
func sameDim(w int) field {
	return func(n node) error {
		d, err := n.int("dim")
		if err != nil {
			return err
		}
		if d != w {
			return fmt.Errorf("%w: %s.dim: %d, but the trunk width is %d", ErrConfig, n.path, d, w)
		}
		return nil
	}
}

func parsePosemb(n node, dim int) (PosembConfig, error) {
	var p PosembConfig
	var err error
	if p.MaxSizes, err = n.ints("max_sizes"); err != nil {
		return p, err
	}
	if err := n.read(optStr("posemb_type", &p.Type, "sincos"), optStr("posemb_scaling", &p.Scaling, "absolute"), sameDim(dim)); err != nil {
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

// noMup checks a head's readout: use_mup_readout must be given, and False; proj_bias True.
func noMup(n node) error {
	if _, ok := n.v.Get("use_mup_readout"); !ok {
		return fmt.Errorf("%w: %s.use_mup_readout: missing (the official head requires it); want False", ErrConfig, n.path)
	}
	return n.read(wantBool("use_mup_readout", false, false, "True needs mup base shapes; not supported"), projBias)
}

// projBias refuses proj_bias=False in a module with a biased projection.
var projBias = wantBool("proj_bias", true, true, "False is not supported")
