package onnx

import (
	"errors"
	"fmt"
	"math"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// The VAE subgraphs: diffusers' AutoencoderKL as sdk/engine/vae.go runs it (the same config,
// the same vae.vae.* weights, the same operations in the same order), from standard opset-17
// operators. GroupNorm(norm_num_groups, eps, affine) everywhere, ResnetBlock2D (norm1, SiLU,
// conv1 3x3, norm2, SiLU, conv2 3x3, 1x1 conv_shortcut when the channel count changes, output
// skip + h), Downsample2D (zero pad right and bottom by one, 3x3 stride 2), Upsample2D (nearest
// ×2, 3x3), and the mid block (resnet, single-head self-attention over the pixels if
// mid_block_add_attention, resnet).
//
// Every size except the channel counts is taken from the tensors at run time (Shape, Reshape
// with 0 and -1), so the batch, height and width may be symbolic in the caller's declarations.
//
// Weights keep diffusers' names under the graph's scope: vae.encoder.down_blocks.0.resnets.1.
// conv1.weight, vae.quant_conv.bias, and so on (Linear weights are stored transposed).

// VAEEncoder adds the VAE encoder to g: images [N, Cin, H, W] in [-1, 1] → scaled latents
// [N, C, H/f, W/f]: the diffusers encoder, quant_conv, the mean of the posterior (its first C
// channels), times scaling_factor, as engine.VAE.Encode. H and W must be multiples of f.
//
// It reads every encoder weight of m first and adds nothing to g when one is missing, has the
// wrong number of values or is not finite (the error names every such tensor), or when the
// config is not one the engine runs. It can be called once per graph.
func VAEEncoder(g *Graph, m *model.Model, images Value) (Value, error) {
	cfg, get, err := vaeSource(m)
	if err != nil {
		return "", err
	}
	return vaeEncoder(g, cfg, get, images)
}

// VAEDecoder adds the VAE decoder to g: scaled latents [N, C, h, w] → images
// [N, Cout, h·f, w·f]: ÷ scaling_factor, post_quant_conv, the diffusers decoder, unclamped, as
// engine.VAE.Decode. Errors as VAEEncoder's; it can be called once per graph.
func VAEDecoder(g *Graph, m *model.Model, latents Value) (Value, error) {
	cfg, get, err := vaeSource(m)
	if err != nil {
		return "", err
	}
	return vaeDecoder(g, cfg, get, latents)
}

func vaeSource(m *model.Model) (model.VAEConfig, func(string) ([]float32, error), error) {
	if m == nil || m.Config == nil || m.Weights == nil || m.Report == nil {
		return model.VAEConfig{}, nil, errors.New("flextok/onnx: VAE: model is not loaded (use model.Load or model.LoadFile)")
	}
	return m.Config.VAE, m.Tensor, nil
}

// vaeEncoder and vaeDecoder take the weights from get (a canonical name in, float32 values
// out), so tests can inject broken ones.
func vaeEncoder(g *Graph, cfg model.VAEConfig, get func(string) ([]float32, error), images Value) (Value, error) {
	v, err := loadVAE(cfg, get, true)
	if err != nil {
		return "", err
	}
	if err := vaeFree(g, "vae.encoder.conv_in.weight"); err != nil {
		return "", err
	}
	b := &vaeGraph{g: g, groups: v.groups, eps: v.eps}
	defer g.Scope("vae")()
	x := func() Value {
		defer g.Scope("encoder")()
		x := b.conv(images, &v.encIn) // [N, b[0], H, W]
		for i := range v.down {
			blk := &v.down[i]
			for j := range blk.resnets {
				x = b.resnet(x, &blk.resnets[j]) // [N, b[i], H/2^i, W/2^i]
			}
			if blk.down != nil {
				x = b.conv(x, blk.down) // [N, b[i], H/2^(i+1), W/2^(i+1)]
			}
		}
		x = b.mid(x, &v.encMid)       // [N, b[n-1], h, w]
		x = b.normSiLU(x, &v.encNorm) // conv_norm_out, conv_act
		return b.conv(x, &v.encOut)   // [N, 2C, h, w]
	}()
	if v.quant != nil {
		x = b.conv(x, v.quant) // [N, 2C, h, w]
	}
	// The posterior mean is the first C channels of the moments (mean | logvar).
	defer g.Scope("posterior")()
	mean := g.Slice(x, 1, 0, int64(v.latentC))
	return g.Mul(mean, g.Scalar(v.scale)), nil
}

func vaeDecoder(g *Graph, cfg model.VAEConfig, get func(string) ([]float32, error), latents Value) (Value, error) {
	v, err := loadVAE(cfg, get, false)
	if err != nil {
		return "", err
	}
	if err := vaeFree(g, "vae.decoder.conv_in.weight"); err != nil {
		return "", err
	}
	b := &vaeGraph{g: g, groups: v.groups, eps: v.eps}
	defer g.Scope("vae")()
	x := func() Value {
		defer g.Scope("unscale")()
		return g.Div(latents, g.Scalar(v.scale)) // as the engine: x / scaling_factor
	}()
	if v.post != nil {
		x = b.conv(x, v.post) // [N, C, h, w]
	}
	defer g.Scope("decoder")()
	x = b.conv(x, &v.decIn) // [N, b[n-1], h, w]
	x = b.mid(x, &v.decMid) // [N, b[n-1], h, w]
	for i := range v.up {
		blk := &v.up[i]
		for j := range blk.resnets {
			x = b.resnet(x, &blk.resnets[j]) // [N, b[n-1-i], h·2^i, w·2^i]
		}
		if blk.up != nil {
			x = b.upsample(x, blk.upScope, blk.up) // [N, b[n-1-i], h·2^(i+1), w·2^(i+1)]
		}
	}
	x = b.normSiLU(x, &v.decNorm) // [N, b[0], H, W]
	return b.conv(x, &v.decOut), nil
}

// vaeFree fails when the graph already holds the weight named probe (under g's scope): the
// part was added before, and adding it again would collide on every name.
func vaeFree(g *Graph, probe string) error {
	if g.names[g.scoped(probe)] {
		return fmt.Errorf("flextok/onnx: VAE: the graph already holds %s (add each VAE part once per graph)", g.scoped(probe))
	}
	return nil
}

// The weights of one half of the VAE, read and checked before anything is added to the graph.
// Each module carries its name relative to its parent (a graph scope).

type vaeConvW struct {
	name       string
	w, b       []float32 // (out, in, k, k), (out)
	out, in, k int
	stride     int
	pads       [4]int64 // ONNX order: top, left, bottom, right
}

type vaeNormW struct {
	name string
	w, b []float32 // (c), (c)
	c    int
}

type vaeLinearW struct {
	name string
	w, b []float32 // (c, c) PyTorch layout, (c)
}

type vaeResnetW struct {
	name         string
	in, out      int
	norm1, norm2 vaeNormW
	conv1, conv2 vaeConvW
	shortcut     *vaeConvW
}

type vaeAttnW struct {
	name          string
	c             int
	norm          vaeNormW
	q, k, v, proj vaeLinearW
}

type vaeMidW struct {
	res0, res1 vaeResnetW
	attn       *vaeAttnW
}

type vaeBlockW struct {
	resnets []vaeResnetW
	down    *vaeConvW // encoder: stride-2 conv, nil in the last block
	up      *vaeConvW // decoder: conv after the nearest ×2, nil in the last block
	upScope string    // decoder: the upsampler's name
}

type vaeWeights struct {
	groups  int
	eps     float32
	scale   float32
	latentC int

	encIn, encOut vaeConvW
	down          []vaeBlockW
	encMid        vaeMidW
	encNorm       vaeNormW
	quant         *vaeConvW

	post          *vaeConvW
	decIn, decOut vaeConvW
	decMid        vaeMidW
	up            []vaeBlockW
	decNorm       vaeNormW
}

// loadVAE reads the encoder's weights (enc) or the decoder's, in the engine's order, and
// checks them and the config as engine.NewVAE does; the error names every bad tensor.
func loadVAE(cfg model.VAEConfig, get func(string) ([]float32, error), enc bool) (*vaeWeights, error) {
	if err := cfg.Supported(); err != nil {
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	b := cfg.BlockOutChannels
	n := len(b)
	C := cfg.LatentChannels
	v := &vaeWeights{groups: cfg.NormGroups, eps: float32(cfg.NormEps), scale: float32(cfg.ScalingFactor), latentC: C}
	if cfg.NormEps <= 0 {
		v.eps = 1e-6 // diffusers' AutoencoderKL hard-codes 1e-6 (the engine's default too)
	}
	l := &vaeLoad{get: get}
	if enc {
		v.encIn = l.conv3("encoder.conv_in", "conv_in", b[0], cfg.InChannels)
		ch := b[0]
		for i := 0; i < n; i++ {
			var blk vaeBlockW
			for j := 0; j < cfg.LayersPerBlock; j++ {
				blk.resnets = append(blk.resnets, l.resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j),
					fmt.Sprintf("down_blocks.%d.resnets.%d", i, j), ch, b[i]))
				ch = b[i]
			}
			if i < n-1 {
				c := l.conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i),
					fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", i), ch, ch, 3, 2, [4]int64{0, 0, 1, 1}) // pad right and bottom
				blk.down = &c
			}
			v.down = append(v.down, blk)
		}
		v.encMid = l.mid("encoder.mid_block", b[n-1], cfg.MidBlockAttention)
		v.encNorm = l.norm("encoder.conv_norm_out", "conv_norm_out", b[n-1])
		v.encOut = l.conv3("encoder.conv_out", "conv_out", 2*C, b[n-1])
		if cfg.UseQuantConv {
			c := l.conv("quant_conv", "quant_conv", 2*C, 2*C, 1, 1, [4]int64{})
			v.quant = &c
		}
	} else {
		if cfg.UsePostQuantConv {
			c := l.conv("post_quant_conv", "post_quant_conv", C, C, 1, 1, [4]int64{})
			v.post = &c
		}
		v.decIn = l.conv3("decoder.conv_in", "conv_in", b[n-1], C)
		v.decMid = l.mid("decoder.mid_block", b[n-1], cfg.MidBlockAttention)
		ch := b[n-1]
		for i := 0; i < n; i++ {
			out := b[n-1-i] // up blocks run the channels in reverse
			var blk vaeBlockW
			for j := 0; j <= cfg.LayersPerBlock; j++ {
				blk.resnets = append(blk.resnets, l.resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j),
					fmt.Sprintf("up_blocks.%d.resnets.%d", i, j), ch, out))
				ch = out
			}
			if i < n-1 {
				c := l.conv3(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), "conv", ch, ch)
				blk.upScope = fmt.Sprintf("up_blocks.%d.upsamplers.0", i)
				blk.up = &c
			}
			v.up = append(v.up, blk)
		}
		v.decNorm = l.norm("decoder.conv_norm_out", "conv_norm_out", b[0])
		v.decOut = l.conv3("decoder.conv_out", "conv_out", cfg.OutChannels, b[0])
	}
	if len(l.errs) > 0 {
		return nil, fmt.Errorf("flextok/onnx: VAE: %d bad weight(s): %w", len(l.errs), errors.Join(l.errs...))
	}
	return v, nil
}

