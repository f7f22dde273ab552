package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// VAE is the diffusers AutoencoderKL of a FlexTok checkpoint (the official StableDiffusionVAE
// wrapper around it), run with the kernels of sdk/internal/kernels.
//
// Notation in the shape comments: B images, Cin = in_channels (3), C = latent channels,
// b[i] = block_out_channels[i], n = len(b), f = 2^(n-1) the downsample factor, H×W the image
// and h×w = H/f × W/f the latent grid. Activations of one image are [channels, height, width],
// row-major.
//
// Ops follow diffusers 0.32 exactly: GroupNorm(norm_num_groups, eps 1e-6, affine) everywhere,
// ResnetBlock2D (norm1, SiLU, conv1 3x3, norm2, SiLU, conv2 3x3, 1x1 conv_shortcut when the
// channel count changes, output (skip + h)/1), Downsample2D (zero pad right and bottom by one,
// 3x3 stride 2), Upsample2D (nearest ×2, 3x3), and the mid block (resnet, single-head
// self-attention over the h·w pixels if mid_block_add_attention, resnet).
//
// A VAE is safe for concurrent use: weights are read-only and every call has its own scratch.
type VAE struct {
	opts   kernels.Opts
	groups int     // GroupNorm groups (norm_num_groups)
	eps    float32 // GroupNorm eps (1e-6)
	scale  float32 // scaling_factor, applied after encode and undone before decode

	inC, outC int // image channels in (encoder) and out (decoder), 3 and 3
	latentC   int // C
	factor    int // f
	blocks    []int
	sample    bool // sample_posterior in the config (Encode returns the posterior mean anyway)

	enc *model.VAEEncoderWeights
	dec *model.VAEDecoderWeights
	// bf16 holds the decoder's convolutions packed as bfloat16 (Precision BF16; their float32
	// weights are dropped): the encoder's stay float32, so token ids never change.
	bf16 map[*model.VAEConv]*kernels.ConvWeights
}

// NewVAE reads the vae.vae.* weights of m once (as float32) and builds the VAE: the encoder's
// and the decoder's, or only one half's with Options.Parts DecodeOnly or EncodeOnly. It fails
// with an error naming the tensor when one is missing, has the wrong number of values or
// holds a NaN or an infinity, and when the config is not a layout this engine can run.
//
// The official wrapper samples the posterior when sample_posterior=True, with torch's unseeded
// global generator; Encode always returns the posterior mean (the mode) instead, which is
// what sample_posterior=False computes, so tokenization is deterministic.
func NewVAE(m *model.Model, o Options) (*VAE, error) {
	if m == nil || m.Config == nil || m.Weights == nil || m.Report == nil {
		return nil, errors.New("flextok/engine: NewVAE: model is not loaded (use model.Load or model.LoadFile)")
	}
	return newVAE(m.Config.VAE, func(name string) ([]float32, error) { return m.Tensor(name) }, o)
}

// newVAE builds the VAE from cfg with weights from get (a canonical name in, float32 values
// out); tests use it to inject broken weights.
func newVAE(cfg model.VAEConfig, get func(name string) ([]float32, error), o Options) (*VAE, error) {
	if err := cfg.Supported(); err != nil {
		return nil, fmt.Errorf("flextok/engine: %w", err)
	}
	b := cfg.BlockOutChannels
	C := cfg.LatentChannels
	v := &VAE{
		opts:    o.kernels(),
		groups:  cfg.NormGroups,
		eps:     cfg.GroupNormEps(),
		scale:   float32(cfg.ScalingFactor),
		inC:     cfg.InChannels,
		outC:    cfg.OutChannels,
		latentC: C,
		factor:  cfg.DownsampleFactor(),
		blocks:  append([]int(nil), b...),
		sample:  cfg.SamplePosterior,
	}
	if err := o.Parts.check(); err != nil {
		return nil, err
	}
	// Only the halves o.Parts asks for are read: the other's weights are never converted.
	var errs [2]error
	if o.Parts.encodes() {
		v.enc, errs[0] = model.ReadVAEEncoder(cfg, get)
	}
	if o.Parts.decodes() {
		v.dec, errs[1] = model.ReadVAEDecoder(cfg, get)
	}
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return nil, fmt.Errorf("flextok/engine: %w", err)
	}
	if o.Precision == BF16 && v.dec != nil {
		v.packDecoderBF16()
	}
	return v, nil
}

