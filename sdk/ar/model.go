package ar

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// ErrWeights marks a model.safetensors that breaks a rule of docs/ar-checkpoint.md (rule 6).
var ErrWeights = errors.New("flextok/ar: model.safetensors")

// ErrTokenizer marks an AR model loaded beside a tokenizer it was not trained for (rule 5).
var ErrTokenizer = errors.New("flextok/ar: tokenizer mismatch")

// LayerWeights are one block's float32 weights, in the checkpoint's layouts ([out, in]).
type LayerWeights struct {
	AttnNorm, WQKV, WO, FFNNorm, W1, W3, W2 []float32
}

// Weights are an AR model's float32 weights (the upcast of the stored tensors).
type Weights struct {
	Tok    []float32 // tok_embeddings.weight [V, d]
	Cls    []float32 // cls_embedding.embedding_table.weight [C(+1), d]
	Layers []LayerWeights
	Norm   []float32 // norm.weight [d]
	Output []float32 // output.weight [V, d]
}

// Model is a loaded AR model: its config and float32 weights. It is immutable and safe for
// concurrent use; a Generator binds it to an executor path.
type Model struct {
	Cfg *Config
	W   *Weights
}

// spec lists the checkpoint's tensors (name, shape, destination) for cfg.
func spec(cfg *Config, w *Weights) []struct {
	name  string
	shape []int
	dst   *[]float32
} {
	d, hd, F, V := cfg.Dim, cfg.HeadDim(), cfg.FFNHidden, cfg.VocabSize
	type t = struct {
		name  string
		shape []int
		dst   *[]float32
	}
	s := []t{{"tok_embeddings.weight", []int{V, d}, &w.Tok}, {"cls_embedding.embedding_table.weight", []int{cfg.ClassRows(), d}, &w.Cls},
		{"norm.weight", []int{d}, &w.Norm}, {"output.weight", []int{V, d}, &w.Output}}
	if len(w.Layers) != cfg.Layers {
		w.Layers = make([]LayerWeights, cfg.Layers)
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("layers.%d.", i)
		s = append(s, t{p + "attention_norm.weight", []int{d}, &l.AttnNorm},
			t{p + "attention.wqkv.weight", []int{(cfg.Heads + 2*cfg.KVHeads) * hd, d}, &l.WQKV},
			t{p + "attention.wo.weight", []int{d, d}, &l.WO}, t{p + "ffn_norm.weight", []int{d}, &l.FFNNorm},
			t{p + "feed_forward.w1.weight", []int{F, d}, &l.W1}, t{p + "feed_forward.w3.weight", []int{F, d}, &l.W3},
			t{p + "feed_forward.w2.weight", []int{d, F}, &l.W2})
	}
	return s
}

func shapeEq(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Load reads an AR checkpoint directory (config.json and model.safetensors) and checks every
// rule of docs/ar-checkpoint.md but the tokenizer's (CheckTokenizer).
func Load(dir string) (*Model, error) {
	cj, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	cfg, err := ParseConfig(cj)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.OpenFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWeights, err)
	}
	defer f.Close()
	return read(cfg, f)
}

// LoadBytes is Load of the two files' contents (for embedded models and the browser).
func LoadBytes(configJSON, weights []byte) (*Model, error) {
	cfg, err := ParseConfig(configJSON)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.OpenBytes(weights)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWeights, err)
	}
	return read(cfg, f)
}

