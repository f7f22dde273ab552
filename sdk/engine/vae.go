package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

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

	// Encoder.
	encIn   vaeConv      // (b[0], Cin, 3, 3)
	down    []vaeDownBlk // n blocks
	encMid  vaeMid       // at b[n-1] channels
	encNorm vaeGroupNorm // (b[n-1])
	encOut  vaeConv      // (2C, b[n-1], 3, 3)
	quant   *vaeConv     // (2C, 2C, 1, 1), nil without use_quant_conv

	// Decoder.
	post    *vaeConv     // (C, C, 1, 1), nil without use_post_quant_conv
	decIn   vaeConv      // (b[n-1], C, 3, 3)
	decMid  vaeMid       // at b[n-1] channels
	up      []vaeUpBlk   // n blocks, channels b[n-1] ... b[0]
	decNorm vaeGroupNorm // (b[0])
	decOut  vaeConv      // (Cout, b[0], 3, 3)
}

// vaeConv is a Conv2d with PyTorch weights w (out, in, k, k) and bias b (out), with the
// padding and stride of its place in the network.
type vaeConv struct {
	w, b                   []float32 // (out, in·k·k), (out)
	out, in, k             int
	stride                 int
	padT, padB, padL, padR int
}

// vaeGroupNorm holds the affine parameters of a GroupNorm over c channels.
type vaeGroupNorm struct {
	w, b []float32 // (c), (c)
	c    int
}

// vaeResnet is a diffusers ResnetBlock2D from in to out channels.
type vaeResnet struct {
	in, out  int
	norm1    vaeGroupNorm // (in)
	conv1    vaeConv      // (out, in, 3, 3)
	norm2    vaeGroupNorm // (out)
	conv2    vaeConv      // (out, out, 3, 3)
	shortcut *vaeConv     // (out, in, 1, 1) when in != out, else nil
}

// vaeLinear is a Linear with PyTorch weights (out, in) and bias (out).
type vaeLinear struct {
	w, b []float32 // (c, c), (c)
}

// vaeAttn is the mid block's single-head self-attention over the pixels (head dim = c).
type vaeAttn struct {
	c             int
	norm          vaeGroupNorm // (c)
	q, k, v, proj vaeLinear    // to_q, to_k, to_v, to_out.0: (c, c) each
}

// vaeMid is UNetMidBlock2D: resnet, attention (optional), resnet, all at c channels.
type vaeMid struct {
	res0, res1 vaeResnet
	attn       *vaeAttn // nil without mid_block_add_attention
}

// vaeDownBlk is DownEncoderBlock2D: layers_per_block resnets, then a stride-2 conv except in
// the last block.
type vaeDownBlk struct {
	resnets []vaeResnet
	down    *vaeConv // (c, c, 3, 3), stride 2, pad (0,1,0,1); nil in the last block
}

// vaeUpBlk is UpDecoderBlock2D: layers_per_block+1 resnets, then nearest ×2 and a 3x3 conv
// except in the last block.
type vaeUpBlk struct {
	resnets []vaeResnet
	up      *vaeConv // (c, c, 3, 3); nil in the last block
}

