package engine

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// Decoder is the FlexTok rectified-flow decoder: the velocity network v(x_t, t, tokens).
// It holds its weights (read once by NewDecoder) and is safe for concurrent use. Bind attaches
// token sequences to it and gives a flow.Denoiser for flow.Sample.
//
// One forward pass, per image: the register sequence (from Bind) follows the patch tokens of
// the noisy latent x_t [C, h, w] (ph×pw patches, channels last, Linear(ph·pw·C → W) plus the
// checkpoint's sin-cos table); the adaLN trunk runs with full attention (or the config's
// causal_last mask); the patch tokens go through LayerNorm, the head's optional adaLN
// modulation and Linear(W → C·ph·pw), and are unpatchified to the velocity [C, h, w].
//
// # Time conditioning is precomputed
//
// The time embedding and every adaLN modulation depend on t only, and the sampler uses a
// fixed schedule, so the Decoder computes them once per distinct t (bit pattern of the
// float32) and caches them: temb = TimestepEmbedder(t), each block's Linear(SiLU(temb)) of
// E·6W values and the head's Linear(SiLU(temb)) of 2W values. Later calls at the same t cost
// one map lookup. The cache holds at most maxTimeCache times (then it is emptied and refilled);
// a sampler with T steps uses T entries.
//
// # Batching
//
// One Velocity call runs every item it gets (the conditional and unconditional evaluation of
// every image of a step) through each Linear layer as one matrix product, rows = items ×
// tokens; attention runs per item. Items are independent, exactly as in the official
// block-diagonal packing, so batching changes no value.
type Decoder struct {
	cfg  model.DecoderConfig
	opts Options
	nReg int // registers per image: the encoder's n_max, the detokenize padding length
	fsq  *fsq.Quantizer

	regs  *nn.RegisterEmbed[*nn.Linear] // Linear (W, D) of the FSQ codes, register table, mask token
	null  []float32                     // (W) LearnedNullCond vector, zeros for ZeroNullCond
	patch *nn.PatchEmbed[*nn.Linear]    // (W, ph·pw·C) with bias; sin-cos table (W, S_h, S_w)
	temb  *nn.TimeEmbedder[*nn.Linear]
	trunk *trunk
	head  *nn.Head[*nn.Linear] // (C·ph·pw, W) with bias, adaLN (2W, W) when configured

	mu    sync.Mutex
	cache map[uint32]*timeCond
}

// maxTimeCache bounds the per-t cache of Decoder (entries of depth·E·6W + 3W floats).
const maxTimeCache = 64

// timeCond is everything that depends on t alone.
type timeCond struct {
	temb   []float32   // (W) time embedding
	blocks []nn.Tensor // per block [1, E·6W]: adaLN modulation
	head   nn.Tensor   // [1, 2W] head shift, scale; empty without head adaLN
}

// NewDecoder reads the decoder's weights from m (once; the Decoder keeps float32 copies packed
// for o's path). A missing or misshaped tensor is an error naming every such tensor.
func NewDecoder(m *model.Model, o Options) (*Decoder, error) {
	if m == nil || m.Config == nil {
		return nil, fmt.Errorf("flextok/engine: NewDecoder: nil model")
	}
	return newDecoder(m.Config, m, o)
}