func read(cfg *Config, f *safetensors.File) (*Model, error) {
	w := &Weights{}
	want := map[string]bool{}
	for _, t := range spec(cfg, w) {
		want[t.name] = true
		info, ok := f.Info(t.name)
		if !ok {
			return nil, fmt.Errorf("%w: tensor %q missing (config: %d layers, null row %v)", ErrWeights, t.name, cfg.Layers, cfg.HasNull())
		}
		if !shapeEq(info.Shape, t.shape) {
			return nil, fmt.Errorf("%w: tensor %q has shape %v, want %v", ErrWeights, t.name, info.Shape, t.shape)
		}
		if !info.DType.IsFloat() {
			return nil, fmt.Errorf("%w: tensor %q has dtype %s, want F32, F16 or BF16", ErrWeights, t.name, info.DType)
		}
		v, err := f.ReadFloat32(t.name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrWeights, err)
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: tensor %q: non-finite value %v at %d", ErrWeights, t.name, x, i)
			}
		}
		*t.dst = v
	}
	for _, n := range f.Names() {
		if !want[n] {
			return nil, fmt.Errorf("%w: unexpected tensor %q (config: %d layers, null row %v)", ErrWeights, n, cfg.Layers, cfg.HasNull())
		}
	}
	return &Model{Cfg: cfg, W: w}, nil
}

// New checks w's sizes against cfg and returns the model (for weights made in memory, e.g.
// RandomWeights).
func New(cfg *Config, w *Weights) (*Model, error) {
	if len(w.Layers) != cfg.Layers {
		return nil, fmt.Errorf("%w: %d layers of weights for n_layer %d", ErrWeights, len(w.Layers), cfg.Layers)
	}
	for _, t := range spec(cfg, w) {
		n := 1
		for _, s := range t.shape {
			n *= s
		}
		if len(*t.dst) != n {
			return nil, fmt.Errorf("%w: %q has %d values, want %v", ErrWeights, t.name, len(*t.dst), t.shape)
		}
	}
	return &Model{Cfg: cfg, W: w}, nil
}

// RandomWeights draws weights for cfg from a seeded generator (benchmarks, tests): norms near
// 1, embeddings N(0, 1), matrices N(0, 1/in).
func RandomWeights(cfg *Config, seed uint64) *Weights {
	w := &Weights{}
	r := newRNG(seed, 7)
	for _, t := range spec(cfg, w) {
		n := 1
		for _, s := range t.shape {
			n *= s
		}
		v := make([]float32, n)
		sc := 1.0
		if len(t.shape) == 2 && t.name != "tok_embeddings.weight" && t.name != "cls_embedding.embedding_table.weight" {
			sc = 1 / math.Sqrt(float64(t.shape[1]))
		}
		for i := range v {
			u := r.uniform()*2 - 1 // a cheap symmetric draw: uniform with the variance of N(0, sc²)
			v[i] = float32(u * sc * math.Sqrt(3))
			if len(t.shape) == 1 {
				v[i] = float32(1 + 0.1*u)
			}
		}
		*t.dst = v
	}
	return w
}

// CheckTokenizer refuses a tokenizer the model was not trained for (docs/ar-checkpoint.md rule
// 5): its content digest, FSQ levels or maximum token count differ from config.json's
// "tokenizer" (the name is not compared). tok is the tokenizer's identity as its payloads carry
// it (engine.Engine.Identity()).
func (m *Model) CheckTokenizer(tok payload.Model) error {
	t := &m.Cfg.Tokenizer
	if tok.Digest != t.Digest {
		return fmt.Errorf("%w: AR model trained for tokenizer sha256:%x, loaded tokenizer is sha256:%x (%s)", ErrTokenizer, t.Digest, tok.Digest, tok.Name)
	}
	if !shapeEq(tok.Levels, t.Levels) {
		return fmt.Errorf("%w: AR model trained for FSQ levels %v, loaded tokenizer has %v", ErrTokenizer, t.Levels, tok.Levels)
	}
	if tok.MaxTokens != t.Registers {
		return fmt.Errorf("%w: AR model trained for %d registers, loaded tokenizer has %d", ErrTokenizer, t.Registers, tok.MaxTokens)
	}
	return nil
}