// partsError is the error of an Encode (Decode) on a VAE, or an engine, whose Options.Parts
// (DecodeOnly, EncodeOnly) left that half of the model out.
func partsError(op string, p Parts) error {
	missing := "encoder and VAE encoder"
	if p == EncodeOnly {
		missing = "decoder and VAE decoder"
	}
	return fmt.Errorf("%w: %s: this engine was loaded with Options.Parts = %s, without the %s weights: load it with AllParts to %s",
		ErrUnsupported, op, p.goName(), missing, strings.ToLower(op))
}

// packDecoderBF16 packs every convolution of the VAE decoder as bfloat16 and drops its float32
// weights. The mid block's attention (four c×c linears at the lowest resolution) stays float32.
func (v *VAE) packDecoderBF16() {
	v.bf16 = map[*model.VAEConv]*kernels.ConvWeights{}
	pack := func(cv *model.VAEConv) {
		if cv == nil {
			return
		}
		d := kernels.ConvDims{InC: cv.In, OutC: cv.Out, KH: cv.K, KW: cv.K, Stride: cv.Stride}
		v.bf16[cv] = kernels.PackConvWeightsFor(v.opts, cv.W, d)
		cv.W = nil
	}
	res := func(r *model.VAEResnet) {
		pack(&r.Conv1)
		pack(&r.Conv2)
		pack(r.Shortcut)
	}
	d := v.dec
	pack(d.Post)
	pack(&d.In)
	res(&d.Mid.Res0)
	res(&d.Mid.Res1)
	for i := range d.Up {
		for j := range d.Up[i].Resnets {
			res(&d.Up[i].Resnets[j])
		}
		pack(d.Up[i].Up)
	}
	pack(&d.Out)
}

// conv2d runs cv on x into y: bf16 weights when the decoder's were packed so, else Conv2d.
func (v *VAE) conv2d(o kernels.Opts, y, x []float32, cv *model.VAEConv, d kernels.ConvDims) {
	if cw := v.bf16[cv]; cw != nil {
		kernels.Conv2dPacked(o, y, x, cw, cv.B, d)
		return
	}
	kernels.Conv2d(o, y, x, cv.W, cv.B, d)
}

// ScalingFactor is the factor Encode multiplies latents by and Decode divides them by.
func (v *VAE) ScalingFactor() float32 { return v.scale }

// LatentChannels is C, the channel count of the latents.
func (v *VAE) LatentChannels() int { return v.latentC }

// DownsampleFactor is f: an H×W image has an H/f × W/f latent.
func (v *VAE) DownsampleFactor() int { return v.factor }

// SamplePosterior reports the config's sample_posterior. Encode returns the posterior mean
// whatever it says (the official sampling draws from an unseeded global generator).
func (v *VAE) SamplePosterior() bool { return v.sample }

// Encode maps images [B, Cin, H, W] (values in [-1, 1]) to latents [B, C, H/f, W/f]: the
// diffusers encoder, quant_conv, the mean of the diagonal Gaussian posterior (its first C
// channels), times scaling_factor. H and W must be multiples of f.
func (v *VAE) Encode(ctx context.Context, images tensor.Tensor) (tensor.Tensor, error) {
	if v.enc == nil {
		return tensor.Tensor{}, partsError("Encode", DecodeOnly)
	}
	if err := vaeCheckInput("Encode", "images", images, v.inC, v.factor); err != nil {
		return tensor.Tensor{}, err
	}
	B, H, W := images.Shape[0], images.Shape[2], images.Shape[3]
	h, w := H/v.factor, W/v.factor
	out, err := tensor.New(B, v.latentC, h, w)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("flextok/engine: Encode: %w", err)
	}
	if err := v.checkSize("Encode", H, W); err != nil {
		return tensor.Tensor{}, err
	}
	img, lat := v.inC*H*W, v.latentC*h*w
	err = v.images(B, H, W, func(ws *vaeWork, i int) error {
		ws.load(images.Data[i*img:(i+1)*img], v.inC, H, W)
		if err := v.encode(ctx, ws); err != nil {
			return err
		}
		// ws.x: moments (2C, h, w) = (mean | logvar); the mean is the first C channels.
		mean, dst := ws.x[:lat], out.Data[i*lat:(i+1)*lat]
		for j, m := range mean {
			dst[j] = m * v.scale
		}
		return nil
	})
	if err != nil {
		return tensor.Tensor{}, err
	}
	return out, nil
}