// vaeLoad reads weights by their name under vae.vae., collecting one error per bad tensor.
type vaeLoad struct {
	get  func(string) ([]float32, error)
	errs []error
}

// tensor reads model.VAEPrefix+name and checks it has exactly prod(shape) finite values; on
// error it records it and returns zeros of the right length (the result is never used).
func (l *vaeLoad) tensor(name string, shape ...int) []float32 {
	want := 1
	for _, d := range shape {
		want *= d
	}
	full := model.VAEPrefix + name
	w, err := l.get(full)
	switch {
	case err != nil:
		l.errs = append(l.errs, fmt.Errorf("weight %s: %w", full, err))
		return make([]float32, want)
	case len(w) != want:
		l.errs = append(l.errs, fmt.Errorf("weight %s has %d values, want %d (shape %v)", full, len(w), want, shape))
		return make([]float32, want)
	}
	for i, x := range w {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			l.errs = append(l.errs, fmt.Errorf("weight %s: value %d is %v", full, i, x))
			break
		}
	}
	return w
}

// conv reads the Conv2d full (its weight and bias) and names it local in the graph.
func (l *vaeLoad) conv(full, local string, out, in, k, stride int, pads [4]int64) vaeConvW {
	return vaeConvW{
		name: local,
		w:    l.tensor(full+".weight", out, in, k, k), b: l.tensor(full+".bias", out),
		out: out, in: in, k: k, stride: stride, pads: pads,
	}
}

