package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// The shared transformer trunk (the official FlexTransformer): pre-LN blocks with QK-LayerNorm
// attention and a SwiGLU MLP, either plain (encoder, FlexBlock) or adaLN-modulated (decoder,
// FlexBlockAdaLN). Weights keep PyTorch's [out, in] layout and are packed once at load time.
//
// Every image is its own attention sequence: the official packer concatenates the images into
// one sequence with a block-diagonal mask and pads it to a multiple of 128, but padding rows
// are fully masked and dropped, so running each image as an independent sequence of the batch
// is the same computation without the padding. The Linear layers run over the rows of all
// images at once (one matrix product per layer per call).

// Suffixes of the weights that names.go has no constants for; each name built from them is
// checked against the config's table (model.Config.ExpectedTensors) when it is read, so a
// suffix that disagrees with the table is a load error, not a silent miss.
const (
	sufWeight    = ".weight"
	sufBias      = ".bias"
	sufProj      = ".proj"       // LinearLayer, LinearHead, ToPatchesLinearHead
	sufPatchProj = ".patch_proj" // PatchEmbedder
	sufPosembs   = ".posembs"    // PositionalEmbeddingAdder
	sufRegisters = ".registers"  // Registers1D
	sufMaskToken = ".dropout_mask_token"
	sufNullCond  = ".nullcond"
	sufTimeMLP0  = ".mlp.0"              // TimestepEmbedder Linear(F, W)
	sufTimeMLP2  = ".mlp.2"              // TimestepEmbedder Linear(W, W)
	sufHeadAdaLN = ".adaLN_modulation.1" // ToPatchesLinearHead adaLN Linear(W, 2W)
)

// getFunc adapts a function to model.TensorSource (tests inject broken weights with it).
type getFunc func(name string) ([]float32, error)

func (f getFunc) Tensor(name string) ([]float32, error) { return f(name) }

// weightReader is model.PartReader (checked reads by canonical name, every problem collected)
// plus a reusable buffer for weights that are packed at once.
type weightReader struct {
	*model.PartReader
	scratch []float32
}

func newWeightReader(cfg *model.Config, part string, src model.TensorSource) *weightReader {
	return &weightReader{PartReader: model.NewPartReader(cfg, part, src)}
}

// scratchBuf returns the reader's reusable buffer of n elements. Its contents are valid until
// the next call: use it only for weights that are packed right away, so that loading never
// holds a second full copy of the model (issue: peak memory at most about 1.2x the weights).
func (r *weightReader) scratchBuf(n int) []float32 {
	if cap(r.scratch) < n {
		r.scratch = make([]float32, n)
	}
	return r.scratch[:n]
}

// err returns the reader's error with the engine's prefix.
func (r *weightReader) err() error {
	if err := r.Err(); err != nil {
		return fmt.Errorf("flextok/engine: %w", err)
	}
	return nil
}

// linear is a Linear layer y = x Wᵀ + b with W packed once for the options' path.
type linear struct {
	w       *kernels.Weights // (out, in), packed
	b       []float32        // (out) or nil
	in, out int
}

func newLinear(o kernels.Opts, w, b []float32, out, in int) linear {
	return linear{w: kernels.PackWeights(o, w, out, in), b: b, in: in, out: out}
}

// readLinear reads name.weight (out, in) and, if bias, name.bias (out).
func (r *weightReader) linear(o kernels.Opts, name string, out, in int, bias bool) linear {
	w := r.scratchBuf(out * in)
	r.Read(name+sufWeight, w)
	var b []float32
	if bias {
		b = r.Tensor(name+sufBias, out)
	}
	return newLinear(o, w, b, out, in)
}

// forward computes y [rows, out] from x [rows, in].
func (l *linear) forward(o kernels.Opts, y, x []float32, rows int) {
	kernels.LinearPacked(o, y[:rows*l.out], x[:rows*l.in], l.w, l.b, rows)
}