// images runs one(ws, i) for the B images of a batch of H×W images in order on one workspace;
// or, when the images are small, in parts on their own goroutines and workspaces with one
// kernel thread each (see itemParts; the results are the same bits).
func (v *VAE) images(B, H, W int, one func(ws *vaeWork, i int) error) error {
	run := func(o kernels.Opts, lo, hi int) error {
		ws := &vaeWork{vae: v, o: o}
		for i := lo; i < hi; i++ {
			if err := one(ws, i); err != nil {
				return err
			}
		}
		return nil
	}
	// The widest full-resolution stage, four 3×3 convolutions per block, dominates the work.
	c0 := float64(v.blocks[0])
	flops := 2 * 9 * float64(H) * float64(W) * c0 * c0 * 4 * float64(len(v.blocks))
	parts := itemParts(v.opts.Threads, B, flops)
	if parts == 1 {
		return run(v.opts, 0, B)
	}
	o := v.opts
	o.Threads = 1
	return inParts(B, parts, func(lo, hi int) error { return run(o, lo, hi) })
}

// Decode maps latents [B, C, h, w] (as Encode returns them, i.e. scaled) to images
// [B, Cout, h·f, w·f]: ÷ scaling_factor, post_quant_conv, the diffusers decoder. The output is
// not clamped (callers clamp when they convert to pixels).
func (v *VAE) Decode(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
	if v.dec == nil {
		return tensor.Tensor{}, partsError("Decode", EncodeOnly)
	}
	if err := vaeCheckInput("Decode", "latents", latents, v.latentC, 1); err != nil {
		return tensor.Tensor{}, err
	}
	B, h, w := latents.Shape[0], latents.Shape[2], latents.Shape[3]
	H, W := h*v.factor, w*v.factor
	if h > math.MaxInt32/v.factor || w > math.MaxInt32/v.factor {
		return tensor.Tensor{}, fmt.Errorf("flextok/engine: Decode: latent grid %dx%d is too large", h, w)
	}
	out, err := tensor.New(B, v.outC, H, W)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("flextok/engine: Decode: %w", err)
	}
	if err := v.checkSize("Decode", H, W); err != nil {
		return tensor.Tensor{}, err
	}
	lat, img := v.latentC*h*w, v.outC*H*W
	err = v.images(B, H, W, func(ws *vaeWork, i int) error {
		// z (C, h, w) = latents / scaling_factor
		z := ws.grow(&ws.next, lat)
		for j, x := range latents.Data[i*lat : (i+1)*lat] {
			z[j] = x / v.scale
		}
		ws.load(z, v.latentC, h, w)
		if err := v.decode(ctx, ws); err != nil {
			return err
		}
		copy(out.Data[i*img:(i+1)*img], ws.x[:img]) // (Cout, H, W)
		return nil
	})
	if err != nil {
		return tensor.Tensor{}, err
	}
	return out, nil
}

// checkSize rejects images so large that an activation (widest block at full resolution, a
// bound on every stage) would exceed tensor.MaxElements.
func (v *VAE) checkSize(op string, H, W int) error {
	if _, err := tensor.NumElements([]int{max(slices.Max(v.blocks), v.inC, v.outC), H, W}); err != nil {
		return fmt.Errorf("flextok/engine: %s: %dx%d image: %w", op, H, W, err)
	}
	return nil
}

