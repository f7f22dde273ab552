package model

import (
	"errors"
	"fmt"
	"math"
)

// The VAE's weights laid out as diffusers' AutoencoderKL runs them, read once here for every
// executor (the Go engine and the ONNX export walk these structs; neither walks the
// checkpoint's names itself). Each module carries its diffusers name relative to its parent
// part (encoder or decoder), e.g. "down_blocks.0.resnets.1", "conv1", "mid_block.attentions.0".

// VAEConv is a Conv2d with PyTorch weights W (Out, In, K, K) and bias B (Out), with the
// stride and (top, bottom, left, right) zero padding of its place in the network.
type VAEConv struct {
	Name                   string
	W, B                   []float32
	Out, In, K, Stride     int
	PadT, PadB, PadL, PadR int
}

// VAENorm holds the affine parameters of a GroupNorm over C channels.
type VAENorm struct {
	Name string
	W, B []float32 // (C), (C)
	C    int
}

// VAELinear is a Linear (C → C) with PyTorch weights W (C, C) and bias B (C).
type VAELinear struct {
	Name string
	W, B []float32
	C    int
}

// VAEResnet is a ResnetBlock2D from In to Out channels; Shortcut (1x1) exists when In != Out.
type VAEResnet struct {
	Name         string
	In, Out      int
	Norm1, Norm2 VAENorm
	Conv1, Conv2 VAEConv
	Shortcut     *VAEConv
}

// VAEAttn is the mid block's single-head self-attention over the pixels (head dim = C).
type VAEAttn struct {
	Name          string
	C             int
	Norm          VAENorm
	Q, K, V, Proj VAELinear // to_q, to_k, to_v, to_out.0
}

// VAEMid is UNetMidBlock2D: resnet, attention (nil without mid_block_add_attention), resnet.
type VAEMid struct {
	Res0, Res1 VAEResnet
	Attn       *VAEAttn
}

// VAEDownBlock is DownEncoderBlock2D: layers_per_block resnets, then Down, a stride-2 3x3 conv
// padded right and bottom (diffusers' Downsample2D), except in the last block (nil).
type VAEDownBlock struct {
	Resnets []VAEResnet
	Down    *VAEConv
}

// VAEUpBlock is UpDecoderBlock2D: layers_per_block+1 resnets, then nearest ×2 and Up, a 3x3
// conv, except in the last block (nil).
type VAEUpBlock struct {
	Resnets []VAEResnet
	Up      *VAEConv
}

// VAEEncoderWeights are the encoder's: conv_in, the down blocks, the mid block, conv_norm_out,
// conv_out (2C channels: mean | logvar), and quant_conv (nil without use_quant_conv, named
// relative to the VAE).
type VAEEncoderWeights struct {
	In    VAEConv
	Down  []VAEDownBlock
	Mid   VAEMid
	Norm  VAENorm
	Out   VAEConv
	Quant *VAEConv
}

// VAEDecoderWeights are the decoder's: post_quant_conv (nil without use_post_quant_conv, named
// relative to the VAE), conv_in, the mid block, the up blocks (channels in reverse),
// conv_norm_out, conv_out.
type VAEDecoderWeights struct {
	Post *VAEConv
	In   VAEConv
	Mid  VAEMid
	Up   []VAEUpBlock
	Norm VAENorm
	Out  VAEConv
}

// GroupNormEps is the GroupNorm eps of the VAE: norm_eps, or diffusers' AutoencoderKL's
// hard-coded 1e-6 when the config leaves it at 0.
func (c VAEConfig) GroupNormEps() float32 {
	if c.NormEps <= 0 {
		return 1e-6
	}
	return float32(c.NormEps)
}

