package onnx

import (
	"errors"
	"fmt"
	"math"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
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
	e, err := model.ReadVAEEncoder(cfg, get)
	if err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := vaeFree(g, "vae.encoder.conv_in.weight"); err != nil {
		return "", err
	}
	b := &vaeGraph{g: g, groups: cfg.NormGroups, eps: cfg.GroupNormEps()}
	defer g.Scope("vae")()
	x := func() Value {
		defer g.Scope("encoder")()
		x := b.conv(images, &e.In) // [N, b[0], H, W]
		for i := range e.Down {
			blk := &e.Down[i]
			for j := range blk.Resnets {
				x = b.resnet(x, &blk.Resnets[j]) // [N, b[i], H/2^i, W/2^i]
			}
			if blk.Down != nil {
				x = b.conv(x, blk.Down) // [N, b[i], H/2^(i+1), W/2^(i+1)]
			}
		}
		x = b.mid(x, &e.Mid)       // [N, b[n-1], h, w]
		x = b.normSiLU(x, &e.Norm) // conv_norm_out, conv_act
		return b.conv(x, &e.Out)   // [N, 2C, h, w]
	}()
	if e.Quant != nil {
		x = b.conv(x, e.Quant) // [N, 2C, h, w]
	}
	// The posterior mean is the first C channels of the moments (mean | logvar).
	defer g.Scope("posterior")()
	mean := g.Slice(x, 1, 0, int64(cfg.LatentChannels))
	return g.Mul(mean, g.Scalar(float32(cfg.ScalingFactor))), nil
}

func vaeDecoder(g *Graph, cfg model.VAEConfig, get func(string) ([]float32, error), latents Value) (Value, error) {
	d, err := model.ReadVAEDecoder(cfg, get)
	if err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := vaeFree(g, "vae.decoder.conv_in.weight"); err != nil {
		return "", err
	}
	b := &vaeGraph{g: g, groups: cfg.NormGroups, eps: cfg.GroupNormEps()}
	defer g.Scope("vae")()
	x := func() Value {
		defer g.Scope("unscale")()
		return g.Div(latents, g.Scalar(float32(cfg.ScalingFactor))) // as the engine: x / scaling_factor
	}()
	if d.Post != nil {
		x = b.conv(x, d.Post) // [N, C, h, w]
	}
	defer g.Scope("decoder")()
	x = b.conv(x, &d.In) // [N, b[n-1], h, w]
	x = b.mid(x, &d.Mid) // [N, b[n-1], h, w]
	for i := range d.Up {
		blk := &d.Up[i]
		for j := range blk.Resnets {
			x = b.resnet(x, &blk.Resnets[j]) // [N, b[n-1-i], h·2^i, w·2^i]
		}
		if blk.Up != nil {
			x = b.upsample(x, blk.Up) // [N, b[n-1-i], h·2^(i+1), w·2^(i+1)]
		}
	}
	x = b.normSiLU(x, &d.Norm) // [N, b[0], H, W]
	return b.conv(x, &d.Out), nil
}

// vaeFree fails when the graph already holds the weight named probe (under g's scope): the
// part was added before, and adding it again would collide on every name.
func vaeFree(g *Graph, probe string) error {
	if g.names[g.scoped(probe)] {
		return fmt.Errorf("flextok/onnx: VAE: the graph already holds %s (add each VAE part once per graph)", g.scoped(probe))
	}
	return nil
}

// vaeGraph emits the VAE's layers into g.
type vaeGraph struct {
	g      *Graph
	groups int
	eps    float32
}

// conv is an ONNX Conv (weights in PyTorch's OIHW layout, which is ONNX's).
func (b *vaeGraph) conv(x Value, c *model.VAEConv) Value {
	g := b.g
	defer g.Scope(c.Name)()
	w := g.Const("weight", []int{c.Out, c.In, c.K, c.K}, c.W)
	bias := g.Const("bias", []int{c.Out}, c.B)
	s, k := int64(c.Stride), int64(c.K)
	return g.Op("Conv", []Value{x, w, bias},
		AInts("kernel_shape", k, k), AInts("strides", s, s),
		AInts("pads", int64(c.PadT), int64(c.PadL), int64(c.PadB), int64(c.PadR)), // ONNX: begins, then ends
		AInts("dilations", 1, 1), AInt("group", 1))
}