// vaeCheckInput checks a [B, ch, H, W] input whose H and W are multiples of mult.
func vaeCheckInput(op, what string, t tensor.Tensor, ch, mult int) error {
	if err := t.Check(); err != nil {
		return fmt.Errorf("flextok/engine: %s: %s: %w", op, what, err)
	}
	if len(t.Shape) != 4 {
		return fmt.Errorf("flextok/engine: %s: %s has shape %v, want rank 4 [B, %d, H, W]", op, what, t.Shape, ch)
	}
	if t.Shape[1] != ch {
		return fmt.Errorf("flextok/engine: %s: %s has %d channels (shape %v), want %d", op, what, t.Shape[1], t.Shape, ch)
	}
	if t.Shape[0] < 1 || t.Shape[2] < 1 || t.Shape[3] < 1 {
		return fmt.Errorf("flextok/engine: %s: %s has an empty dimension (shape %v)", op, what, t.Shape)
	}
	if t.Shape[2]%mult != 0 || t.Shape[3]%mult != 0 {
		return fmt.Errorf("flextok/engine: %s: %s size %dx%d is not a multiple of the VAE downsample factor %d",
			op, what, t.Shape[2], t.Shape[3], mult)
	}
	return nil
}

// encode runs the encoder on the image in ws: (Cin, H, W) -> moments (2C, h, w).
func (v *VAE) encode(ctx context.Context, ws *vaeWork) error {
	e := v.enc
	ws.conv(&e.In) // (b[0], H, W)
	for i := range e.Down {
		blk := &e.Down[i]
		for j := range blk.Resnets {
			if err := vaeCtx(ctx, "Encode"); err != nil {
				return err
			}
			ws.resnet(&blk.Resnets[j]) // (b[i], H/2^i, W/2^i)
		}
		if blk.Down != nil {
			ws.conv(blk.Down) // (b[i], H/2^(i+1), W/2^(i+1))
		}
	}
	if err := ws.mid(ctx, "Encode", &e.Mid); err != nil { // (b[n-1], h, w)
		return err
	}
	ws.normSiLU(&e.Norm) // (b[n-1], h, w)
	ws.conv(&e.Out)      // (2C, h, w)
	if e.Quant != nil {
		ws.conv(e.Quant) // (2C, h, w)
	}
	return nil
}

// decode runs post_quant_conv and the decoder on the latent in ws: (C, h, w) -> (Cout, H, W).
func (v *VAE) decode(ctx context.Context, ws *vaeWork) error {
	d := v.dec
	if d.Post != nil {
		ws.conv(d.Post) // (C, h, w)
	}
	ws.conv(&d.In)                                        // (b[n-1], h, w)
	if err := ws.mid(ctx, "Decode", &d.Mid); err != nil { // (b[n-1], h, w)
		return err
	}
	for i := range d.Up {
		blk := &d.Up[i]
		for j := range blk.Resnets {
			if err := vaeCtx(ctx, "Decode"); err != nil {
				return err
			}
			ws.resnet(&blk.Resnets[j]) // (b[n-1-i], h·2^i, w·2^i)
		}
		if blk.Up != nil {
			ws.upsample()   // (b[n-1-i], h·2^(i+1), w·2^(i+1))
			ws.conv(blk.Up) // same shape
		}
	}
	ws.normSiLU(&d.Norm) // (b[0], H, W)
	ws.conv(&d.Out)      // (Cout, H, W)
	return nil
}

func vaeCtx(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("flextok/engine: VAE %s: %w", op, err)
	}
	return nil
}

// vaeWork is the per-call state: the current activation x (c, h, w) of one image and the
// scratch buffers, which grow to the largest stage and are reused for every image.
type vaeWork struct {
	vae     *VAE
	o       kernels.Opts
	x       []float32 // current activation (c, h, w)
	c, h, w int
	next    []float32 // the next activation: ops write here, then swap with x
	t1, t2  []float32 // resnet and attention scratch
	q, k, v []float32 // attention (h·w, c)
	tok     []float32 // attention tokens (h·w, c)
}