func newDecoder(cfg *model.Config, src model.TensorSource, o Options) (*Decoder, error) {
	d := cfg.Decoder
	W := d.Trunk.Width
	R := cfg.Encoder.RegistersNMax
	if err := d.Supported(R); err != nil {
		return nil, fmt.Errorf("flextok/engine: %w", err)
	}
	if err := o.Precision.check(); err != nil {
		return nil, err
	}
	fq, err := fsq.New(cfg.FSQ.Levels)
	if err != nil {
		return nil, fmt.Errorf("flextok/engine: decoder FSQ: %w", err)
	}
	if fq.Dim() != d.LatentDim {
		return nil, fmt.Errorf("flextok/engine: decoder reads %d dims, FSQ has %d levels", d.LatentDim, fq.Dim())
	}
	ko := o.kernels()
	r := newWeightReader(cfg, "decoder", src)
	mod := func(class string) string { return r.Module(model.DecoderPrefix, d.Modules, class) }

	ps := d.PatchSize[0] * d.PatchSize[1]
	dec := &Decoder{cfg: d, opts: o, nReg: R, fsq: fq, cache: map[uint32]*timeCond{}}
	Rmax := d.RegisterPosemb.MaxSizes[0]
	rtab := r.Tensor(model.DecoderPrefix+d.RegisterPosemb.Module+sufPosembs, W*Rmax)
	dec.regs = nn.NewRegisterEmbed(r.binder(ko), mod("LinearLayer"), d.LatentDim, W, rtab, Rmax, R, r.Tensor(mod("MaskedNestedDropout")+sufMaskToken, W))
	dec.null = make([]float32, W)
	if d.NullCond == model.NullCondLearned {
		dec.null = r.Tensor(mod("LearnedNullCond")+sufNullCond, W)
	}
	sh, sw := d.PatchPosemb.MaxSizes[0], d.PatchPosemb.MaxSizes[1]
	table := r.Tensor(model.DecoderPrefix+d.PatchPosemb.Module+sufPosembs, W*sh*sw)
	dec.patch = nn.NewPatchEmbed(r.binder(ko), mod("PatchEmbedder"), ps*d.ChannelsIn, W, table, sh, sw)
	te := mod("TimestepEmbedder")
	tko := ko
	tko.BF16 = false // the time embedding stays float32 (computed once per step and cached)
	dec.temb = nn.NewTimeEmbedder(r.binder(tko), te, d.FreqEmbSize, W, d.MaxTimestep)
	trunkMod := mod("FlexTransformer")
	dec.trunk = readTrunk(r, ko, model.DecoderPrefix, trunkMod[len(model.DecoderPrefix):], d.Trunk)
	head := mod("ToPatchesLinearHead")
	dec.head = nn.NewHead(r.binder(ko), head, W, ps*d.ChannelsOut, d.HeadNormEps, d.HeadAdaLN)
	if err := r.err(); err != nil {
		return nil, err
	}
	return dec, nil
}

// Registers is the number of register tokens per image (the maximum token sequence length).
func (d *Decoder) Registers() int { return d.nReg }

// uncondRegisters is the length of the unconditional register sequence: 1 for a
// LearnedNullCond with replace_with_single_token, else the registers of an image.
func (d *Decoder) uncondRegisters() int {
	if d.cfg.NullCondSingle {
		return 1
	}
	return d.nReg
}

// Flops is the number of floating-point operations (2 per multiply-add) of one velocity
// evaluation of n items of h×w latents: matrix products and attention, without the per-t
// work that is cached.
func (d *Decoder) Flops(n, h, w int) float64 {
	P := (h / d.cfg.PatchSize[0]) * (w / d.cfg.PatchSize[1])
	W := float64(d.cfg.Trunk.Width)
	io := 2 * float64(n*P) * W * float64(d.cfg.PatchSize[0]*d.cfg.PatchSize[1]*(d.cfg.ChannelsIn+d.cfg.ChannelsOut))
	return nn.Flops(d.cfg.Trunk, n, P+d.nReg) + io
}

// timeCond returns the cached conditioning for t, computing it on first use.
func (d *Decoder) timeCond(t float32) *timeCond {
	key := math.Float32bits(t)
	d.mu.Lock()
	tc := d.cache[key]
	d.mu.Unlock()
	if tc != nil {
		return tc
	}
	o := d.opts.kernels()
	e := nn.NewEager(context.Background(), nnOpts(o))
	temb := nn.TimeEmbed(e, d.temb, nn.NewTensor([]float32{t}, 1, 1))
	tc = &timeCond{temb: append([]float32(nil), temb.Data...)}
	stemb := e.SiLU(temb)
	tc.blocks = nn.Modulation(e, d.trunk, stemb)
	if d.head.HasAdaLN {
		tc.head = nn.HeadModulation(e, d.head, stemb)
	}
	d.mu.Lock()
	if len(d.cache) >= maxTimeCache {
		clear(d.cache)
	}
	d.cache[key] = tc
	d.mu.Unlock()
	return tc
}

// Conditioned is a Decoder bound to the token sequences of a batch of images: a flow.Denoiser
// whose Item.Image indexes those sequences. It is immutable and safe for concurrent use.
type Conditioned struct {
	d    *Decoder
	cond [][]float32 // per image (R, W): the conditional register sequence
	// uncond is the null condition, the same for every image: (R, W), or (1, W) for a
	// LearnedNullCond with replace_with_single_token, whose unconditional sequence is the
	// patches and that one token.
	uncond []float32
}

var _ flow.Denoiser = (*Conditioned)(nil)