// ReadVAEEncoder reads the encoder half of the VAE from get (a canonical name in, float32
// values out) after checking that the layout is Supported. The error names every weight that
// is missing, has the wrong number of values or holds a NaN or an infinity.
func ReadVAEEncoder(c VAEConfig, get func(name string) ([]float32, error)) (*VAEEncoderWeights, error) {
	if err := c.Supported(); err != nil {
		return nil, err
	}
	r := &vaeReader{get: get, prefix: VAEPrefix + "encoder."}
	b, n, C := c.BlockOutChannels, len(c.BlockOutChannels), c.LatentChannels
	w := &VAEEncoderWeights{In: r.conv3("conv_in", b[0], c.InChannels)}
	ch := b[0]
	for i := 0; i < n; i++ {
		var blk VAEDownBlock
		for j := 0; j < c.LayersPerBlock; j++ {
			blk.Resnets = append(blk.Resnets, r.resnet(fmt.Sprintf("down_blocks.%d.resnets.%d", i, j), ch, b[i]))
			ch = b[i]
		}
		if i < n-1 {
			d := r.conv(fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", i), ch, ch, 3, 2, 0, 1, 0, 1)
			blk.Down = &d
		}
		w.Down = append(w.Down, blk)
	}
	w.Mid = r.mid(b[n-1], c.MidBlockAttention)
	w.Norm = r.norm("conv_norm_out", b[n-1])
	w.Out = r.conv3("conv_out", 2*C, b[n-1])
	if c.UseQuantConv {
		r.prefix = VAEPrefix
		q := r.conv("quant_conv", 2*C, 2*C, 1, 1, 0, 0, 0, 0)
		w.Quant = &q
	}
	return w, r.err()
}

// ReadVAEDecoder reads the decoder half of the VAE, as ReadVAEEncoder.
func ReadVAEDecoder(c VAEConfig, get func(name string) ([]float32, error)) (*VAEDecoderWeights, error) {
	if err := c.Supported(); err != nil {
		return nil, err
	}
	r := &vaeReader{get: get, prefix: VAEPrefix}
	b, n, C := c.BlockOutChannels, len(c.BlockOutChannels), c.LatentChannels
	w := &VAEDecoderWeights{}
	if c.UsePostQuantConv {
		p := r.conv("post_quant_conv", C, C, 1, 1, 0, 0, 0, 0)
		w.Post = &p
	}
	r.prefix = VAEPrefix + "decoder."
	w.In = r.conv3("conv_in", b[n-1], C)
	w.Mid = r.mid(b[n-1], c.MidBlockAttention)
	ch := b[n-1]
	for i := 0; i < n; i++ {
		out := b[n-1-i] // up blocks run the channels in reverse
		var blk VAEUpBlock
		for j := 0; j <= c.LayersPerBlock; j++ {
			blk.Resnets = append(blk.Resnets, r.resnet(fmt.Sprintf("up_blocks.%d.resnets.%d", i, j), ch, out))
			ch = out
		}
		if i < n-1 {
			u := r.conv3(fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", i), ch, ch)
			blk.Up = &u
		}
		w.Up = append(w.Up, blk)
	}
	w.Norm = r.norm("conv_norm_out", b[0])
	w.Out = r.conv3("conv_out", c.OutChannels, b[0])
	return w, r.err()
}

// vaeReader reads the weights of modules named relative to prefix, collecting one error per
// bad tensor (and zeros in its place, never used).
type vaeReader struct {
	get    func(string) ([]float32, error)
	prefix string
	errs   []error
}

func (r *vaeReader) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("VAE: %d bad weight(s): %w", len(r.errs), errors.Join(r.errs...))
}

// tensor reads prefix+name, which must hold exactly prod(shape) finite values.
func (r *vaeReader) tensor(name string, shape ...int) []float32 {
	want := 1
	for _, d := range shape {
		want *= d
	}
	full := r.prefix + name
	w, err := r.get(full)
	switch {
	case err != nil:
		r.errs = append(r.errs, fmt.Errorf("weight %s: %w", full, err))
		return make([]float32, want)
	case len(w) != want:
		r.errs = append(r.errs, fmt.Errorf("weight %s has %d values, want %d (shape %v)", full, len(w), want, shape))
		return make([]float32, want)
	}
	for i, x := range w {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			r.errs = append(r.errs, fmt.Errorf("weight %s: value %d is %v", full, i, x))
			break
		}
	}
	return w
}

func (r *vaeReader) conv(name string, out, in, k, stride, padT, padB, padL, padR int) VAEConv {
	return VAEConv{
		Name: name, W: r.tensor(name+".weight", out, in, k, k), B: r.tensor(name+".bias", out),
		Out: out, In: in, K: k, Stride: stride, PadT: padT, PadB: padB, PadL: padL, PadR: padR,
	}
}

// conv3 is a 3x3 stride-1 convolution with padding 1 (diffusers' default).
func (r *vaeReader) conv3(name string, out, in int) VAEConv {
	return r.conv(name, out, in, 3, 1, 1, 1, 1, 1)
}

func (r *vaeReader) norm(name string, c int) VAENorm {
	return VAENorm{Name: name, W: r.tensor(name+".weight", c), B: r.tensor(name+".bias", c), C: c}
}

func (r *vaeReader) linear(name string, c int) VAELinear {
	return VAELinear{Name: name, W: r.tensor(name+".weight", c, c), B: r.tensor(name+".bias", c), C: c}
}

func (r *vaeReader) resnet(name string, in, out int) VAEResnet {
	rn := VAEResnet{
		Name: name, In: in, Out: out,
		Norm1: r.norm(name+".norm1", in), Conv1: r.conv3(name+".conv1", out, in),
		Norm2: r.norm(name+".norm2", out), Conv2: r.conv3(name+".conv2", out, out),
	}
	if in != out {
		s := r.conv(name+".conv_shortcut", out, in, 1, 1, 0, 0, 0, 0)
		rn.Shortcut = &s
	}
	return rn
}

// mid reads mid_block at c channels.
func (r *vaeReader) mid(c int, attn bool) VAEMid {
	m := VAEMid{Res0: r.resnet("mid_block.resnets.0", c, c)}
	if attn {
		a := "mid_block.attentions.0"
		m.Attn = &VAEAttn{
			Name: a, C: c, Norm: r.norm(a+".group_norm", c),
			Q: r.linear(a+".to_q", c), K: r.linear(a+".to_k", c), V: r.linear(a+".to_v", c),
			Proj: r.linear(a+".to_out.0", c),
		}
	}
	m.Res1 = r.resnet("mid_block.resnets.1", c, c)
	return m
}
