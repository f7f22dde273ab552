package nn

// Ops is the op vocabulary the model is written against. T is the executor's tensor: rows of
// Cols features, the rows of every sequence of a batch stacked (the recorder's are [N, L, C]
// with N dynamic). L is the executor's Linear layer, bound from a LinearSpec when the model is
// loaded.
//
// Ownership: Add and GatedAdd accumulate into x (the residual stream); LayerNorm, RMSNorm,
// QKNorm, Modulate, SiLU, GELU, SwiGLU, AddRows and FillAfter consume their first argument. An
// executor may write an op's result into the storage of an argument it consumes when it
// allocated that storage itself (Eager's arena), so the model code never uses a consumed value
// again; Linear, Attention, Embed and Sinusoid consume nothing, and apart from the residual x
// no op changes a tensor the caller made. Block delimits the arena's reuse.
type Ops[T, L any] interface {
	// Block starts a region of block name of a trunk (the trunk opens two per block: the
	// attention half and the MLP half): Eager checks its context and recycles the arena
	// (tensors it returned before the call are then invalid, apart from the residual stream),
	// the recorder opens the name scope. end closes the region.
	Block(name string) (end func(), err error)

	// Linear is y = x Wᵀ + b over the last axis (W in PyTorch's [out, in] layout).
	Linear(x T, l L) T
	// LayerNorm normalises the last axis without affine parameters (eps inside the sqrt).
	LayerNorm(x T, eps float32) T
	// RMSNorm scales the last axis by 1/sqrt(mean(x²)+eps), without affine parameters.
	RMSNorm(x T, eps float32) T
	// QKNorm applies LayerNorm to every head of q and k of a fused qkv tensor [.., 3·H·hd]
	// (q, k, v stacked, heads contiguous in each); v is unchanged.
	QKNorm(qkv T, heads, headDim int, eps float32) T
	// Attention is multi-head scaled dot-product attention of the fused qkv tensor, within
	// each sequence of s, with s's mask: softmax(scale·q kᵀ + mask) v, heads concatenated.
	Attention(qkv T, heads, headDim int, scale float32, s Seq[T]) T
	// Modulate is adaLN's x·(1+scale) + shift. mod holds per sequence E parts of chunks
	// vectors of x's width (Linear(SiLU(temb)) viewed as [E, chunks, W]); shift and scale
	// are chunk indices. With E = 2, the first s.Prefix rows of a sequence use part 0 and the
	// others part 1 (the official per_subseq_embs); with E = 1 all rows use part 0. mod has
	// one row for the whole batch (Eager: one t per pass) or one per sequence (recorder).
	Modulate(x, mod T, chunks, shift, scale int, s Seq[T]) T
	// GatedAdd is the adaLN residual x + gate ⊙ y, gate being chunk gate of mod (as in
	// Modulate). It accumulates into x.
	GatedAdd(x, y, mod T, chunks, gate int, s Seq[T]) T
	// Add is the plain residual x + y. It accumulates into x.
	Add(x, y T) T
	// SiLU is x·sigmoid(x).
	SiLU(x T) T
	// GELU is the exact (erf) GELU, x·Φ(x).
	GELU(x T) T
	// SwiGLU is silu(a) ⊙ b (the gated MLP's silu(fc1 x) ⊙ fc3 x), fused.
	SwiGLU(a, b T) T
	// AddRows adds table [R, Cols] to every sequence of R rows of x (positional tables;
	// the recorder stores it as name). It consumes x.
	AddRows(x T, table []float32, name string) T
	// FillAfter replaces the rows j >= keep[q] of every sequence q of L rows of x by token
	// (stored as name); keep has one count per sequence, as float32. It consumes x.
	FillAfter(x, keep T, token []float32, name string, L int) T
	// Embed gathers rows of a table [rows, cols] (stored as name by the recorder) by id: ids
	// holds one id per row (as float32, exact below 2^24), the result one table row per id.
	// An id outside [0, rows) is a programmer error (Eager panics).
	Embed(ids T, table []float32, rows, cols int, name string) T
	// Sinusoid is the official TimestepEmbedder's embedding of t (one value per row):
	// [cos(t·f) | sin(t·f)] and a trailing zero when dims is odd (dims = 2·len(freqs)+1).
	Sinusoid(t T, freqs []float32, dims int) T
}

// Seq is the batch layout of a pass: data, not a loop, so that the recorder keeps the batch
// dynamic. Every sequence has L rows; the first Prefix rows are its patch tokens (the encoder's
// and decoder's fully visible prefix, adaLN part 0).
type Seq[T any] struct {
	L      int
	Prefix int
	// Causal is the causal_last mask: query q sees key k when k < Prefix or k <= q. Without
	// it every query sees every key.
	Causal bool
	// Keys, if set, holds per sequence the number of leading keys it may see at all (one
	// value per sequence, as float32): the decoder graph's single-token null condition keeps
	// one sequence length for the batch by hiding the keys after the null token.
	Keys *T
}

// LinearSpec declares a Linear layer's weights by their checkpoint names: Weights are stacked
// along the output (each [Out/len(Weights), In], PyTorch's layout), Biases likewise (nil: no
// bias). Name is the layer's name in a recorded graph (its initializers' prefix).
type LinearSpec struct {
	Name    string
	Weights []string
	Biases  []string
	Out, In int
}

// Bias says whether the layer has a bias.
func (s LinearSpec) Bias() bool { return len(s.Biases) > 0 }

// Binder turns a LinearSpec into an executor's Linear (reading and packing the weights); it
// collects read errors itself (model.PartReader), so it returns no error.
type Binder[L any] func(LinearSpec) L