// grow returns (*buf)[:n], reallocating when the capacity is short.
func (ws *vaeWork) grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	*buf = (*buf)[:n]
	return *buf
}

// load copies src (c, h, w) into x.
func (ws *vaeWork) load(src []float32, c, h, w int) {
	copy(ws.grow(&ws.x, c*h*w), src)
	ws.c, ws.h, ws.w = c, h, w
}

// swap makes next the current activation (c, h, w).
func (ws *vaeWork) swap(c, h, w int) {
	ws.x, ws.next = ws.next, ws.x
	ws.c, ws.h, ws.w = c, h, w
}

// convDims are the kernel dimensions of cv applied to a (c, h, w) input.
func convDims(cv *model.VAEConv, c, h, w int) kernels.ConvDims {
	if c != cv.In {
		panic(fmt.Sprintf("flextok/engine: internal error: conv of %d channels on a %d-channel input", cv.In, c))
	}
	return kernels.ConvDims{
		InC: c, InH: h, InW: w, OutC: cv.Out, KH: cv.K, KW: cv.K, Stride: cv.Stride,
		PadT: cv.PadT, PadB: cv.PadB, PadL: cv.PadL, PadR: cv.PadR,
	}
}

// conv replaces x (in, h, w) with cv(x) (out, h', w').
func (ws *vaeWork) conv(cv *model.VAEConv) {
	d := convDims(cv, ws.c, ws.h, ws.w)
	oh, ow := d.Out()
	y := ws.grow(&ws.next, cv.Out*oh*ow)
	ws.vae.conv2d(ws.o, y, ws.x[:ws.c*ws.h*ws.w], cv, d)
	ws.swap(cv.Out, oh, ow)
}

// normSiLU replaces x (c, h, w) with SiLU(GroupNorm(x)) in place (conv_norm_out, conv_act).
func (ws *vaeWork) normSiLU(n *model.VAENorm) {
	x := ws.x[:ws.c*ws.h*ws.w]
	kernels.GroupNorm(ws.o, x, x, ws.c, ws.h*ws.w, ws.vae.groups, ws.vae.eps, n.W, n.B)
	kernels.SiLU(ws.o, x, x)
}

// upsample replaces x (c, h, w) with its nearest-neighbour ×2 (c, 2h, 2w).
func (ws *vaeWork) upsample() {
	y := ws.grow(&ws.next, ws.c*4*ws.h*ws.w)
	kernels.Upsample2x(ws.o, y, ws.x[:ws.c*ws.h*ws.w], ws.c, ws.h, ws.w)
	ws.swap(ws.c, 2*ws.h, 2*ws.w)
}

// resnet replaces x (in, h, w) with ResnetBlock2D(x) (out, h, w):
// skip(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))), skip = conv_shortcut or identity.
func (ws *vaeWork) resnet(r *model.VAEResnet) {
	o, g, eps := ws.o, ws.vae.groups, ws.vae.eps
	c, h, w := ws.c, ws.h, ws.w
	hw := h * w
	x := ws.x[:c*hw] // (in, h, w), kept for the skip

	a := ws.grow(&ws.t1, max(c, r.Out)*hw)[:c*hw] // (in, h, w)
	kernels.GroupNorm(o, a, x, c, hw, g, eps, r.Norm1.W, r.Norm1.B)
	kernels.SiLU(o, a, a)
	d := convDims(&r.Conv1, c, h, w)
	t := ws.grow(&ws.t2, r.Out*hw) // (out, h, w)
	ws.vae.conv2d(o, t, a, &r.Conv1, d)
	kernels.GroupNorm(o, t, t, r.Out, hw, g, eps, r.Norm2.W, r.Norm2.B)
	kernels.SiLU(o, t, t)
	a = ws.t1[:r.Out*hw] // (out, h, w)
	ws.vae.conv2d(o, a, t, &r.Conv2, convDims(&r.Conv2, r.Out, h, w))

	if r.Shortcut == nil {
		kernels.Add(o, x, x, a) // x + h, in place (in == out)
		return
	}
	// t (out, h, w) = conv_shortcut(x); next = t + h
	ws.vae.conv2d(o, t, x, r.Shortcut, convDims(r.Shortcut, c, h, w))
	y := ws.grow(&ws.next, r.Out*hw)
	kernels.Add(o, y, t, a)
	ws.swap(r.Out, h, w)
}

