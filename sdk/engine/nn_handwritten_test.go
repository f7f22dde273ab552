package engine

// The engine's hand-written trunk before sdk/nn (fc72d4f), kept in a test to compare with the
// trunk written once, in one process (TestTrunkMatchesHandWritten, BenchmarkTrunkVersusHandWritten).

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// block is one transformer block.
type oldBlock struct {
	qkv  linear  // (3W, W): wq, wk, wv stacked, so q, k and v are views of one [rows, 3W] product
	proj linear  // (W, W)
	fc1  linear  // (Hd, W)
	fc3  *linear // (Hd, W), gated MLP only
	fc2  linear  // (W, Hd)
	ada  *linear // (E·6W, W) adaLN modulation, decoder only
}

// trunk is a FlexTransformer.
type oldTrunk struct {
	cfg    model.TrunkConfig
	blocks []oldBlock
	scale  float32 // attention scale 8/head_dim (muP)
	eps    float32 // LayerNorm eps, also of the QK-norm
}

// oldTrunkBuffers is the scratch of one trunk pass.
type oldTrunkBuffers struct {
	h, qkv, y, a, c []float32
}

func oldGrow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// oldSeqLayout describes the batch of a trunk pass: n sequences of length L stacked as rows;
// the first prefix rows of each are the patch tokens (the visible prefix of the encoder's
// causal_last mask and the first sub-sequence of the decoder's adaLN packing).
type oldSeqLayout struct {
	n, L, prefix int
	mask         kernels.Mask
}