// conv3 is a 3x3 stride-1 convolution with padding 1 (diffusers' default).
func (l *vaeLoad) conv3(full, local string, out, in int) vaeConvW {
	return l.conv(full, local, out, in, 3, 1, [4]int64{1, 1, 1, 1})
}

func (l *vaeLoad) norm(full, local string, c int) vaeNormW {
	return vaeNormW{name: local, w: l.tensor(full+".weight", c), b: l.tensor(full+".bias", c), c: c}
}

func (l *vaeLoad) linear(full, local string, c int) vaeLinearW {
	return vaeLinearW{name: local, w: l.tensor(full+".weight", c, c), b: l.tensor(full+".bias", c)}
}

func (l *vaeLoad) resnet(full, local string, in, out int) vaeResnetW {
	r := vaeResnetW{
		name: local, in: in, out: out,
		norm1: l.norm(full+".norm1", "norm1", in),
		conv1: l.conv3(full+".conv1", "conv1", out, in),
		norm2: l.norm(full+".norm2", "norm2", out),
		conv2: l.conv3(full+".conv2", "conv2", out, out),
	}
	if in != out {
		c := l.conv(full+".conv_shortcut", "conv_shortcut", out, in, 1, 1, [4]int64{})
		r.shortcut = &c
	}
	return r
}

