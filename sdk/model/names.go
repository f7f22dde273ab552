package model

import (
	"fmt"
	"strings"
)

// The one table of weight names. Every safetensors key the engine reads is
// built here; module names (module_dict keys such as "enc_transformer") come
// from the config, so a renamed module still loads.

// Prefixes of the three weighted parts.
const (
	EncoderPrefix = "encoder.module_dict."
	DecoderPrefix = "decoder.module_dict."
	VAEPrefix     = "vae.vae."
)

// Format strings of per-block trunk weights: Sprintf(fmt, prefix, module, block).
const (
	BlockWQ        = "%s%s.blocks.%d.attn.wq.weight"            // (W, W)
	BlockWK        = "%s%s.blocks.%d.attn.wk.weight"            // (W, W)
	BlockWV        = "%s%s.blocks.%d.attn.wv.weight"            // (W, W)
	BlockProj      = "%s%s.blocks.%d.attn.proj.weight"          // (W, W)
	BlockFC1       = "%s%s.blocks.%d.mlp.fc1.weight"            // (Hd, W)
	BlockFC2       = "%s%s.blocks.%d.mlp.fc2.weight"            // (W, Hd)
	BlockFC3       = "%s%s.blocks.%d.mlp.fc3.weight"            // (Hd, W), gated MLP only
	BlockAdaLN     = "%s%s.blocks.%d.adaLN_modulation.1.weight" // (E·6W, W)
	BlockAdaLNBias = "%s%s.blocks.%d.adaLN_modulation.1.bias"   // (E·6W)
	checkpointWrap = "_checkpoint_wrapped_module."
)

// Block returns the name of a per-block weight from one of the Block* formats.
func Block(format, prefix, module string, i int) string {
	return fmt.Sprintf(format, prefix, module, i)
}

// Tensor is an expected weight: its canonical name and shape.
type Tensor struct {
	Name  string
	Shape []int
	Part  string // "vae", "encoder" or "decoder"
}

type tensorList struct {
	out  []Tensor
	part string
}

func (l *tensorList) add(name string, shape ...int) {
	l.out = append(l.out, Tensor{name, shape, l.part})
}

func (l *tensorList) linear(name string, out, in int, bias bool) {
	l.add(name+".weight", out, in)
	if bias {
		l.add(name+".bias", out)
	}
}

func (l *tensorList) trunk(prefix, mod string, t TrunkConfig) {
	for i := 0; i < t.Depth; i++ {
		b := fmt.Sprintf("%s%s.blocks.%d.", prefix, mod, i)
		for _, q := range []string{"wq", "wk", "wv"} {
			l.linear(b+"attn."+q, t.Width, t.Width, t.QKVBias)
		}
		l.linear(b+"attn.proj", t.Width, t.Width, t.ProjBias)
		l.linear(b+"mlp.fc1", t.MLPHidden, t.Width, t.MLPBias)
		l.linear(b+"mlp.fc2", t.Width, t.MLPHidden, t.MLPBias)
		if t.Gated {
			l.linear(b+"mlp.fc3", t.MLPHidden, t.Width, t.MLPBias)
		}
		if t.AdaLNExpansion > 0 {
			l.linear(b+"adaLN_modulation.1", t.AdaLNExpansion*6*t.Width, t.Width, true)
		}
	}
}

func (l *tensorList) posemb(name string, p PosembConfig, w int) {
	if p.Type == "sincos" {
		l.add(name, 1, w, p.MaxSizes[0], p.MaxSizes[1])
		return
	}
	l.add(name, len(p.MaxSizes), 1, w, p.MaxSizes[0])
}

// ExpectedTensors lists every weight the config implies, in module order:
// VAE, encoder, decoder.
func (c *Config) ExpectedTensors() []Tensor {
	var l tensorList
	l.part = "vae"
	c.vaeTensors(&l)

	l.part = "encoder"
	e, E := c.Encoder, EncoderPrefix
	W := e.Trunk.Width
	for _, m := range e.Modules {
		p := E + m.Name
		switch m.Class {
		case "PatchEmbedder":
			l.linear(p+".patch_proj", W, e.PatchSize[0]*e.PatchSize[1]*e.ChannelsIn, true)
		case "PositionalEmbeddingAdder":
			l.posemb(p+".posembs", e.Posemb, W)
		case "Registers1D":
			l.add(p+".registers", e.RegistersNMax, W)
		case "FlexTransformer":
			l.trunk(E, m.Name, e.Trunk)
		case "LinearHead":
			l.linear(p+".proj", e.LatentDim, W, true)
		}
	}

	l.part = "decoder"
	d, D := c.Decoder, DecoderPrefix
	W = d.Trunk.Width
	for _, m := range d.Modules {
		p := D + m.Name
		switch m.Class {
		case "LinearLayer":
			l.linear(p+".proj", W, d.LatentDim, true)
		case "PositionalEmbeddingAdder":
			if m.Name == d.PatchPosemb.Module {
				l.posemb(p+".posembs", d.PatchPosemb, W)
			} else {
				l.posemb(p+".posembs", d.RegisterPosemb, W)
			}
		case "MaskedNestedDropout":
			l.add(p+".dropout_mask_token", W)
		case "LearnedNullCond":
			l.add(p+".nullcond", W)
		case "PatchEmbedder":
			l.linear(p+".patch_proj", W, d.PatchSize[0]*d.PatchSize[1]*d.ChannelsIn, true)
		case "TimestepEmbedder":
			l.linear(p+".mlp.0", W, d.FreqEmbSize, true)
			l.linear(p+".mlp.2", W, W, true)
		case "FlexTransformer":
			l.trunk(D, m.Name, d.Trunk)
		case "ToPatchesLinearHead":
			if d.HeadAdaLN {
				l.linear(p+".adaLN_modulation.1", 2*W, W, true)
			}
			l.linear(p+".proj", d.PatchSize[0]*d.PatchSize[1]*d.ChannelsOut, W, true)
		}
	}
	return l.out
}