// Bind prepares the register sequences of a batch of images from their token ids, as the
// official detokenize does: ids[i] (at most R ids, each below the codebook size) is
// right-padded with id 0 to R, turned into FSQ codes, Linear(D → W), plus the register
// positional embedding; every position >= k[i] is then replaced by the mask token. k nil means
// k[i] = len(ids[i]); otherwise each k[i] must be in [1, R] (a k larger than len(ids[i]) keeps
// padding ids visible, as the official decoder would). The unconditional sequence (flow.Item
// with Uncond) is all zeros (ZeroNullCond), the learned null vector at every position
// (LearnedNullCond), or that vector as the one register token (replace_with_single_token).
func (d *Decoder) Bind(ids [][]uint32, k []int) (*Conditioned, error) {
	return d.bind(ids, k, nil)
}

func (d *Decoder) bind(ids [][]uint32, k []int, tr tracer) (*Conditioned, error) {
	R, W, D := d.nReg, d.cfg.Trunk.Width, d.cfg.LatentDim
	keep, err := CheckTokens(ids, k, R, d.fsq.CodebookSize())
	if err != nil {
		return nil, fmt.Errorf("flextok/engine: Bind: %w", err)
	}
	o := d.opts.kernels()
	B := len(ids)
	padded := make([]uint32, B*R)
	for i, s := range ids {
		copy(padded[i*R:], s) // the rest stays id 0, the official padding
	}
	codes := make([]float32, B*R*D)
	if err := d.fsq.IndicesToCodes(codes, padded); err != nil {
		return nil, fmt.Errorf("flextok/engine: Bind: %w", err)
	}
	e := nn.NewEager(context.Background(), nnOpts(o)) // not pooled: the registers stay bound
	regs := nn.EmbedRegisters(e, d.regs, nn.NewTensor(codes, B*R, D))
	tr.emit("dec_registers_posemb", regs.Data)
	kept := make([]float32, B)
	for i, k := range keep {
		kept[i] = float32(k)
	}
	regs = nn.MaskRegisters(e, d.regs, regs, nn.NewTensor(kept, B, 1), R)
	tr.emit("dec_registers_in", regs.Data)
	c := &Conditioned{d: d, cond: make([][]float32, B)}
	for i := 0; i < B; i++ {
		c.cond[i] = regs.Data[i*R*W : (i+1)*R*W]
	}
	U := d.uncondRegisters()
	c.uncond = nn.NullCondition(e, d.null, nn.NewTensor(make([]float32, U*W), U, W), nn.NewTensor([]float32{0}, 1, 1), U).Data
	return c, nil
}

// Images is the number of bound token sequences.
func (c *Conditioned) Images() int { return len(c.cond) }

// Velocity implements flow.Denoiser: it writes v(x_t, t) of every item, conditional or
// unconditional, into its V. Items of one latent size run as one batch (see Decoder).
// t must be in [0, max_timestep], as the official TimestepEmbedder asserts.
func (c *Conditioned) Velocity(ctx context.Context, t float32, batch []flow.Item) error {
	return c.velocity(ctx, t, batch, nil)
}

func (c *Conditioned) velocity(ctx context.Context, t float32, batch []flow.Item, tr tracer) error {
	d := c.d
	if err := CheckTime(t, d.cfg.MaxTimestep); err != nil {
		return fmt.Errorf("flextok/engine: Velocity: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Items run in groups of one sequence layout: latent size and register count (the
	// single-token null condition makes unconditional sequences shorter).
	type grid struct{ h, w, regs int }
	var order []grid
	groups := map[grid][]int{}
	for i := range batch {
		it := &batch[i]
		h, w, err := d.checkItem(it, len(c.cond))
		if err != nil {
			return fmt.Errorf("flextok/engine: Velocity: item %d: %w", i, err)
		}
		if len(it.V.Data) != len(it.X.Data) {
			it.V.Data = make([]float32, len(it.X.Data))
		}
		if it.V.Shape == nil {
			it.V.Shape = append([]int(nil), it.X.Shape...)
		}
		g := grid{h, w, d.nReg}
		if it.Uncond {
			g.regs = d.uncondRegisters()
		}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], i)
	}
	tc := d.timeCond(t)
	tr.emit("dec_temb", tc.temb)
	o := d.opts.kernels()
	for _, g := range order {
		idx := groups[g]
		if parts := itemParts(o.Threads, len(idx), d.Flops(1, g.h, g.w)); parts > 1 && tr == nil {
			if err := c.forwardParts(ctx, tc, batch, idx, g.h, g.w, g.regs, parts); err != nil {
				return err
			}
			continue
		}
		if err := c.forward(ctx, o, tc, batch, idx, g.h, g.w, g.regs, tr); err != nil {
			return err
		}
	}
	return nil
}