// NewVAE reads every vae.vae.* weight of m once (as float32) and builds the VAE. It fails
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
	n := len(b)
	C := cfg.LatentChannels
	v := &VAE{
		opts:    o.kernels(),
		groups:  cfg.NormGroups,
		eps:     float32(cfg.NormEps),
		scale:   float32(cfg.ScalingFactor),
		inC:     cfg.InChannels,
		outC:    cfg.OutChannels,
		latentC: C,
		factor:  cfg.DownsampleFactor(),
		blocks:  append([]int(nil), b...),
		sample:  cfg.SamplePosterior,
	}
	if cfg.NormEps <= 0 {
		v.eps = 1e-6 // diffusers' AutoencoderKL hard-codes 1e-6
	}
	l := &vaeLoader{get: get}
	V := model.VAEPrefix

	// Encoder, in diffusers' Encoder order.
	v.encIn = l.conv3(V+"encoder.conv_in", b[0], v.inC)
	ch := b[0]
	for i := 0; i < n; i++ {
		var blk vaeDownBlk
		for j := 0; j < cfg.LayersPerBlock; j++ {
			blk.resnets = append(blk.resnets, l.resnet(fmt.Sprintf("%sencoder.down_blocks.%d.resnets.%d", V, i, j), ch, b[i]))
			ch = b[i]
		}
		if i < n-1 {
			c := l.conv(fmt.Sprintf("%sencoder.down_blocks.%d.downsamplers.0.conv", V, i), ch, ch, 3, 2, 0, 1, 0, 1)
			blk.down = &c
		}
		v.down = append(v.down, blk)
	}
	v.encMid = l.mid(V+"encoder.mid_block", b[n-1], cfg.MidBlockAttention)
	v.encNorm = l.norm(V+"encoder.conv_norm_out", b[n-1])
	v.encOut = l.conv3(V+"encoder.conv_out", 2*C, b[n-1])
	if cfg.UseQuantConv {
		c := l.conv(V+"quant_conv", 2*C, 2*C, 1, 1, 0, 0, 0, 0)
		v.quant = &c
	}

	// Decoder.
	if cfg.UsePostQuantConv {
		c := l.conv(V+"post_quant_conv", C, C, 1, 1, 0, 0, 0, 0)
		v.post = &c
	}
	v.decIn = l.conv3(V+"decoder.conv_in", b[n-1], C)
	v.decMid = l.mid(V+"decoder.mid_block", b[n-1], cfg.MidBlockAttention)
	ch = b[n-1]
	for i := 0; i < n; i++ {
		out := b[n-1-i] // up blocks run the channels in reverse
		var blk vaeUpBlk
		for j := 0; j <= cfg.LayersPerBlock; j++ {
			blk.resnets = append(blk.resnets, l.resnet(fmt.Sprintf("%sdecoder.up_blocks.%d.resnets.%d", V, i, j), ch, out))
			ch = out
		}
		if i < n-1 {
			c := l.conv3(fmt.Sprintf("%sdecoder.up_blocks.%d.upsamplers.0.conv", V, i), ch, ch)
			blk.up = &c
		}
		v.up = append(v.up, blk)
	}
	v.decNorm = l.norm(V+"decoder.conv_norm_out", b[0])
	v.decOut = l.conv3(V+"decoder.conv_out", v.outC, b[0])
	if l.err != nil {
		return nil, l.err
	}
	return v, nil
}

// vaeLoader reads weights, remembering the first error (so the constructor reads as a list).
type vaeLoader struct {
	get func(name string) ([]float32, error)
	err error
}

// tensor reads name and checks it has exactly prod(shape) finite values.
func (l *vaeLoader) tensor(name string, shape ...int) []float32 {
	if l.err != nil {
		return nil
	}
	want := 1
	for _, d := range shape {
		want *= d
	}
	w, err := l.get(name)
	if err != nil {
		l.err = fmt.Errorf("flextok/engine: vae weight %s: %w", name, err)
		return nil
	}
	if len(w) != want {
		l.err = fmt.Errorf("flextok/engine: vae weight %s has %d values, want %d (shape %v)", name, len(w), want, shape)
		return nil
	}
	for i, x := range w {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			l.err = fmt.Errorf("flextok/engine: vae weight %s: value %d is %v", name, i, x)
			return nil
		}
	}
	return w
}

func (l *vaeLoader) conv(name string, out, in, k, stride, padT, padB, padL, padR int) vaeConv {
	return vaeConv{
		w: l.tensor(name+".weight", out, in, k, k), b: l.tensor(name+".bias", out),
		out: out, in: in, k: k, stride: stride,
		padT: padT, padB: padB, padL: padL, padR: padR,
	}
}

// conv3 is a 3x3 stride-1 convolution with padding 1 (diffusers' default).
func (l *vaeLoader) conv3(name string, out, in int) vaeConv {
	return l.conv(name, out, in, 3, 1, 1, 1, 1, 1)
}

func (l *vaeLoader) norm(name string, c int) vaeGroupNorm {
	return vaeGroupNorm{w: l.tensor(name+".weight", c), b: l.tensor(name+".bias", c), c: c}
}

func (l *vaeLoader) linear(name string, c int) vaeLinear {
	return vaeLinear{w: l.tensor(name+".weight", c, c), b: l.tensor(name+".bias", c)}
}

func (l *vaeLoader) resnet(p string, in, out int) vaeResnet {
	r := vaeResnet{
		in: in, out: out,
		norm1: l.norm(p+".norm1", in),
		conv1: l.conv3(p+".conv1", out, in),
		norm2: l.norm(p+".norm2", out),
		conv2: l.conv3(p+".conv2", out, out),
	}
	if in != out {
		c := l.conv(p+".conv_shortcut", out, in, 1, 1, 0, 0, 0, 0)
		r.shortcut = &c
	}
	return r
}