// block is one transformer block.
type block struct {
	qkv  linear  // (3W, W): wq, wk, wv stacked, so q, k and v are views of one [rows, 3W] product
	proj linear  // (W, W)
	fc1  linear  // (Hd, W)
	fc3  *linear // (Hd, W), gated MLP only
	fc2  linear  // (W, Hd)
	ada  *linear // (E·6W, W) adaLN modulation, decoder only
}

// trunk is a FlexTransformer.
type trunk struct {
	cfg    model.TrunkConfig
	blocks []block
	scale  float32 // attention scale 8/head_dim (muP)
	eps    float32 // LayerNorm eps, also of the QK-norm
}

// readTrunk reads the blocks of the FlexTransformer module mod under prefix.
func readTrunk(r *weightReader, o kernels.Opts, prefix, mod string, t model.TrunkConfig) *trunk {
	W, Hd := t.Width, t.MLPHidden
	tr := &trunk{cfg: t, scale: float32(8.0 / float64(t.HeadDim)), eps: float32(t.NormEps)}
	bias := func(format string, i, n int, has bool) []float32 {
		if !has {
			return nil
		}
		return r.Tensor(strings.TrimSuffix(model.Block(format, prefix, mod, i), sufWeight)+sufBias, n)
	}
	for i := 0; i < t.Depth; i++ {
		var b block
		qkv := r.scratchBuf(3 * W * W) // wq, wk, wv stacked, read in place
		var qkvb []float32
		for j, f := range []string{model.BlockWQ, model.BlockWK, model.BlockWV} {
			r.Read(model.Block(f, prefix, mod, i), qkv[j*W*W:(j+1)*W*W])
			if t.QKVBias {
				qkvb = append(qkvb, bias(f, i, W, true)...)
			}
		}
		b.qkv = newLinear(o, qkv, qkvb, 3*W, W)
		packed := func(format string, out, in int, has bool) linear {
			w := r.scratchBuf(out * in)
			r.Read(model.Block(format, prefix, mod, i), w)
			return newLinear(o, w, bias(format, i, out, has), out, in)
		}
		b.proj = packed(model.BlockProj, W, W, t.ProjBias)
		b.fc1 = packed(model.BlockFC1, Hd, W, t.MLPBias)
		if t.Gated {
			fc3 := packed(model.BlockFC3, Hd, W, t.MLPBias)
			b.fc3 = &fc3
		}
		b.fc2 = packed(model.BlockFC2, W, Hd, t.MLPBias)
		if E := t.AdaLNExpansion; E > 0 {
			w := r.scratchBuf(E * 6 * W * W)
			r.Read(model.Block(model.BlockAdaLN, prefix, mod, i), w)
			ada := newLinear(o, w, r.Tensor(model.Block(model.BlockAdaLNBias, prefix, mod, i), E*6*W), E*6*W, W)
			b.ada = &ada
		}
		tr.blocks = append(tr.blocks, b)
	}
	return tr
}

// modulation computes every block's adaLN vector for one time embedding: Linear(SiLU(temb)),
// [E·6W] per block. It depends only on t, so the decoder computes it once per distinct t.
func (tr *trunk) modulation(o kernels.Opts, temb []float32) [][]float32 {
	s := make([]float32, len(temb))
	kernels.SiLU(o, s, temb)
	out := make([][]float32, len(tr.blocks))
	for i := range tr.blocks {
		a := tr.blocks[i].ada
		out[i] = make([]float32, a.out)
		a.forward(o, out[i], s, 1)
	}
	return out
}