// groupNorm is PyTorch GroupNorm(groups, c, eps, affine) on x [N, c, H, W]: each group of
// c/groups channels is normalised with the mean and biased variance of its c/groups·H·W
// values (two passes, as the engine: the mean, then the mean of the squared deviations),
// y = ((x - mean) · 1/√(var+eps)) · γ + β.
func (b *vaeGraph) groupNorm(x Value, n *model.VAENorm) Value {
	g := b.g
	defer g.Scope(n.Name)()
	shape := g.Op("Shape", []Value{x})
	r := g.Reshape(x, 0, int64(b.groups), -1) // [N, G, c/G·H·W]
	mean := g.Op("ReduceMean", []Value{r}, AInts("axes", 2), AInt("keepdims", 1))
	d := g.Sub(r, mean)
	variance := g.Op("ReduceMean", []Value{g.Mul(d, d)}, AInts("axes", 2), AInt("keepdims", 1))
	rstd := g.Op("Reciprocal", []Value{g.Op("Sqrt", []Value{g.Add(variance, g.Scalar(b.eps))})})
	y := g.Op("Reshape", []Value{g.Mul(d, rstd), shape}) // [N, c, H, W]
	gamma := g.Const("weight", []int{n.C, 1, 1}, n.W)
	beta := g.Const("bias", []int{n.C, 1, 1}, n.B)
	return g.Add(g.Mul(y, gamma), beta)
}

// normSiLU is SiLU(GroupNorm(x)).
func (b *vaeGraph) normSiLU(x Value, n *model.VAENorm) Value { return b.g.SiLU(b.groupNorm(x, n)) }

// resnet is ResnetBlock2D: skip(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))).
func (b *vaeGraph) resnet(x Value, r *model.VAEResnet) Value {
	h := b.conv(b.normSiLU(x, &r.Norm1), &r.Conv1)
	h = b.conv(b.normSiLU(h, &r.Norm2), &r.Conv2)
	skip := x
	if r.Shortcut != nil {
		skip = b.conv(x, r.Shortcut)
	}
	return b.g.Add(skip, h)
}

// mid is UNetMidBlock2D: resnet, attention, resnet.
func (b *vaeGraph) mid(x Value, m *model.VAEMid) Value {
	x = b.resnet(x, &m.Res0)
	if m.Attn != nil {
		x = b.attention(x, m.Attn)
	}
	return b.resnet(x, &m.Res1)
}

// attention is diffusers' single-head spatial self-attention, residual included:
// x + to_out(softmax(q kᵀ/√c) v), q, k, v = to_q, to_k, to_v of the GroupNorm-ed pixels as
// H·W tokens of c features.
func (b *vaeGraph) attention(x Value, a *model.VAEAttn) Value {
	g := b.g
	c := a.C
	shape := g.Op("Shape", []Value{x})
	tok := g.Transpose(g.Reshape(b.groupNorm(x, &a.Norm), 0, int64(c), -1), 0, 2, 1) // [N, HW, c]
	q := g.Linear(tok, a.Q.Name, a.Q.W, c, c, a.Q.B)
	k := g.Linear(tok, a.K.Name, a.K.W, c, c, a.K.B)
	v := g.Linear(tok, a.V.Name, a.V.W, c, c, a.V.B)
	scores := g.Op("MatMul", []Value{q, g.Transpose(k, 0, 2, 1)}) // [N, HW, HW]
	scores = g.Mul(scores, g.Scalar(float32(1/math.Sqrt(float64(c)))))
	p := g.Op("Softmax", []Value{scores}, AInt("axis", -1))
	o := g.Linear(g.Op("MatMul", []Value{p, v}), a.Proj.Name, a.Proj.W, c, c, a.Proj.B) // [N, HW, c]
	o = g.Op("Reshape", []Value{g.Transpose(o, 0, 2, 1), shape})                        // [N, c, H, W]
	return g.Add(o, x)
}

// upsample is Upsample2D: nearest-neighbour ×2 (pixel (y, x) of the output is (y/2, x/2) of
// the input, exactly), then the 3x3 conv.
func (b *vaeGraph) upsample(x Value, c *model.VAEConv) Value {
	g := b.g
	scales := g.constant(Float, []int{4}, tensor.Bytes([]float32{1, 1, 2, 2}))
	x = g.Op("Resize", []Value{x, "", scales},
		vaeAttrString("mode", "nearest"), vaeAttrString("coordinate_transformation_mode", "asymmetric"),
		vaeAttrString("nearest_mode", "floor"))
	return b.conv(x, c)
}

// vaeAttrString is a string attribute.
func vaeAttrString(name, v string) Attr {
	return &pb.AttributeProto{Name: ptr(name), Type: ptr(pb.AttributeProto_STRING), S: []byte(v)}
}