// Net is the AR model bound to an executor's Linear layers L. The RMSNorm weights are folded
// into the columns of the Linear that follows each norm (RATIONALE: RMSNorm weights folded), so
// the op vocabulary's RMSNorm stays without affine parameters.
type Net[L any] struct {
	Cfg    *Config
	Blocks []NetBlock[L]
	Head   L
	Freqs  []float32
	Scale  float32
}

// NetBlock is one bound block.
type NetBlock[L any] struct {
	Name                string
	QKV, WO, W1, W3, W2 L
}

// Bind binds m's weights with bind(name, w [out, in], out, in) (Eager: nn.Pack; the recorder:
// onnx.NewRecLinear under name, the checkpoint's module name).
func Bind[L any](m *Model, bind func(name string, w []float32, out, in int) L) *Net[L] {
	c := m.Cfg
	d, hd := c.Dim, c.HeadDim()
	fold := func(w, g []float32, out int) []float32 {
		f := make([]float32, len(w))
		for o := 0; o < out; o++ {
			for i := 0; i < d; i++ {
				f[o*d+i] = w[o*d+i] * g[i]
			}
		}
		return f
	}
	n := &Net[L]{Cfg: c, Freqs: nn.RotaryFrequencies(hd, c.RopeBase), Scale: float32(1 / math.Sqrt(float64(hd)))}
	for i, l := range m.W.Layers {
		qkvOut := (c.Heads + 2*c.KVHeads) * hd
		p := fmt.Sprintf("layers.%d", i)
		n.Blocks = append(n.Blocks, NetBlock[L]{Name: p,
			QKV: bind(p+".attention.wqkv", fold(l.WQKV, l.AttnNorm, qkvOut), qkvOut, d), WO: bind(p+".attention.wo", l.WO, d, d),
			W1: bind(p+".feed_forward.w1", fold(l.W1, l.FFNNorm, c.FFNHidden), c.FFNHidden, d),
			W3: bind(p+".feed_forward.w3", fold(l.W3, l.FFNNorm, c.FFNHidden), c.FFNHidden, d),
			W2: bind(p+".feed_forward.w2", l.W2, d, c.FFNHidden)})
	}
	n.Head = bind("output", fold(m.W.Output, m.W.Norm, c.VocabSize), c.VocabSize, d)
	return n
}

// Exec is what the AR model needs of an executor: the ops, AttendCached and Rotary.
type Exec[T, L, C any] interface {
	nn.CachedOps[T, L, C]
	nn.RotaryOps[T, L]
}

// Forward is the AR model, written once against the op vocabulary: x holds the embeddings of
// one new position per sequence ([N, d], the residual stream, caller-owned, accumulated into),
// pos their rotary positions (-1 for the class position, token t at t), caches one KV cache per
// layer. It returns the logits [N, V] (valid until the executor's next pass).
func Forward[T, L, C any](ops Exec[T, L, C], n *Net[L], x, pos T, caches []C) (T, error) {
	c := n.Cfg
	H, Hkv, hd, eps := c.Heads, c.KVHeads, c.HeadDim(), float32(c.NormEps)
	for i := range n.Blocks {
		b := &n.Blocks[i]
		end, err := ops.Block(b.Name)
		if err != nil {
			return x, err
		}
		qkv := ops.Rotary(ops.Linear(ops.RMSNorm(x, eps), b.QKV), pos, H, Hkv, hd, n.Freqs)
		x = ops.Add(x, ops.Linear(ops.AttendCached(qkv, caches[i], H, hd, n.Scale), b.WO))
		end()
		if end, err = ops.Block(b.Name); err != nil {
			return x, err
		}
		h := ops.RMSNorm(x, eps)
		x = ops.Add(x, ops.Linear(ops.SwiGLU(ops.Linear(h, b.W1), ops.Linear(h, b.W3)), b.W2))
		end()
	}
	end, err := ops.Block("head")
	if err != nil {
		return x, err
	}
	defer end()
	return ops.Linear(ops.RMSNorm(x, eps), n.Head), nil
}