// forward runs every block over x [n·L, W] in place. mods holds each block's adaLN vector
// (nil for a plain trunk). ctx is checked before every block.
func (tr *oldTrunk) forward(ctx context.Context, o kernels.Opts, x []float32, s oldSeqLayout, mods [][]float32, buf *oldTrunkBuffers) error {
	W, Hd := tr.cfg.Width, tr.cfg.MLPHidden
	rows := s.n * s.L
	buf.h = oldGrow(buf.h, rows*W)
	buf.qkv = oldGrow(buf.qkv, rows*3*W)
	buf.y = oldGrow(buf.y, rows*W)
	buf.a = oldGrow(buf.a, rows*Hd)
	if tr.cfg.Gated {
		buf.c = oldGrow(buf.c, rows*Hd)
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
func (tr *oldTrunk) segments(s oldSeqLayout, fn func(row0, rows, part int)) {
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
func (tr *oldTrunk) modulate(o kernels.Opts, h, mod []float32, s oldSeqLayout, shift, scale int) {
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
func (tr *oldTrunk) residual(o kernels.Opts, x, y, mod []float32, s oldSeqLayout, gate int) {
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

// linear is the hand-written trunk's Linear layer.
type linear struct {
	w       *kernels.Weights // (out, in), packed
	b       []float32        // (out) or nil
	in, out int
}

func (l *linear) forward(o kernels.Opts, y, x []float32, rows int) {
	kernels.LinearPacked(o, y[:rows*l.out], x[:rows*l.in], l.w, l.b, rows)
}

// handWritten wraps the layers of a bound nn trunk in the old trunk's types.
func handWritten(tr *trunk) *oldTrunk {
	lin := func(l *nn.Linear) linear { return linear{w: l.W, b: l.B, in: l.In, out: l.Out} }
	old := &oldTrunk{cfg: tr.Cfg, scale: tr.Scale, eps: tr.Eps}
	for _, b := range tr.Blocks {
		ob := oldBlock{qkv: lin(b.QKV), proj: lin(b.Proj), fc1: lin(b.FC1), fc2: lin(b.FC2)}
		if tr.Cfg.Gated {
			f := lin(b.FC3)
			ob.fc3 = &f
		}
		if tr.Cfg.AdaLNExpansion > 0 {
			a := lin(b.AdaLN)
			ob.ada = &a
		}
		old.blocks = append(old.blocks, ob)
	}
	return old
}

// trunkPair runs the d12 decoder trunk of d on two items (cond + uncond of one 256 px image),
// the old way and the new way, on the same input.
type trunkPair struct {
	d      *Decoder
	o      kernels.Opts
	x0     []float32
	mods   [][]float32
	modsT  []nn.Tensor
	n, L   int
	P      int
	causal bool
}

func newTrunkPair(d *Decoder, o kernels.Opts) *trunkPair {
	W := d.cfg.Trunk.Width
	p := &trunkPair{d: d, o: o, n: 2, P: 256, L: 512, causal: d.cfg.MaskMode == "causal_last"}
	r := rand.New(rand.NewPCG(1, 2))
	p.x0 = make([]float32, p.n*p.L*W)
	for i := range p.x0 {
		p.x0[i] = float32(r.NormFloat64())
	}
	tc := d.timeCond(0.5)
	p.modsT = tc.blocks
	for _, m := range tc.blocks {
		p.mods = append(p.mods, m.Data)
	}
	return p
}

func (p *trunkPair) old(x []float32) {
	copy(x, p.x0)
	s := oldSeqLayout{n: p.n, L: p.L, prefix: p.P}
	if p.causal {
		s.mask = kernels.Mask{Kind: kernels.MaskPrefixCausal, Prefix: p.P}
	}
	var buf oldTrunkBuffers
	if err := handWritten(p.d.trunk).forward(context.Background(), p.o, x, s, p.mods, &buf); err != nil {
		panic(err)
	}
}

func (p *trunkPair) new(x []float32) {
	copy(x, p.x0)
	e := getEager(context.Background(), p.o)
	defer putEager(e)
	s := nn.Seq[nn.Tensor]{L: p.L, Prefix: p.P, Causal: p.causal}
	if err := runTrunk(context.Background(), e, p.d.trunk, x, s, p.modsT); err != nil {
		panic(err)
	}
}

// TestTrunkMatchesHandWritten: the trunk written once gives the bits of the hand-written one
// on the portable path (a small random decoder: the d12 benchmark below checks the fast one).
func TestTrunkMatchesHandWritten(t *testing.T) {
	m, err := model.LoadFile("../../conformance/testdata/official/c4_w32_nulltok_e2")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Weights.Close()
	for _, fast := range []bool{false, true} {
		d, err := NewDecoder(m, Options{Threads: 2, Fast: fast})
		if err != nil {
			t.Fatal(err)
		}
		p := newTrunkPair(d, Options{Threads: 2, Fast: fast}.kernels())
		p.P, p.L = 16, 48
		p.x0 = p.x0[:p.n*p.L*d.cfg.Trunk.Width]
		a, b := make([]float32, len(p.x0)), make([]float32, len(p.x0))
		p.old(a)
		p.new(b)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("fast=%v: element %d: hand-written %v, nn %v", fast, i, a[i], b[i])
			}
		}
	}
}

// BenchmarkTrunkVersusHandWritten times the d12 decoder trunk (2 items of 512 tokens, fast
// path, 2 threads) the old way and the new way alternately in one process, so that a shared
// machine's load hits both alike; it reports each one's median, the ratio of the medians and
// the median of the per-iteration ratios. d12Decoder makes the weights (no checkpoint needed):
//
//	go test ./sdk/engine -run '^$' -bench TrunkVersusHandWritten -benchtime 30x
func BenchmarkTrunkVersusHandWritten(b *testing.B) {
	d := d12Decoder(b, Options{Threads: 2, Fast: true})
	p := newTrunkPair(d, Options{Threads: 2, Fast: true}.kernels())
	x := make([]float32, len(p.x0))
	p.old(x)
	p.new(x)
	var to, tn []float64
	b.ResetTimer()
	timed := func(f func([]float32)) float64 {
		t0 := time.Now()
		f(x)
		return time.Since(t0).Seconds()
	}
	for i := 0; i < b.N; i++ { // alternate which runs first
		if i%2 == 0 {
			to = append(to, timed(p.old))
			tn = append(tn, timed(p.new))
		} else {
			tn = append(tn, timed(p.new))
			to = append(to, timed(p.old))
		}
	}
	b.StopTimer()
	mo, mn := median(to), median(tn)
	b.ReportMetric(mo*1e3, "old-ms")
	b.ReportMetric(mn*1e3, "new-ms")
	b.ReportMetric(mn/mo, "new/old")
	ratios := make([]float64, len(to))
	for i := range to {
		ratios[i] = tn[i] / to[i]
	}
	b.ReportMetric(median(ratios), "paired-new/old")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