// trunkBuffers is the scratch of one trunk pass.
type trunkBuffers struct {
	h, qkv, y, a, c []float32
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// seqLayout describes the batch of a trunk pass: n sequences of length L stacked as rows;
// the first prefix rows of each are the patch tokens (the visible prefix of the encoder's
// causal_last mask and the first sub-sequence of the decoder's adaLN packing).
type seqLayout struct {
	n, L, prefix int
	mask         kernels.Mask
}

// forward runs every block over x [n·L, W] in place. mods holds each block's adaLN vector
// (nil for a plain trunk). ctx is checked before every block.
func (tr *trunk) forward(ctx context.Context, o kernels.Opts, x []float32, s seqLayout, mods [][]float32, buf *trunkBuffers) error {
	W, Hd := tr.cfg.Width, tr.cfg.MLPHidden
	rows := s.n * s.L
	buf.h = grow(buf.h, rows*W)
	buf.qkv = grow(buf.qkv, rows*3*W)
	buf.y = grow(buf.y, rows*W)
	buf.a = grow(buf.a, rows*Hd)
	if tr.cfg.Gated {
		buf.c = grow(buf.c, rows*Hd)
	}
	h, qkv, y, a, c := buf.h, buf.qkv, buf.y, buf.a, buf.c
	for i := range tr.blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := &tr.blocks[i]
		var mod []float32
		if b.ada != nil {
			mod = mods[i]
		}

		// x += gate_msa ⊙ attn(modulate(LN(x), shift_msa, scale_msa))
		kernels.LayerNorm(o, h, x, rows, W, tr.eps)
		tr.modulate(o, h, mod, s, model.AdaLNShiftMSA, model.AdaLNScaleMSA)
		b.qkv.forward(o, qkv, h, rows)
		if tr.cfg.QKNorm {
			kernels.LayerNormHeads(o, qkv, rows, 3*W, tr.cfg.Heads, tr.cfg.HeadDim, tr.eps)
			kernels.LayerNormHeads(o, qkv[W:], rows, 3*W, tr.cfg.Heads, tr.cfg.HeadDim, tr.eps)
		}
		kernels.Attention(o, h, qkv, qkv[W:], qkv[2*W:], kernels.AttnDims{
			Batch: s.n, Heads: tr.cfg.Heads, SeqQ: s.L, SeqK: s.L, HeadDim: tr.cfg.HeadDim,
			LdQ: 3 * W, LdK: 3 * W, LdV: 3 * W, LdO: W,
		}, tr.scale, s.mask)
		b.proj.forward(o, y, h, rows)
		tr.residual(o, x, y, mod, s, model.AdaLNGateMSA)

		// x += gate_mlp ⊙ mlp(modulate(LN(x), shift_mlp, scale_mlp))
		kernels.LayerNorm(o, h, x, rows, W, tr.eps)
		tr.modulate(o, h, mod, s, model.AdaLNShiftMLP, model.AdaLNScaleMLP)
		b.fc1.forward(o, a, h, rows)
		if b.fc3 != nil {
			b.fc3.forward(o, c, h, rows)
			kernels.SwiGLU(o, a, a, c) // silu(fc1 x) ⊙ fc3 x
		} else {
			kernels.SiLU(o, a, a)
		}
		b.fc2.forward(o, y, a, rows)
		tr.residual(o, x, y, mod, s, model.AdaLNGateMLP)
	}
	return ctx.Err()
}

// segments calls fn for each run of rows that shares one adaLN part: with E = 2 the patch
// rows of every sequence use part 0 and its register rows part 1 (the official packer's
// per_subseq_embs); with E = 1 all rows use part 0.
func (tr *trunk) segments(s seqLayout, fn func(row0, rows, part int)) {
	if tr.cfg.AdaLNExpansion < 2 {
		fn(0, s.n*s.L, 0)
		return
	}
	for q := 0; q < s.n; q++ {
		if s.prefix > 0 {
			fn(q*s.L, s.prefix, 0)
		}
		if s.L > s.prefix {
			fn(q*s.L+s.prefix, s.L-s.prefix, 1)
		}
	}
}

// modulate applies h = h·(1+scale) + shift with the given chunks of mod (no-op when mod is nil).
func (tr *trunk) modulate(o kernels.Opts, h, mod []float32, s seqLayout, shift, scale int) {
	if mod == nil {
		return
	}
	W := tr.cfg.Width
	tr.segments(s, func(row0, rows, part int) {
		p := mod[part*6*W:]
		v := h[row0*W : (row0+rows)*W]
		kernels.Modulate(o, v, v, p[shift*W:(shift+1)*W], p[scale*W:(scale+1)*W], rows, W)
	})
}