// mid runs UNetMidBlock2D on x (c, h, w): resnet, attention, resnet.
func (ws *vaeWork) mid(ctx context.Context, op string, m *model.VAEMid) error {
	if err := vaeCtx(ctx, op); err != nil {
		return err
	}
	ws.resnet(&m.Res0)
	if m.Attn != nil {
		if err := vaeCtx(ctx, op); err != nil {
			return err
		}
		ws.attention(m.Attn)
	}
	if err := vaeCtx(ctx, op); err != nil {
		return err
	}
	ws.resnet(&m.Res1)
	return nil
}

// attention adds diffusers' single-head spatial self-attention to x (c, h, w) in place:
// x += to_out(softmax(q kᵀ/√c) v), with q, k, v = to_q, to_k, to_v of the GroupNorm-ed pixels
// as h·w tokens of c features (rescale_output_factor is 1).
func (ws *vaeWork) attention(at *model.VAEAttn) {
	o := ws.o
	c, n := ws.c, ws.h*ws.w
	x := ws.x[:c*n] // (c, n), the residual

	normed := ws.grow(&ws.t1, c*n) // (c, n)
	kernels.GroupNorm(o, normed, x, c, n, ws.vae.groups, ws.vae.eps, at.Norm.W, at.Norm.B)
	tok := ws.grow(&ws.tok, n*c) // (n, c)
	for ch := 0; ch < c; ch++ {
		row := normed[ch*n : ch*n+n]
		for p, val := range row {
			tok[p*c+ch] = val
		}
	}
	q, k, v := ws.grow(&ws.q, n*c), ws.grow(&ws.k, n*c), ws.grow(&ws.v, n*c) // (n, c) each
	kernels.Linear(o, q, tok, at.Q.W, at.Q.B, n, c, c)
	kernels.Linear(o, k, tok, at.K.W, at.K.B, n, c, c)
	kernels.Linear(o, v, tok, at.V.W, at.V.B, n, c, c)
	vaeAttend(o, tok, q, k, v, n, c)                         // tok (n, c) = softmax(q kᵀ/√c) v
	kernels.Linear(o, q, tok, at.Proj.W, at.Proj.B, n, c, c) // q (n, c) = to_out.0(tok)
	for ch := 0; ch < c; ch++ {
		row := x[ch*n : ch*n+n]
		for p := range row {
			row[p] = q[p*c+ch] + row[p]
		}
	}
}

// vaeAttnChunkScores bounds the score matrix of one query chunk (floats): 4 Mi = 16 MiB.
const vaeAttnChunkScores = 4 << 20

// vaeAttend computes out (n, c) = softmax(q kᵀ/√c) v for one head over n tokens. The kernel
// parallelises attention by heads and holds a full (queries × keys) score matrix, so with one
// head we split the queries into chunks instead: at least one per thread, each small enough to
// bound the scores. Every query row is computed the same way whatever the chunking (a row's
// scores, softmax and output depend on that row only), so Threads never changes a bit.
func vaeAttend(o kernels.Opts, out, q, k, v []float32, n, c int) {
	scale := float32(1 / math.Sqrt(float64(c)))
	threads := max(o.Threads, 1)
	chunk := max(1, min((n+threads-1)/threads, vaeAttnChunkScores/n))
	chunks := (n + chunk - 1) / chunk
	inner := kernels.Opts{Threads: 1, Fast: o.Fast}
	run := func(i int) {
		q0 := i * chunk
		m := min(chunk, n-q0)
		d := kernels.AttnDims{Batch: 1, Heads: 1, SeqQ: m, SeqK: n, HeadDim: c}
		kernels.Attention(inner, out[q0*c:(q0+m)*c], q[q0*c:(q0+m)*c], k, v, d, scale, kernels.Mask{})
	}
	forEach(threads, chunks, run) // chunks are handed out in order
}