// mid reads UNetMidBlock2D full (encoder.mid_block or decoder.mid_block) at c channels.
func (l *vaeLoad) mid(full string, c int, attn bool) vaeMidW {
	m := vaeMidW{res0: l.resnet(full+".resnets.0", "mid_block.resnets.0", c, c)}
	if attn {
		a := full + ".attentions.0."
		m.attn = &vaeAttnW{
			name: "mid_block.attentions.0",
			c:    c,
			norm: l.norm(a+"group_norm", "group_norm", c),
			q:    l.linear(a+"to_q", "to_q", c), k: l.linear(a+"to_k", "to_k", c), v: l.linear(a+"to_v", "to_v", c),
			proj: l.linear(a+"to_out.0", "to_out.0", c),
		}
	}
	m.res1 = l.resnet(full+".resnets.1", "mid_block.resnets.1", c, c)
	return m
}

// vaeGraph emits the VAE's layers into g.
type vaeGraph struct {
	g      *Graph
	groups int
	eps    float32
}

// conv is an ONNX Conv (weights in PyTorch's OIHW layout, which is ONNX's).
func (b *vaeGraph) conv(x Value, c *vaeConvW) Value {
	g := b.g
	defer g.Scope(c.name)()
	w := g.Const("weight", []int{c.out, c.in, c.k, c.k}, c.w)
	bias := g.Const("bias", []int{c.out}, c.b)
	s := int64(c.stride)
	return g.Op("Conv", []Value{x, w, bias},
		AInts("kernel_shape", int64(c.k), int64(c.k)), AInts("strides", s, s),
		AInts("pads", c.pads[:]...), AInts("dilations", 1, 1), AInt("group", 1))
}

