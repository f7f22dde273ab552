package nn

// The embeddings around the trunk, written once: the patch embedding (PatchEmbedder and the
// sin-cos PositionalEmbeddingAdder), the decoder's register embedding (LinearLayer of the
// FSQ codes, the learnable register table, MaskedNestedDropout's mask token) and its null
// condition. Cutting images
// into patch rows and assembling the sequences stay with each executor (index loops in the
// engine, Reshape/Transpose/Concat in a graph).

// SinCosRows crops the checkpoint's sin-cos table [W, S_h, S_w] to an nh×nw patch grid, as
// patch rows [nh·nw, W]: row r·nw+c holds table[:, r, c].
func SinCosRows(table []float32, W, sh, sw, nh, nw int) []float32 {
	out := make([]float32, nh*nw*W)
	for r := 0; r < nh; r++ {
		for c := 0; c < nw; c++ {
			row := out[(r*nw+c)*W : (r*nw+c+1)*W]
			for ch := range row {
				row[ch] = table[(ch*sh+r)*sw+c]
			}
		}
	}
	return out
}

// PatchEmbed is Linear(ph·pw·C → W) of the patch rows plus the sin-cos table cropped to the grid.
type PatchEmbed[L any] struct {
	Proj   L
	Table  []float32 // (W, S_h, S_w)
	W      int
	SH, SW int
}

// NewPatchEmbed binds name.patch_proj (W, in) with bias and keeps the table (W, sh, sw).
func NewPatchEmbed[L any](bind Binder[L], name string, in, W int, table []float32, sh, sw int) *PatchEmbed[L] {
	p := name + ".patch_proj"
	return &PatchEmbed[L]{Proj: bind(LinearSpec{Name: p, Weights: []string{p + ".weight"}, Biases: []string{p + ".bias"}, Out: W, In: in}),
		Table: table, W: W, SH: sh, SW: sw}
}

// EmbedPatches embeds patch rows (sequences of nh·nw rows, one per image) and adds the table.
func EmbedPatches[T, L any](ops Ops[T, L], pe *PatchEmbed[L], patches T, nh, nw int) T {
	return ops.AddRows(ops.Linear(patches, pe.Proj), SinCosRows(pe.Table, pe.W, pe.SH, pe.SW, nh, nw), "posemb")
}

// RegisterEmbed is the decoder's register embedding: Linear(D → W) of the FSQ codes plus the
// learnable register table, then the mask token at the positions a prefix drops.
type RegisterEmbed[L any] struct {
	Proj      L
	Pos       []float32 // (R, W): the [1, 1, W, Rmax] table's first R columns, as rows
	MaskToken []float32 // (W)
}

// NewRegisterEmbed binds name.proj (W, D) with bias; table is the learnable_sum table
// [W, Rmax], of which the first R registers are used.
func NewRegisterEmbed[L any](bind Binder[L], name string, D, W int, table []float32, Rmax, R int, maskToken []float32) *RegisterEmbed[L] {
	p := name + ".proj"
	pos := make([]float32, R*W)
	for j := 0; j < R; j++ {
		for c := 0; c < W; c++ {
			pos[j*W+c] = table[c*Rmax+j]
		}
	}
	return &RegisterEmbed[L]{Proj: bind(LinearSpec{Name: p, Weights: []string{p + ".weight"}, Biases: []string{p + ".bias"}, Out: W, In: D}),
		Pos: pos, MaskToken: maskToken}
}

// EmbedRegisters embeds the codes of sequences of R registers: Linear plus the register table.
func EmbedRegisters[T, L any](ops Ops[T, L], re *RegisterEmbed[L], codes T) T {
	return ops.AddRows(ops.Linear(codes, re.Proj), re.Pos, "register_posemb")
}

// MaskRegisters puts the mask token at every register at or after keep (one count per
// sequence of R registers): the official MaskedNestedDropout at inference.
func MaskRegisters[T, L any](ops Ops[T, L], re *RegisterEmbed[L], regs, keep T, R int) T {
	return ops.FillAfter(regs, keep, re.MaskToken, "mask_token", R)
}

// NullCondition puts the null condition (ZeroNullCond: zeros; LearnedNullCond: the learned
// vector null, of the register width) at every register of the sequences of R registers whose
// count in keep is 0, and leaves sequences whose count is R as they are: keep is R for a
// conditional item and 0 for an unconditional one. (The engine binds the unconditional
// registers once, as their own sequence; a graph marks unconditional items in the batch.)
func NullCondition[T, L any](ops Ops[T, L], null []float32, regs, keep T, R int) T {
	return ops.FillAfter(regs, keep, null, "nullcond", R)
}
