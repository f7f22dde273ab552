package nn

import (
	"fmt"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/model"
)

// The shared transformer trunk (the official FlexTransformer), written once: pre-LN blocks with
// QK-LayerNorm attention and a SwiGLU (or SiLU) MLP, plain (encoder, FlexBlock) or
// adaLN-modulated (decoder, FlexBlockAdaLN). Eager runs it on the kernels; the recorder in
// native/onnx emits it as the graphs' blocks.

// adaLNChunks is the number of W-wide vectors per part of a block's adaLN modulation.
const adaLNChunks = 6

// Trunk is a FlexTransformer's weights, bound for one executor (L).
type Trunk[L any] struct {
	Cfg    model.TrunkConfig
	Blocks []Block[L]
	Scale  float32 // attention scale 8/head_dim (muP)
	Eps    float32 // LayerNorm eps, also of the QK-norm
}

// Block is one block's layers. FC3 is set for a gated MLP, AdaLN for an adaLN trunk.
type Block[L any] struct {
	Name             string // the recorder's scope: "<part>.block<i>"
	QKV              L      // (3W, W): wq, wk, wv stacked, so that q, k, v come from one product
	Proj, FC1, FC2   L      // (W, W), (Hd, W), (W, Hd)
	FC3, AdaLN       L      // (Hd, W) gated only; (E·6W, W) adaLN only
	hasFC3, hasAdaLN bool
}

// TrunkSpecs declares block i's Linear layers of the FlexTransformer module mod under prefix
// (for example model.DecoderPrefix and "dec_transformer"): qkv, proj, fc1, fc3 (gated only),
// fc2, adaLN (adaLN only; zero spec otherwise).
func TrunkSpecs(prefix, mod string, t model.TrunkConfig, i int) (qkv, proj, fc1, fc3, fc2, ada LinearSpec) {
	W, Hd := t.Width, t.MLPHidden
	name := func(format string) string {
		return strings.TrimSuffix(model.Block(format, prefix, mod, i), ".weight")
	}
	spec := func(format string, out, in int, bias bool) LinearSpec {
		s := LinearSpec{Name: name(format), Weights: []string{model.Block(format, prefix, mod, i)}, Out: out, In: in}
		if bias {
			s.Biases = []string{s.Name + ".bias"}
		}
		return s
	}
	qkv = LinearSpec{Name: "qkv", Out: 3 * W, In: W}
	for _, f := range []string{model.BlockWQ, model.BlockWK, model.BlockWV} {
		qkv.Weights = append(qkv.Weights, model.Block(f, prefix, mod, i))
		if t.QKVBias {
			qkv.Biases = append(qkv.Biases, name(f)+".bias")
		}
	}
	proj = spec(model.BlockProj, W, W, t.ProjBias)
	fc1 = spec(model.BlockFC1, Hd, W, t.MLPBias)
	if t.Gated {
		fc3 = spec(model.BlockFC3, Hd, W, t.MLPBias)
	}
	fc2 = spec(model.BlockFC2, W, Hd, t.MLPBias)
	if E := t.AdaLNExpansion; E > 0 {
		ada = LinearSpec{Name: name(model.BlockAdaLN), Weights: []string{model.Block(model.BlockAdaLN, prefix, mod, i)},
			Biases: []string{model.Block(model.BlockAdaLNBias, prefix, mod, i)}, Out: E * adaLNChunks * W, In: W}
	}
	return
}

// NewTrunk binds the blocks of the FlexTransformer module mod under prefix. Block names (the
// recorder's scopes) are prefix without ".module_dict." and ".block<i>".
func NewTrunk[L any](bind Binder[L], prefix, mod string, t model.TrunkConfig) *Trunk[L] {
	tr := &Trunk[L]{Cfg: t, Scale: float32(8.0 / float64(t.HeadDim)), Eps: float32(t.NormEps)}
	part := strings.TrimSuffix(prefix, ".module_dict.")
	for i := 0; i < t.Depth; i++ {
		qkv, proj, fc1, fc3, fc2, ada := TrunkSpecs(prefix, mod, t, i)
		b := Block[L]{Name: fmt.Sprintf("%s.block%d", part, i)}
		b.QKV, b.Proj, b.FC1 = bind(qkv), bind(proj), bind(fc1)
		if t.Gated {
			b.FC3, b.hasFC3 = bind(fc3), true
		}
		b.FC2 = bind(fc2)
		if t.AdaLNExpansion > 0 {
			b.AdaLN, b.hasAdaLN = bind(ada), true
		}
		tr.Blocks = append(tr.Blocks, b)
	}
	return tr
}