// vaeTensors follows diffusers' AutoencoderKL layout. A config without VAE blocks (only a
// hand-built, unvalidated one) has no VAE tensors.
func (c *Config) vaeTensors(l *tensorList) {
	v := c.VAE
	V := VAEPrefix
	C := v.LatentChannels
	b := v.BlockOutChannels
	if len(b) == 0 {
		return
	}
	norm := func(name string, ch int) { l.add(name+".weight", ch); l.add(name+".bias", ch) }
	conv := func(name string, out, in, k int) { l.add(name+".weight", out, in, k, k); l.add(name+".bias", out) }
	resnet := func(p string, in, out int) {
		norm(p+".norm1", in)
		conv(p+".conv1", out, in, 3)
		norm(p+".norm2", out)
		conv(p+".conv2", out, out, 3)
		if in != out {
			conv(p+".conv_shortcut", out, in, 1)
		}
	}
	mid := func(p string, ch int) {
		resnet(p+".mid_block.resnets.0", ch, ch)
		if v.MidBlockAttention {
			a := p + ".mid_block.attentions.0."
			norm(a+"group_norm", ch)
			for _, q := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
				l.linear(a+q, ch, ch, true)
			}
		}
		resnet(p+".mid_block.resnets.1", ch, ch)
	}
	n := len(b)
	conv(V+"encoder.conv_in", b[0], v.InChannels, 3)
	out := b[0]
	for i := 0; i < n; i++ {
		in := out
		out = b[i]
		for j := 0; j < v.LayersPerBlock; j++ {
			src := out
			if j == 0 {
				src = in
			}
			resnet(fmt.Sprintf("%sencoder.down_blocks.%d.resnets.%d", V, i, j), src, out)
		}
		if i < n-1 {
			conv(fmt.Sprintf("%sencoder.down_blocks.%d.downsamplers.0.conv", V, i), out, out, 3)
		}
	}
	mid(V+"encoder", b[n-1])
	norm(V+"encoder.conv_norm_out", b[n-1])
	conv(V+"encoder.conv_out", 2*C, b[n-1], 3)
	if v.UseQuantConv {
		conv(V+"quant_conv", 2*C, 2*C, 1)
	}
	if v.UsePostQuantConv {
		conv(V+"post_quant_conv", C, C, 1)
	}
	conv(V+"decoder.conv_in", b[n-1], C, 3)
	mid(V+"decoder", b[n-1])
	out = b[n-1]
	for i := 0; i < n; i++ {
		prev := out
		out = b[n-1-i]
		for j := 0; j <= v.LayersPerBlock; j++ {
			src := out
			if j == 0 {
				src = prev
			}
			resnet(fmt.Sprintf("%sdecoder.up_blocks.%d.resnets.%d", V, i, j), src, out)
		}
		if i < n-1 {
			conv(fmt.Sprintf("%sdecoder.up_blocks.%d.upsamplers.0.conv", V, i), out, out, 3)
		}
	}
	norm(V+"decoder.conv_norm_out", b[0])
	conv(V+"decoder.conv_out", v.OutChannels, b[0], 3)
}

// oldAttention maps the attention names of old diffusers exports.
var oldAttention = strings.NewReplacer(
	".attentions.0.query.", ".attentions.0.to_q.",
	".attentions.0.key.", ".attentions.0.to_k.",
	".attentions.0.value.", ".attentions.0.to_v.",
	".attentions.0.proj_attn.", ".attentions.0.to_out.0.",
)

// CanonicalName maps a checkpoint key to the name used by the table: the
// `_checkpoint_wrapped_module.` infix is removed and old diffusers attention
// names (query, key, value, proj_attn) become to_q, to_k, to_v, to_out.0.
func CanonicalName(key string) string {
	key = strings.ReplaceAll(key, checkpointWrap, "")
	if strings.HasPrefix(key, VAEPrefix) && strings.Contains(key, ".attentions.0.") {
		key = oldAttention.Replace(key)
	}
	return key
}

// The six chunks of an adaLN modulation vector (E·6W per block: per part, six W-wide chunks),
// in the order FlexBlockAdaLN.forward splits them.
const (
	AdaLNGateMSA = iota
	AdaLNGateMLP
	AdaLNShiftMSA
	AdaLNScaleMSA
	AdaLNShiftMLP
	AdaLNScaleMLP
)