// forwardParts runs the items idx in parts contiguous groups, each on its own goroutine with
// one kernel thread. Every item's result is that of any other grouping, bit for bit: no
// kernel mixes the rows of two items.
func (c *Conditioned) forwardParts(ctx context.Context, tc *timeCond, batch []flow.Item, idx []int, h, w, regs, parts int) error {
	o := c.d.opts.kernels()
	o.Threads = 1
	return inParts(len(idx), parts, func(lo, hi int) error {
		return c.forward(ctx, o, tc, batch, idx[lo:hi], h, w, regs, nil)
	})
}

// checkItem validates one item's image index and latent shape and returns h, w.
func (d *Decoder) checkItem(it *flow.Item, images int) (h, w int, err error) {
	cfg := d.cfg
	if h, w, err = CheckItem(it, images, cfg.ChannelsIn); err != nil {
		return 0, 0, err
	}
	ph, pw := cfg.PatchSize[0], cfg.PatchSize[1]
	if h%ph != 0 || w%pw != 0 {
		return 0, 0, fmt.Errorf("x_t %dx%d is not a multiple of the patch size %dx%d", h, w, ph, pw)
	}
	if h/ph > cfg.PatchPosemb.MaxSizes[0] || w/pw > cfg.PatchPosemb.MaxSizes[1] {
		return 0, 0, fmt.Errorf("patch grid %dx%d exceeds the positional table %dx%d", h/ph, w/pw, cfg.PatchPosemb.MaxSizes[0], cfg.PatchPosemb.MaxSizes[1])
	}
	return h, w, nil
}

// forward runs the items idx of batch, all of latent size h×w and with R register tokens, as
// one batch.
func (c *Conditioned) forward(ctx context.Context, o kernels.Opts, tc *timeCond, batch []flow.Item, idx []int, h, w, R int, tr tracer) error {
	d := c.d
	cfg := d.cfg
	W, C := cfg.Trunk.Width, cfg.ChannelsIn
	ph, pw := cfg.PatchSize[0], cfg.PatchSize[1]
	nh, nw := h/ph, w/pw
	P, L, n := nh*nw, nh*nw+R, len(idx)
	pd := ph * pw * C

	// Patch embedding of every item in one product; sequences [patches, registers].
	pt := make([]float32, n*P*pd)
	for q, i := range idx {
		patchify(pt[q*P*pd:], batch[i].X.Data, C, h, w, ph, pw)
	}
	e := getEager(ctx, o)
	defer putEager(e)
	emb := nn.EmbedPatches(e, d.patch, nn.NewTensor(pt, n*P, pd), nh, nw).Data
	x := make([]float32, n*L*W)
	for q, i := range idx {
		seq := x[q*L*W:]
		copy(seq[:P*W], emb[q*P*W:(q+1)*P*W])
		regs := c.cond[batch[i].Image]
		if batch[i].Uncond {
			regs = c.uncond
		}
		copy(seq[P*W:L*W], regs)
	}
	if tr != nil {
		tr.emit("dec_patches_in", gatherRows(x, n, L, 0, P, W))
	}

	s := nn.Seq[nn.Tensor]{L: L, Prefix: P, Causal: cfg.MaskMode == "causal_last"}
	if err := runTrunk(ctx, e, d.trunk, x, s, tc.blocks); err != nil {
		return err
	}

	// Head on the patch tokens: LayerNorm, adaLN (shift, scale), Linear(W → C·ph·pw).
	pat := gatherRows(x, n, L, 0, P, W)
	tr.emit("dec_trunk_patches", pat)
	out := nn.HeadForward(e, d.head, nn.NewTensor(pat, n*P, W), tc.head, nn.Seq[nn.Tensor]{L: P, Prefix: P}).Data
	for q, i := range idx {
		unpatchify(batch[i].V.Data, out[q*P*pd:(q+1)*P*pd], C, h, w, ph, pw)
	}
	return nil
}

// gatherRows copies rows [r0, r0+rows) of each of the n sequences of length L of x (width W).
func gatherRows(x []float32, n, L, r0, rows, W int) []float32 {
	out := make([]float32, 0, n*rows*W)
	for q := 0; q < n; q++ {
		out = append(out, x[(q*L+r0)*W:(q*L+r0+rows)*W]...)
	}
	return out
}
