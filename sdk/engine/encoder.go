package engine

import (
	"context"
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/fsq"
	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Encoder is the FlexTok register encoder: scaled VAE latents in, R register vectors (the FSQ
// input) and token ids out. It holds its weights (read once by NewEncoder) and is safe for
// concurrent use.
//
// Per image: the latent [C, h, w] is cut into ph×pw patches (channels last, element
// (pr·pw+pc)·C+c), embedded by Linear(ph·pw·C → W) plus the checkpoint's sin-cos table cropped to
// the grid; the R learned registers follow; the trunk runs with the causal_last mask (patches
// see all patches, register i sees all patches and registers 0..i); the registers go through
// LayerNorm and Linear(W → D) (D = 6 FSQ dimensions).
type Encoder struct {
	cfg  model.EncoderConfig
	opts Options

	patch     *nn.PatchEmbed[*nn.Linear] // (W, ph·pw·C) with bias; sin-cos table (W, S_h, S_w)
	registers []float32                  // (R, W)
	trunk     *trunk
	head      *nn.Head[*nn.Linear] // LayerNorm, Linear (D, W) with bias
	fsq       *fsq.Quantizer
}

// NewEncoder reads the encoder's weights from m (once; the Encoder keeps float32 copies packed
// for o's path). A missing or misshaped tensor is an error naming every such tensor.
func NewEncoder(m *model.Model, o Options) (*Encoder, error) {
	if m == nil || m.Config == nil {
		return nil, fmt.Errorf("flextok/engine: NewEncoder: nil model")
	}
	return newEncoder(m.Config, m, o)
}

// encoderBF16 lets Precision BF16 reach the encoder: only the tests set it, to measure what
// bf16 encoder weights would do to token ids (TestBF16EncoderIDs). It is not offered.
var encoderBF16 = false

func newEncoder(cfg *model.Config, src model.TensorSource, o Options) (*Encoder, error) {
	e := cfg.Encoder
	if err := e.Supported(); err != nil {
		return nil, fmt.Errorf("flextok/engine: %w", err)
	}
	fq, err := fsq.New(cfg.FSQ.Levels)
	if err != nil {
		return nil, fmt.Errorf("flextok/engine: encoder FSQ: %w", err)
	}
	if fq.Dim() != e.LatentDim {
		return nil, fmt.Errorf("flextok/engine: encoder head gives %d dims, FSQ has %d levels", e.LatentDim, fq.Dim())
	}
	ko := o.kernels()
	ko.BF16 = ko.BF16 && encoderBF16 // float32: token ids never depend on Precision
	r := newWeightReader(cfg, "encoder", src)
	mod := func(class string) string { return r.Module(model.EncoderPrefix, e.Modules, class) }

	W, R := e.Trunk.Width, e.RegistersNMax
	pd := e.PatchSize[0] * e.PatchSize[1] * e.ChannelsIn
	enc := &Encoder{cfg: e, opts: o, fsq: fq}
	sh, sw := e.Posemb.MaxSizes[0], e.Posemb.MaxSizes[1]
	table := r.Tensor(model.EncoderPrefix+e.Posemb.Module+sufPosembs, W*sh*sw)
	enc.patch = nn.NewPatchEmbed(r.binder(ko), mod("PatchEmbedder"), pd, W, table, sh, sw)
	enc.registers = r.Tensor(mod("Registers1D")+sufRegisters, R*W)
	trunkMod := mod("FlexTransformer")
	enc.trunk = readTrunk(r, ko, model.EncoderPrefix, trunkMod[len(model.EncoderPrefix):], e.Trunk)
	enc.head = nn.NewHead(r.binder(ko), mod("LinearHead"), W, e.LatentDim, e.HeadNormEps, false)
	if err := r.err(); err != nil {
		return nil, err
	}
	return enc, nil
}

// Registers runs the encoder on scaled VAE latents [B, C, h, w] (already multiplied by the
// VAE's scaling factor) and returns the register latents [B, R, D] before quantisation.
// h and w must be multiples of the patch size and the patch grid must fit the sin-cos table.
func (e *Encoder) Registers(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
	B, h, w, _, _, err := e.checkLatents(latents)
	if err != nil {
		return tensor.Tensor{}, err
	}
	o := e.opts.kernels()
	parts := itemParts(o.Threads, B, e.Flops(1, h, w))
	if parts == 1 {
		return e.registersTrace(ctx, o, latents, nil)
	}
	// Small images: each part of the batch on its own goroutine, one kernel thread each.
	o.Threads = 1
	img := len(latents.Data) / B
	R, D := e.cfg.RegistersNMax, e.cfg.LatentDim
	out := tensor.Tensor{Shape: []int{B, R, D}, Data: make([]float32, B*R*D)}
	err = inParts(B, parts, func(lo, hi int) error {
		part := tensor.Tensor{Shape: append([]int{hi - lo}, latents.Shape[1:]...), Data: latents.Data[lo*img : hi*img]}
		z, err := e.registersTrace(ctx, o, part, nil)
		if err == nil {
			copy(out.Data[lo*R*D:hi*R*D], z.Data)
		}
		return err
	})
	if err != nil {
		return tensor.Tensor{}, err
	}
	return out, nil
}

// Tokens runs Registers and quantises every register with FSQ (the config's levels): one
// slice of R token ids per image.
func (e *Encoder) Tokens(ctx context.Context, latents tensor.Tensor) ([][]uint32, error) {
	z, err := e.Registers(ctx, latents)
	if err != nil {
		return nil, err
	}
	B, R, D := z.Shape[0], z.Shape[1], z.Shape[2]
	ids := make([][]uint32, B)
	for i := range ids {
		ids[i] = make([]uint32, R)
		e.fsq.Encode(ids[i], z.Data[i*R*D:(i+1)*R*D])
	}
	return ids, nil
}

// Flops is the number of floating-point operations (2 per multiply-add) of Registers for B
// images of h×w latents, counting the matrix products and attention.
func (e *Encoder) Flops(B, h, w int) float64 {
	P := (h / e.cfg.PatchSize[0]) * (w / e.cfg.PatchSize[1])
	W := float64(e.cfg.Trunk.Width)
	pd := float64(e.cfg.PatchSize[0] * e.cfg.PatchSize[1] * e.cfg.ChannelsIn)
	return nn.Flops(e.cfg.Trunk, B, P+e.cfg.RegistersNMax) + 2*float64(B*P)*pd*W + 2*float64(B*e.cfg.RegistersNMax)*W*float64(e.cfg.LatentDim)
}

// checkLatents validates latents [B, C, h, w] and returns the patch grid.
func (e *Encoder) checkLatents(x tensor.Tensor) (B, h, w, nh, nw int, err error) {
	c := e.cfg
	if err := x.Check(); err != nil || len(x.Shape) != 4 {
		return 0, 0, 0, 0, 0, fmt.Errorf("flextok/engine: encoder latents: shape %v with %d values, want [B, %d, h, w]", x.Shape, len(x.Data), c.ChannelsIn)
	}
	B, C, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	ph, pw := c.PatchSize[0], c.PatchSize[1]
	switch {
	case B < 1 || C != c.ChannelsIn || h < 1 || w < 1:
		err = fmt.Errorf("flextok/engine: encoder latents: shape %v, want [B>=1, %d, h, w]", x.Shape, c.ChannelsIn)
	case h%ph != 0 || w%pw != 0:
		err = fmt.Errorf("flextok/engine: encoder latents: %dx%d is not a multiple of the patch size %dx%d", h, w, ph, pw)
	case h/ph > c.Posemb.MaxSizes[0] || w/pw > c.Posemb.MaxSizes[1]:
		err = fmt.Errorf("flextok/engine: encoder latents: patch grid %dx%d exceeds the positional table %dx%d", h/ph, w/pw, c.Posemb.MaxSizes[0], c.Posemb.MaxSizes[1])
	}
	return B, h, w, h / ph, w / pw, err
}

func (e *Encoder) registersTrace(ctx context.Context, o kernels.Opts, latents tensor.Tensor, tr tracer) (tensor.Tensor, error) {
	B, h, w, nh, nw, err := e.checkLatents(latents)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if err := ctx.Err(); err != nil {
		return tensor.Tensor{}, err
	}
	c := e.cfg
	W, R, C, D := c.Trunk.Width, c.RegistersNMax, c.ChannelsIn, c.LatentDim
	ph, pw := c.PatchSize[0], c.PatchSize[1]
	P, L := nh*nw, nh*nw+R
	pd := ph * pw * C

	// Patch embedding of all images in one product, then the sequences [patches, registers].
	pt := make([]float32, B*P*pd)
	for i := 0; i < B; i++ {
		patchify(pt[i*P*pd:], latents.Data[i*C*h*w:(i+1)*C*h*w], C, h, w, ph, pw)
	}
	eg := getEager(ctx, o)
	defer putEager(eg)
	emb := nn.EmbedPatches(eg, e.patch, nn.NewTensor(pt, B*P, pd), nh, nw).Data
	x := make([]float32, B*L*W)
	for i := 0; i < B; i++ {
		seq := x[i*L*W:]
		copy(seq[:P*W], emb[i*P*W:(i+1)*P*W])
		copy(seq[P*W:L*W], e.registers[:R*W])
	}
	if tr != nil {
		pat := make([]float32, 0, B*P*W)
		for i := 0; i < B; i++ {
			pat = append(pat, x[i*L*W:i*L*W+P*W]...)
		}
		tr.emit("enc_patches_posemb", pat)
	}

	s := nn.Seq[nn.Tensor]{L: L, Prefix: P, Causal: c.MaskMode == "causal_last"}
	if err := runTrunk(ctx, eg, e.trunk, x, s, nil); err != nil {
		return tensor.Tensor{}, err
	}

	// Head on the registers: LayerNorm, Linear(W → D).
	regs := make([]float32, B*R*W)
	for i := 0; i < B; i++ {
		copy(regs[i*R*W:(i+1)*R*W], x[(i*L+P)*W:(i+1)*L*W])
	}
	tr.emit("enc_trunk_registers", regs)
	z := nn.HeadForward(eg, e.head, nn.NewTensor(regs, B*R, W), nn.Tensor{}, nn.Seq[nn.Tensor]{L: R})
	return tensor.Tensor{Shape: []int{B, R, D}, Data: append([]float32(nil), z.Data...)}, nil // z is the pooled arena's
}
