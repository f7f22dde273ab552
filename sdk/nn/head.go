package nn

// Head is the encoder's LinearHead and the decoder's ToPatchesLinearHead, written once:
// LayerNorm, an optional adaLN modulation (shift, scale: Linear(SiLU(temb)) of 2W values) and a
// Linear.
type Head[L any] struct {
	Eps      float32
	Proj     L // (out, W) with bias
	AdaLN    L // (2W, W) with bias; set when HasAdaLN
	HasAdaLN bool
}

// NewHead binds the head module name: name.proj (out, W) and, with adaLN,
// name.adaLN_modulation.1 (2W, W).
func NewHead[L any](bind Binder[L], name string, W, out int, eps float64, adaLN bool) *Head[L] {
	lin := func(sub string, out int) L {
		return bind(LinearSpec{Name: name + sub, Weights: []string{name + sub + ".weight"}, Biases: []string{name + sub + ".bias"}, Out: out, In: W})
	}
	h := &Head[L]{Eps: float32(eps), Proj: lin(".proj", out)}
	if adaLN {
		h.AdaLN, h.HasAdaLN = lin(".adaLN_modulation.1", 2*W), true
	}
	return h
}

// headShift and headScale are the chunks of the head's adaLN vector, in the order
// ToPatchesLinearHead splits it.
const (
	headShift = 0
	headScale = 1
)

// HeadModulation is the head's adaLN vector Linear(stemb) from stemb = SiLU(temb).
func HeadModulation[T, L any](ops Ops[T, L], h *Head[L], stemb T) T {
	return ops.Linear(stemb, h.AdaLN)
}

// HeadForward applies the head to x (consumed): the rows of s's sequences (all rows get part 0
// of mod, which is ignored without adaLN).
func HeadForward[T, L any](ops Ops[T, L], h *Head[L], x, mod T, s Seq[T]) T {
	x = ops.LayerNorm(x, h.Eps)
	if h.HasAdaLN {
		x = ops.Modulate(x, mod, 2, headShift, headScale, s)
	}
	return ops.Linear(x, h.Proj)
}