func (l *vaeLoader) mid(p string, c int, attn bool) vaeMid {
	m := vaeMid{res0: l.resnet(p+".resnets.0", c, c)}
	if attn {
		a := p + ".attentions.0."
		m.attn = &vaeAttn{
			c:    c,
			norm: l.norm(a+"group_norm", c),
			q:    l.linear(a+"to_q", c), k: l.linear(a+"to_k", c), v: l.linear(a+"to_v", c),
			proj: l.linear(a+"to_out.0", c),
		}
	}
	m.res1 = l.resnet(p+".resnets.1", c, c)
	return m
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
	ws := &vaeWork{vae: v, o: v.opts}
	img, lat := v.inC*H*W, v.latentC*h*w
	for i := 0; i < B; i++ {
		ws.load(images.Data[i*img:(i+1)*img], v.inC, H, W)
		if err := v.encode(ctx, ws); err != nil {
			return tensor.Tensor{}, err
		}
		// ws.x: moments (2C, h, w) = (mean | logvar); the mean is the first C channels.
		mean, dst := ws.x[:lat], out.Data[i*lat:(i+1)*lat]
		for j, m := range mean {
			dst[j] = m * v.scale
		}
	}
	return out, nil
}

// Decode maps latents [B, C, h, w] (as Encode returns them, i.e. scaled) to images
// [B, Cout, h·f, w·f]: ÷ scaling_factor, post_quant_conv, the diffusers decoder. The output is
// not clamped (callers clamp when they convert to pixels).
func (v *VAE) Decode(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
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
	ws := &vaeWork{vae: v, o: v.opts}
	lat, img := v.latentC*h*w, v.outC*H*W
	for i := 0; i < B; i++ {
		// z (C, h, w) = latents / scaling_factor
		z := ws.grow(&ws.next, lat)
		for j, x := range latents.Data[i*lat : (i+1)*lat] {
			z[j] = x / v.scale
		}
		ws.load(z, v.latentC, h, w)
		if err := v.decode(ctx, ws); err != nil {
			return tensor.Tensor{}, err
		}
		copy(out.Data[i*img:(i+1)*img], ws.x[:img]) // (Cout, H, W)
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
	ws.conv(&v.encIn) // (b[0], H, W)
	for i := range v.down {
		blk := &v.down[i]
		for j := range blk.resnets {
			if err := vaeCtx(ctx, "Encode"); err != nil {
				return err
			}
			ws.resnet(&blk.resnets[j]) // (b[i], H/2^i, W/2^i)
		}
		if blk.down != nil {
			ws.conv(blk.down) // (b[i], H/2^(i+1), W/2^(i+1))
		}
	}
	if err := ws.mid(ctx, "Encode", &v.encMid); err != nil { // (b[n-1], h, w)
		return err
	}
	ws.normSiLU(&v.encNorm) // (b[n-1], h, w)
	ws.conv(&v.encOut)      // (2C, h, w)
	if v.quant != nil {
		ws.conv(v.quant) // (2C, h, w)
	}
	return nil
}

// decode runs post_quant_conv and the decoder on the latent in ws: (C, h, w) -> (Cout, H, W).
func (v *VAE) decode(ctx context.Context, ws *vaeWork) error {
	if v.post != nil {
		ws.conv(v.post) // (C, h, w)
	}
	ws.conv(&v.decIn)                                        // (b[n-1], h, w)
	if err := ws.mid(ctx, "Decode", &v.decMid); err != nil { // (b[n-1], h, w)
		return err
	}
	for i := range v.up {
		blk := &v.up[i]
		for j := range blk.resnets {
			if err := vaeCtx(ctx, "Decode"); err != nil {
				return err
			}
			ws.resnet(&blk.resnets[j]) // (b[n-1-i], h·2^i, w·2^i)
		}
		if blk.up != nil {
			ws.upsample()   // (b[n-1-i], h·2^(i+1), w·2^(i+1))
			ws.conv(blk.up) // same shape
		}
	}
	ws.normSiLU(&v.decNorm) // (b[0], H, W)
	ws.conv(&v.decOut)      // (Cout, H, W)
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

// dims are the kernel dimensions of cv applied to a (c, h, w) input.
func (cv *vaeConv) dims(c, h, w int) kernels.ConvDims {
	if c != cv.in {
		panic(fmt.Sprintf("flextok/engine: internal error: conv of %d channels on a %d-channel input", cv.in, c))
	}
	return kernels.ConvDims{
		InC: c, InH: h, InW: w, OutC: cv.out, KH: cv.k, KW: cv.k, Stride: cv.stride,
		PadT: cv.padT, PadB: cv.padB, PadL: cv.padL, PadR: cv.padR,
	}
}

// conv replaces x (in, h, w) with cv(x) (out, h', w').
func (ws *vaeWork) conv(cv *vaeConv) {
	d := cv.dims(ws.c, ws.h, ws.w)
	oh, ow := d.Out()
	y := ws.grow(&ws.next, cv.out*oh*ow)
	kernels.Conv2d(ws.o, y, ws.x[:ws.c*ws.h*ws.w], cv.w, cv.b, d)
	ws.swap(cv.out, oh, ow)
}

// normSiLU replaces x (c, h, w) with SiLU(GroupNorm(x)) in place (conv_norm_out, conv_act).
func (ws *vaeWork) normSiLU(n *vaeGroupNorm) {
	x := ws.x[:ws.c*ws.h*ws.w]
	kernels.GroupNorm(ws.o, x, x, ws.c, ws.h*ws.w, ws.vae.groups, ws.vae.eps, n.w, n.b)
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
func (ws *vaeWork) resnet(r *vaeResnet) {
	o, g, eps := ws.o, ws.vae.groups, ws.vae.eps
	c, h, w := ws.c, ws.h, ws.w
	hw := h * w
	x := ws.x[:c*hw] // (in, h, w), kept for the skip

	a := ws.grow(&ws.t1, max(c, r.out)*hw)[:c*hw] // (in, h, w)
	kernels.GroupNorm(o, a, x, c, hw, g, eps, r.norm1.w, r.norm1.b)
	kernels.SiLU(o, a, a)
	d := r.conv1.dims(c, h, w)
	t := ws.grow(&ws.t2, r.out*hw) // (out, h, w)
	kernels.Conv2d(o, t, a, r.conv1.w, r.conv1.b, d)
	kernels.GroupNorm(o, t, t, r.out, hw, g, eps, r.norm2.w, r.norm2.b)
	kernels.SiLU(o, t, t)
	a = ws.t1[:r.out*hw] // (out, h, w)
	kernels.Conv2d(o, a, t, r.conv2.w, r.conv2.b, r.conv2.dims(r.out, h, w))

	if r.shortcut == nil {
		kernels.Add(o, x, x, a) // x + h, in place (in == out)
		return
	}
	// t (out, h, w) = conv_shortcut(x); next = t + h
	kernels.Conv2d(o, t, x, r.shortcut.w, r.shortcut.b, r.shortcut.dims(c, h, w))
	y := ws.grow(&ws.next, r.out*hw)
	kernels.Add(o, y, t, a)
	ws.swap(r.out, h, w)
}

// mid runs UNetMidBlock2D on x (c, h, w): resnet, attention, resnet.
func (ws *vaeWork) mid(ctx context.Context, op string, m *vaeMid) error {
	if err := vaeCtx(ctx, op); err != nil {
		return err
	}
	ws.resnet(&m.res0)
	if m.attn != nil {
		if err := vaeCtx(ctx, op); err != nil {
			return err
		}
		ws.attention(m.attn)
	}
	if err := vaeCtx(ctx, op); err != nil {
		return err
	}
	ws.resnet(&m.res1)
	return nil
}

// attention adds diffusers' single-head spatial self-attention to x (c, h, w) in place:
// x += to_out(softmax(q kᵀ/√c) v), with q, k, v = to_q, to_k, to_v of the GroupNorm-ed pixels
// as h·w tokens of c features (rescale_output_factor is 1).
func (ws *vaeWork) attention(at *vaeAttn) {
	o := ws.o
	c, n := ws.c, ws.h*ws.w
	x := ws.x[:c*n] // (c, n), the residual

	normed := ws.grow(&ws.t1, c*n) // (c, n)
	kernels.GroupNorm(o, normed, x, c, n, ws.vae.groups, ws.vae.eps, at.norm.w, at.norm.b)
	tok := ws.grow(&ws.tok, n*c) // (n, c)
	for ch := 0; ch < c; ch++ {
		row := normed[ch*n : ch*n+n]
		for p, val := range row {
			tok[p*c+ch] = val
		}
	}
	q, k, v := ws.grow(&ws.q, n*c), ws.grow(&ws.k, n*c), ws.grow(&ws.v, n*c) // (n, c) each
	kernels.Linear(o, q, tok, at.q.w, at.q.b, n, c, c)
	kernels.Linear(o, k, tok, at.k.w, at.k.b, n, c, c)
	kernels.Linear(o, v, tok, at.v.w, at.v.b, n, c, c)
	vaeAttend(o, tok, q, k, v, n, c)                         // tok (n, c) = softmax(q kᵀ/√c) v
	kernels.Linear(o, q, tok, at.proj.w, at.proj.b, n, c, c) // q (n, c) = to_out.0(tok)
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
	if threads == 1 || chunks == 1 {
		for i := 0; i < chunks; i++ {
			run(i)
		}
		return
	}
	// Chunks are handed out in order to threads goroutines.
	var wg sync.WaitGroup
	var mu sync.Mutex
	nextChunk := 0
	for t := 0; t < min(threads, chunks); t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := nextChunk
				nextChunk++
				mu.Unlock()
				if i >= chunks {
					return
				}
				run(i)
			}
		}()
	}
	wg.Wait()
}
