package onnx

import (
	"fmt"
	"strings"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// The FlexTok graphs. Each is the computation of the pure-Go engine (sdk/engine), read from the
// same model.Config and the same weight names: the trunks, heads and time embedding are sdk/nn's
// definition recorded (Recorder), the plumbing around them ONNX operators written here; the
// conformance tests hold the graphs to the engine within written bounds.
//
//	encoder:     image [N, 3, H, W] in [-1, 1] → z [N, R, D] (FSQ input), ids [N, R] int64
//	decoder:     x_t [N, C, h, w], t [N], ids [N, R] int64, k [N] int64 → v [N, C, h, w]
//	vae_decoder: latents [N, C, h, w] → image [N, 3, H, W], unclamped
//
// N is dynamic; the spatial sizes are fixed at export (the model's image size by default,
// ModelSizes).
// In the decoder graph k[i] = 0 marks an unconditional item (the null condition replaces every
// register, or, for replace_with_single_token, the first register with the keys after it
// masked out); 1 <= k[i] <= R keeps the first k[i] tokens and masks the rest, so one call runs
// the conditional and unconditional passes of classifier-free guidance as one batch.

// Graph input and output names.
const (
	InImage   = "image"
	OutZ      = "z"
	OutIDs    = "ids"
	InX       = "x_t"
	InT       = "t"
	InIDs     = "ids"
	InK       = "k"
	OutV      = "v"
	InLatents = "latents"
	OutImage  = "image"
)

// Sizes are the fixed sizes of the exported graphs.
type Sizes struct {
	Height int `json:"image_height"`
	Width  int `json:"image_width"`
	C      int `json:"latent_channels"`
	H      int `json:"latent_height"`
	W      int `json:"latent_width"`
	R      int `json:"tokens"`   // registers per image
	D      int `json:"fsq_dims"` // FSQ dimensions

	// FP16 exports the decoder's Linear layers in float16 (Graph.FP16), for GPUs. The
	// encoder and the VAE stay float32 whatever it says, so token ids do not depend on it.
	FP16 bool `json:"decoder_fp16"`
}

// ModelSizes returns the sizes of cfg's graphs for square images of size pixels (0: the
// model's own size, model.Geometry's Default), refusing sizes the model does not run at.
func ModelSizes(cfg *model.Config, size int) (Sizes, error) {
	g := cfg.Geometry()
	h, w, err := g.Resolve(size)
	if err != nil {
		return Sizes{}, fmt.Errorf("flextok/onnx: %w", err)
	}
	l := g.Latent(h, w)
	return Sizes{Height: h, Width: w, C: l[0], H: l[1], W: l[2], R: cfg.Encoder.RegistersNMax, D: cfg.Encoder.LatentDim}, nil
}

// weights reads the tensors of one part through model.PartReader (the engine's checks).
type weights struct{ *model.PartReader }

func newWeights(m *model.Model, part string) *weights {
	return &weights{model.NewPartReader(m.Config, part, m)}
}

func (w *weights) err() error {
	if err := w.Err(); err != nil {
		return fmt.Errorf("flextok/onnx: %w", err)
	}
	return nil
}

// patchify turns x [N, C, h, w] into patch rows [N, P, ph·pw·C] (channels last within a patch).
func patchify(g *Graph, x Value, C, h, w, ph, pw int) Value {
	nh, nw := int64(h/ph), int64(w/pw)
	x = g.Reshape(x, -1, int64(C), nh, int64(ph), nw, int64(pw))
	x = g.Transpose(x, 0, 2, 4, 3, 5, 1) // [N, nh, nw, ph, pw, C]
	return g.Reshape(x, -1, nh*nw, int64(ph*pw*C))
}

// unpatchify is the inverse: rows [N, P, ph·pw·C] to [N, C, h, w].
func unpatchify(g *Graph, x Value, C, h, w, ph, pw int) Value {
	nh, nw := int64(h/ph), int64(w/pw)
	x = g.Reshape(x, -1, nh, nw, int64(ph), int64(pw), int64(C))
	x = g.Transpose(x, 0, 5, 1, 3, 2, 4) // [N, C, nh, ph, nw, pw]
	return g.Reshape(x, -1, int64(C), int64(h), int64(w))
}

// fsqIDs adds FSQ quantisation: z [N, R, D] → ids [N, R] int64, the computation of fsq.Encode
// (tanh bound, round half to even, mixed-radix index).
func fsqIDs(g *Graph, z Value, q *fsq.Quantizer) Value {
	D := q.Dim()
	shift, halfL, offset := q.BoundParams()
	halfW, basis := make([]float32, D), make([]float32, D)
	for d, l := range q.Levels() {
		halfW[d] = float32(l / 2)
		basis[d] = float32(q.Basis()[d])
	}
	done := g.Scope("fsq")
	defer done()
	b := g.Op("Tanh", []Value{g.Add(z, g.Const("shift", []int{D}, shift))})
	b = g.Sub(g.Mul(b, g.Const("half_l", []int{D}, halfL)), g.Const("offset", []int{D}, offset))
	digit := g.Add(g.Op("Round", []Value{b}), g.Const("half_width", []int{D}, halfW))
	idx := g.Op("ReduceSum", []Value{g.Mul(digit, g.Const("basis", []int{D}, basis)), g.Ints(-1)}, AInt("keepdims", 0))
	return g.Op("Cast", []Value{idx}, AInt("to", int64(Int64)))
}

// fsqCodes adds the inverse: ids [N, R] int64 → codes [N, R, D] (exact).
func fsqCodes(g *Graph, ids Value, q *fsq.Quantizer) Value {
	D := q.Dim()
	basis, lv, hw, hwf := make([]int64, D), make([]int64, D), make([]int64, D), make([]float32, D)
	for d, l := range q.Levels() {
		basis[d], lv[d], hw[d], hwf[d] = int64(q.Basis()[d]), int64(l), int64(l/2), float32(l/2)
	}
	done := g.Scope("fsq_codes")
	defer done()
	x := g.Reshape(ids, 0, 0, 1)
	c := g.Op("Mod", []Value{g.Div(x, g.ConstInt64("basis", []int{D}, basis)), g.ConstInt64("levels", []int{D}, lv)})
	c = g.Op("Cast", []Value{g.Sub(c, g.ConstInt64("half_width_i", []int{D}, hw))}, AInt("to", int64(Float)))
	return g.Div(c, g.Const("half_width", []int{D}, hwf))
}

// Encoder builds the encoder graph: image → VAE encoder → register encoder → z, FSQ → ids.
func Encoder(m *model.Model, s Sizes) (*pb.ModelProto, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	cfg := m.Config
	e := cfg.Encoder
	if err := e.Supported(); err != nil {
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := s.check(e.PatchSize, e.Posemb.MaxSizes); err != nil {
		return nil, err
	}
	q, err := quantizer(cfg.FSQ.Levels, e.LatentDim)
	if err != nil {
		return nil, err
	}
	g := NewGraph("flextok_encoder")
	img := g.Input(InImage, Float, "N", 3, s.Height, s.Width)
	lat, err := VAEEncoder(g, m, img)
	if err != nil {
		return nil, err
	}
	w := newWeights(m, "encoder")
	W, R, C, D := e.Trunk.Width, e.RegistersNMax, e.ChannelsIn, e.LatentDim
	ph, pw := e.PatchSize[0], e.PatchSize[1]
	nh, nw := s.H/ph, s.W/pw
	P := nh * nw
	L := P + R
	done := g.Scope("encoder")
	rec := NewRecorder(g)
	sh, sw := e.Posemb.MaxSizes[0], e.Posemb.MaxSizes[1]
	table := w.Tensor(model.EncoderPrefix+e.Posemb.Module+".posembs", W*sh*sw)
	pe := nn.NewPatchEmbed(w.binder(), w.Module(model.EncoderPrefix, e.Modules, "PatchEmbedder"), ph*pw*C, W, table, sh, sw)
	x := nn.EmbedPatches(rec, pe, Var{patchify(g, lat, C, s.H, s.W, ph, pw), ph * pw * C}, nh, nw).V
	regs := g.Const("registers", []int{1, R, W}, w.Tensor(w.Module(model.EncoderPrefix, e.Modules, "Registers1D")+".registers", R*W))
	// Broadcast the registers over the batch: registers + 0·x[:, :1, :1] keeps N dynamic.
	zero := g.Mul(g.Slice(g.Slice(x, 1, 0, 1), 2, 0, 1), g.Scalar(0))
	x = g.Concat(1, x, g.Add(regs, zero))
	trunkMod := w.Module(model.EncoderPrefix, e.Modules, "FlexTransformer")
	tr := nn.NewTrunk(w.binder(), model.EncoderPrefix, strings.TrimPrefix(trunkMod, model.EncoderPrefix), e.Trunk)
	seq := nn.Seq[Var]{L: L, Prefix: P, Causal: e.MaskMode == "causal_last"}
	out, _ := nn.Forward(rec, tr, Var{x, W}, seq, nil)
	x = out.V
	head := nn.NewHead(w.binder(), w.Module(model.EncoderPrefix, e.Modules, "LinearHead"), W, D, e.HeadNormEps, false)
	z := nn.HeadForward(rec, head, Var{g.Slice(x, 1, int64(P), int64(L)), W}, Var{}, nn.Seq[Var]{L: R}).V
	done()
	ids := fsqIDs(g, z, q)
	if err := w.err(); err != nil {
		return nil, err
	}
	g.Output(z, OutZ, Float, "N", R, D)
	g.Output(ids, OutIDs, Int64, "N", R)
	return g.Model(fmt.Sprintf("FlexTok encoder: image [N, 3, %d, %d] in [-1, 1] -> z [N, %d, %d], ids [N, %d]", s.Height, s.Width, R, D, R)), nil
}

// Decoder builds the velocity graph v(x_t, t, ids, k).
func Decoder(m *model.Model, s Sizes) (*pb.ModelProto, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	cfg := m.Config
	d := cfg.Decoder
	if err := d.Supported(s.R); err != nil {
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := s.check(d.PatchSize, d.PatchPosemb.MaxSizes); err != nil {
		return nil, err
	}
	q, err := quantizer(cfg.FSQ.Levels, d.LatentDim)
	if err != nil {
		return nil, err
	}
	g := NewGraph("flextok_decoder")
	g.FP16 = s.FP16
	xt := g.Input(InX, Float, "N", s.C, s.H, s.W)
	tIn := g.Input(InT, Float, "N")
	ids := g.Input(InIDs, Int64, "N", s.R)
	kIn := g.Input(InK, Int64, "N")

	w := newWeights(m, "decoder")
	W, R, C := d.Trunk.Width, s.R, d.ChannelsIn
	ph, pw := d.PatchSize[0], d.PatchSize[1]
	nh, nw := s.H/ph, s.W/pw
	P := nh * nw
	L := P + R
	mod := func(class string) string { return w.Module(model.DecoderPrefix, d.Modules, class) }
	codes := fsqCodes(g, ids, q)
	done := g.Scope("decoder")
	rec := NewRecorder(g)
	bind := w.binder()

	// Registers: Linear(D → W) of the codes plus the register table; positions >= k get the
	// mask token (sdk/nn's definition, recorded); k = 0 (unconditional) gets the null
	// condition everywhere.
	Rmax := d.RegisterPosemb.MaxSizes[0]
	rtab := w.Tensor(model.DecoderPrefix+d.RegisterPosemb.Module+".posembs", W*Rmax)
	re := nn.NewRegisterEmbed(bind, mod("LinearLayer"), d.LatentDim, W, rtab, Rmax, R, w.Tensor(mod("MaskedNestedDropout")+".dropout_mask_token", W))
	regs := nn.EmbedRegisters(rec, re, Var{codes, d.LatentDim})
	keep := Var{g.Op("Cast", []Value{kIn}, AInt("to", int64(Float))), 1}
	regs = nn.MaskRegisters(rec, re, regs, keep, R)
	k2 := g.Reshape(kIn, -1, 1)
	null := make([]float32, W)
	if d.NullCond == model.NullCondLearned {
		null = w.Tensor(mod("LearnedNullCond")+".nullcond", W)
	}
	uncond := g.Op("Equal", []Value{k2, g.ConstInt64("zero", []int{1}, []int64{0})}) // [N, 1]
	keepNull := Var{g.Op("Where", []Value{uncond, g.Scalar(0), g.Scalar(float32(R))}), 1}
	regsV := nn.NullCondition(rec, null, regs, keepNull, R).V

	// Patches of x_t: Linear(ph·pw·C → W) plus the sin-cos table.
	sh, sw := d.PatchPosemb.MaxSizes[0], d.PatchPosemb.MaxSizes[1]
	table := w.Tensor(model.DecoderPrefix+d.PatchPosemb.Module+".posembs", W*sh*sw)
	pe := nn.NewPatchEmbed(bind, mod("PatchEmbedder"), ph*pw*C, W, table, sh, sw)
	x := nn.EmbedPatches(rec, pe, Var{patchify(g, xt, C, s.H, s.W, ph, pw), ph * pw * C}, nh, nw).V
	x = g.Concat(1, x, regsV) // [N, L, W]

	// The time embedding, every block's adaLN vector (Linear(SiLU(temb)), [N, E·6W]) and the
	// trunk: sdk/nn's definition, recorded. With E = 2 the patch rows use part 0 of a block's
	// vector and the register rows part 1.
	te := nn.NewTimeEmbedder(bind, mod("TimestepEmbedder"), d.FreqEmbSize, W, d.MaxTimestep)
	stemb := rec.SiLU(nn.TimeEmbed(rec, te, Var{tIn, 1})).V
	trunkMod := mod("FlexTransformer")
	tr := nn.NewTrunk(bind, model.DecoderPrefix, strings.TrimPrefix(trunkMod, model.DecoderPrefix), d.Trunk)
	mods := nn.Modulation(rec, tr, Var{stemb, W})
	seq := nn.Seq[Var]{L: L, Prefix: P, Causal: d.MaskMode == "causal_last"}
	if d.NullCondSingle {
		// The official unconditional sequence is the patches and one null token (at P here):
		// an unconditional item sees only its first P+1 keys, so every row sees what it would
		// in the shorter sequence, and the batch keeps one length.
		keys := g.Op("Where", []Value{uncond, g.Scalar(float32(P + 1)), g.Scalar(float32(L))}) // [N, 1]
		seq.Keys = &Var{keys, 1}
	}
	out, _ := nn.Forward(rec, tr, Var{x, W}, seq, mods)
	x = out.V

	// Head on the patch rows: LayerNorm, adaLN (shift, scale), Linear(W → ph·pw·C), unpatchify.
	head := nn.NewHead(bind, mod("ToPatchesLinearHead"), W, ph*pw*C, d.HeadNormEps, d.HeadAdaLN)
	var headMod Var
	if head.HasAdaLN {
		headMod = nn.HeadModulation(rec, head, Var{stemb, W})
	}
	h := nn.HeadForward(rec, head, Var{g.Slice(x, 1, 0, int64(P)), W}, headMod, nn.Seq[Var]{L: P, Prefix: P})
	v := unpatchify(g, h.V, C, s.H, s.W, ph, pw)
	done()
	if err := w.err(); err != nil {
		return nil, err
	}
	g.Output(v, OutV, Float, "N", s.C, s.H, s.W)
	return g.Model(fmt.Sprintf("FlexTok decoder velocity: x_t [N, %d, %d, %d], t [N], ids [N, %d], k [N] (0: unconditional) -> v", s.C, s.H, s.W, R)), nil
}

// VAEDecoderGraph builds the VAE decoder graph: scaled latents → image (unclamped).
func VAEDecoderGraph(m *model.Model, s Sizes) (*pb.ModelProto, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	g := NewGraph("flextok_vae_decoder")
	lat := g.Input(InLatents, Float, "N", s.C, s.H, s.W)
	img, err := VAEDecoder(g, m, lat)
	if err != nil {
		return nil, err
	}
	g.Output(img, OutImage, Float, "N", 3, s.Height, s.Width)
	return g.Model(fmt.Sprintf("FlexTok VAE decoder: latents [N, %d, %d, %d] -> image [N, 3, %d, %d]", s.C, s.H, s.W, s.Height, s.Width)), nil
}

// quantizer is the FSQ of levels, which must have dims dimensions (the encoder head's output,
// the decoder's input), as the engine checks.
func quantizer(levels []int, dims int) (*fsq.Quantizer, error) {
	q, err := fsq.New(levels)
	if err != nil {
		return nil, fmt.Errorf("flextok/onnx: FSQ: %w", err)
	}
	if q.Dim() != dims {
		return nil, fmt.Errorf("flextok/onnx: %d latent dims, FSQ has %d levels", dims, q.Dim())
	}
	return q, nil
}

func checkModel(m *model.Model) error {
	if m == nil || m.Config == nil {
		return fmt.Errorf("flextok/onnx: nil model")
	}
	return nil
}

// check validates the sizes against a patch size and positional table.
func (s Sizes) check(patch [2]int, table []int) error {
	switch {
	case s.H < 1 || s.W < 1 || s.H%patch[0] != 0 || s.W%patch[1] != 0:
		return fmt.Errorf("flextok/onnx: latent %dx%d is not a multiple of the patch size %dx%d", s.H, s.W, patch[0], patch[1])
	case s.H/patch[0] > table[0] || s.W/patch[1] > table[1]:
		return fmt.Errorf("flextok/onnx: patch grid %dx%d exceeds the positional table %dx%d", s.H/patch[0], s.W/patch[1], table[0], table[1])
	}
	return nil
}