// residual adds the branch y to x, gated by the chunk gate of mod (plain add when mod is nil).
func (tr *trunk) residual(o kernels.Opts, x, y, mod []float32, s seqLayout, gate int) {
	W := tr.cfg.Width
	if mod == nil {
		n := s.n * s.L * W
		kernels.Add(o, x[:n], x[:n], y[:n])
		return
	}
	tr.segments(s, func(row0, rows, part int) {
		g := mod[part*6*W+gate*W:]
		kernels.GatedResidual(o, x[row0*W:(row0+rows)*W], y[row0*W:(row0+rows)*W], g[:W], rows, W)
	})
}

// flops is the multiply-add count ×2 of one trunk pass over n sequences of length L.
func (tr *trunk) flops(n, L int) float64 {
	W, Hd := float64(tr.cfg.Width), float64(tr.cfg.MLPHidden)
	mlp := 2.0
	if tr.cfg.Gated {
		mlp = 3
	}
	rows := float64(n * L)
	perBlock := 2*rows*(4*W*W+mlp*W*Hd) + 4*float64(n)*float64(L)*float64(L)*W
	return perBlock * float64(len(tr.blocks))
}

// patchify writes the patch vectors of one channels-first image x [C, h, w] into dst
// [nh·nw, ph·pw·C], patch (r, c) at row r·nw+c, element (pr·pw+pc)·C+ch (the official
// channels_first_to_last followed by PatchEmbedder's rearrangement).
func patchify(dst, x []float32, C, h, w, ph, pw int) {
	nh, nw := h/ph, w/pw
	D := ph * pw * C
	for r := 0; r < nh; r++ {
		for c := 0; c < nw; c++ {
			row := dst[(r*nw+c)*D:]
			for pr := 0; pr < ph; pr++ {
				for pc := 0; pc < pw; pc++ {
					base := (pr*pw + pc) * C
					pix := (r*ph+pr)*w + c*pw + pc
					for ch := 0; ch < C; ch++ {
						row[base+ch] = x[ch*h*w+pix]
					}
				}
			}
		}
	}
}

// unpatchify is the inverse of patchify: src [nh·nw, ph·pw·C] into a channels-first image
// x [C, h, w] (ToPatchesLinearHead's unpatchify followed by channels_last_to_first).
func unpatchify(x, src []float32, C, h, w, ph, pw int) {
	nh, nw := h/ph, w/pw
	D := ph * pw * C
	for r := 0; r < nh; r++ {
		for c := 0; c < nw; c++ {
			row := src[(r*nw+c)*D:]
			for pr := 0; pr < ph; pr++ {
				for pc := 0; pc < pw; pc++ {
					base := (pr*pw + pc) * C
					pix := (r*ph+pr)*w + c*pw + pc
					for ch := 0; ch < C; ch++ {
						x[ch*h*w+pix] = row[base+ch]
					}
				}
			}
		}
	}
}

// addSinCos adds the cropped sin-cos table (the checkpoint's [1, W, S_h, S_w] parameter) to the
// patch rows dst [nh·nw, W]: dst[r·nw+c][ch] += table[ch][r][c].
func addSinCos(dst, table []float32, W, sh, sw, nh, nw int) {
	for r := 0; r < nh; r++ {
		for c := 0; c < nw; c++ {
			row := dst[(r*nw+c)*W : (r*nw+c+1)*W]
			for ch := range row {
				row[ch] += table[(ch*sh+r)*sw+c]
			}
		}
	}
}

// tracer receives copies of intermediate stages (tests compare them with the official
// reference stage by stage); nil discards them.
type tracer func(stage string, data []float32)

func (t tracer) emit(stage string, data []float32) {
	if t != nil {
		t(stage, append([]float32(nil), data...))
	}
}