// Modulation computes every block's adaLN vector from stemb = SiLU(temb): Linear(stemb),
// E·6W per row. It depends on t only (the engine caches it per t).
func Modulation[T, L any](ops Ops[T, L], tr *Trunk[L], stemb T) []T {
	out := make([]T, len(tr.Blocks))
	for i := range tr.Blocks {
		out[i] = ops.Linear(stemb, tr.Blocks[i].AdaLN)
	}
	return out
}

// Forward runs every block over x (the residual stream, consumed) and returns it. mods holds
// each block's adaLN vector (Modulation; nil for a plain trunk). An error is the executor's
// (Eager: the context's), returned at the start of a block.
func Forward[T, L any](ops Ops[T, L], tr *Trunk[L], x T, s Seq[T], mods []T) (T, error) {
	c := tr.Cfg
	H, hd := c.Heads, c.HeadDim
	for i := range tr.Blocks {
		b := &tr.Blocks[i]
		end, err := ops.Block(b.Name)
		if err != nil {
			return x, err
		}
		var mod T
		ada := b.hasAdaLN
		if ada {
			mod = mods[i]
		}

		// x += gate_msa ⊙ proj(attn(modulate(LN(x), shift_msa, scale_msa)))
		h := ops.LayerNorm(x, tr.Eps)
		if ada {
			h = ops.Modulate(h, mod, adaLNChunks, model.AdaLNShiftMSA, model.AdaLNScaleMSA, s)
		}
		qkv := ops.Linear(h, b.QKV)
		if c.QKNorm {
			qkv = ops.QKNorm(qkv, H, hd, tr.Eps)
		}
		a := ops.Linear(ops.Attention(qkv, H, hd, tr.Scale, s), b.Proj)
		if ada {
			x = ops.GatedAdd(x, a, mod, adaLNChunks, model.AdaLNGateMSA, s)
		} else {
			x = ops.Add(x, a)
		}
		end()
		// The MLP half is a region of its own (same name: the recorder's scope and initializer
		// names do not change), so that Eager recycles the attention half's buffers: a block
		// then needs fewer and smaller buffers than the engine's hand-written trunk had.
		if end, err = ops.Block(b.Name); err != nil {
			return x, err
		}

		// x += gate_mlp ⊙ fc2(swiglu(fc1 h, fc3 h) or silu(fc1 h)), h = modulate(LN(x), …)
		h = ops.LayerNorm(x, tr.Eps)
		if ada {
			h = ops.Modulate(h, mod, adaLNChunks, model.AdaLNShiftMLP, model.AdaLNScaleMLP, s)
		}
		f := ops.Linear(h, b.FC1)
		if b.hasFC3 {
			f = ops.SwiGLU(f, ops.Linear(h, b.FC3))
		} else {
			f = ops.SiLU(f)
		}
		y := ops.Linear(f, b.FC2)
		if ada {
			x = ops.GatedAdd(x, y, mod, adaLNChunks, model.AdaLNGateMLP, s)
		} else {
			x = ops.Add(x, y)
		}
		end()
	}
	return x, nil
}

// Flops is the multiply-add count ×2 of one trunk pass over n sequences of length L.
func Flops(t model.TrunkConfig, n, L int) float64 {
	W, Hd := float64(t.Width), float64(t.MLPHidden)
	mlp := 2.0
	if t.Gated {
		mlp = 3
	}
	rows := float64(n * L)
	perBlock := 2*rows*(4*W*W+mlp*W*Hd) + 4*float64(n)*float64(L)*float64(L)*W
	return perBlock * float64(t.Depth)
}

// TimeEmbedder is the official TimestepEmbedder: the sinusoidal embedding of t followed by
// Linear(F→W), SiLU, Linear(W→W).
type TimeEmbedder[L any] struct {
	Freqs      []float32 // TimestepFrequencies(F, max_timestep)
	Dims       int       // F
	MLP0, MLP2 L
}

// NewTimeEmbedder binds the TimestepEmbedder module name (its ".mlp.0" and ".mlp.2" layers)
// of frequency size F and width W.
func NewTimeEmbedder[L any](bind Binder[L], name string, F, W int, maxTimestep float64) *TimeEmbedder[L] {
	lin := func(sub string, out, in int) L {
		return bind(LinearSpec{Name: name + sub, Weights: []string{name + sub + ".weight"}, Biases: []string{name + sub + ".bias"}, Out: out, In: in})
	}
	return &TimeEmbedder[L]{Freqs: TimestepFrequencies(F, maxTimestep), Dims: F, MLP0: lin(".mlp.0", W, F), MLP2: lin(".mlp.2", W, W)}
}

// TimeEmbed returns temb for t (one time per row): Linear(SiLU(Linear(Sinusoid(t)))).
func TimeEmbed[T, L any](ops Ops[T, L], te *TimeEmbedder[L], t T) T {
	e := ops.Sinusoid(t, te.Freqs, te.Dims)
	return ops.Linear(ops.SiLU(ops.Linear(e, te.MLP0)), te.MLP2)
}