// groupNorm is PyTorch GroupNorm(groups, c, eps, affine) on x [N, c, H, W]: each group of
// c/groups channels is normalised with the mean and biased variance of its c/groups·H·W
// values (two passes, as the engine: the mean, then the mean of the squared deviations),
// y = ((x - mean) · 1/√(var+eps)) · γ + β.
func (b *vaeGraph) groupNorm(x Value, n *vaeNormW) Value {
	g := b.g
	defer g.Scope(n.name)()
	shape := g.Op("Shape", []Value{x})
	r := g.Reshape(x, 0, int64(b.groups), -1) // [N, G, c/G·H·W]
	mean := g.Op("ReduceMean", []Value{r}, AInts("axes", 2), AInt("keepdims", 1))
	d := g.Sub(r, mean)
	variance := g.Op("ReduceMean", []Value{g.Mul(d, d)}, AInts("axes", 2), AInt("keepdims", 1))
	rstd := g.Op("Reciprocal", []Value{g.Op("Sqrt", []Value{g.Add(variance, g.Scalar(b.eps))})})
	y := g.Op("Reshape", []Value{g.Mul(d, rstd), shape}) // [N, c, H, W]
	gamma := g.Const("weight", []int{n.c, 1, 1}, n.w)
	beta := g.Const("bias", []int{n.c, 1, 1}, n.b)
	return g.Add(g.Mul(y, gamma), beta)
}

// normSiLU is SiLU(GroupNorm(x)).
func (b *vaeGraph) normSiLU(x Value, n *vaeNormW) Value { return b.g.SiLU(b.groupNorm(x, n)) }

// resnet is ResnetBlock2D: skip(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))).
func (b *vaeGraph) resnet(x Value, r *vaeResnetW) Value {
	defer b.g.Scope(r.name)()
	h := b.conv(b.normSiLU(x, &r.norm1), &r.conv1)
	h = b.conv(b.normSiLU(h, &r.norm2), &r.conv2)
	skip := x
	if r.shortcut != nil {
		skip = b.conv(x, r.shortcut)
	}
	return b.g.Add(skip, h)
}

// mid is UNetMidBlock2D: resnet, attention, resnet.
func (b *vaeGraph) mid(x Value, m *vaeMidW) Value {
	x = b.resnet(x, &m.res0)
	if m.attn != nil {
		x = b.attention(x, m.attn)
	}
	return b.resnet(x, &m.res1)
}

// attention is diffusers' single-head spatial self-attention, residual included:
// x + to_out(softmax(q kᵀ/√c) v), q, k, v = to_q, to_k, to_v of the GroupNorm-ed pixels as
// H·W tokens of c features.
func (b *vaeGraph) attention(x Value, a *vaeAttnW) Value {
	g := b.g
	defer g.Scope(a.name)()
	c := a.c
	shape := g.Op("Shape", []Value{x})
	tok := g.Transpose(g.Reshape(b.groupNorm(x, &a.norm), 0, int64(c), -1), 0, 2, 1) // [N, HW, c]
	q := g.Linear(tok, a.q.name, a.q.w, c, c, a.q.b)
	k := g.Linear(tok, a.k.name, a.k.w, c, c, a.k.b)
	v := g.Linear(tok, a.v.name, a.v.w, c, c, a.v.b)
	scores := g.Op("MatMul", []Value{q, g.Transpose(k, 0, 2, 1)}) // [N, HW, HW]
	scores = g.Mul(scores, g.Scalar(float32(1/math.Sqrt(float64(c)))))
	p := g.Op("Softmax", []Value{scores}, AInt("axis", -1))
	o := g.Linear(g.Op("MatMul", []Value{p, v}), a.proj.name, a.proj.w, c, c, a.proj.b) // [N, HW, c]
	o = g.Op("Reshape", []Value{g.Transpose(o, 0, 2, 1), shape})                        // [N, c, H, W]
	return g.Add(o, x)
}

// upsample is Upsample2D: nearest-neighbour ×2 (pixel (y, x) of the output is (y/2, x/2) of
// the input, exactly), then the 3x3 conv.
func (b *vaeGraph) upsample(x Value, scope string, c *vaeConvW) Value {
	g := b.g
	defer g.Scope(scope)()
	scales := g.Const("scales", []int{4}, []float32{1, 1, 2, 2})
	x = g.Op("Resize", []Value{x, "", scales},
		vaeAttrString("mode", "nearest"), vaeAttrString("coordinate_transformation_mode", "asymmetric"),
		vaeAttrString("nearest_mode", "floor"))
	return b.conv(x, c)
}

// vaeAttrString is a string attribute.
func vaeAttrString(name, v string) Attr {
	return &pb.AttributeProto{Name: ptr(name), Type: ptr(pb.AttributeProto_STRING), S: []byte(v)}
}
