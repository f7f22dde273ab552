package engine

import (
	"context"
	"fmt"
	"image"
	"sync"
	"time"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// This file is the executor of exported graphs: the decoder (velocity) graph and the VAE
// decoder graph of native/onnx run somewhere else (ONNX Runtime natively, onnxruntime-web in a
// browser), behind the Graphs interface, while the sampler, noise, guidance, payload checks and
// hints stay here. Package native's Backend binds its decoder session through GraphDenoiser,
// and GraphExecutor is a whole decode-only Executor over any Graphs (the GOOS=js module's web
// models), so the feed layout and its checks are written once.

// GraphSizes are the fixed sizes of exported graphs (native/onnx.Sizes without the export
// settings): image pixels, latent channels and grid, and registers per image.
type GraphSizes struct {
	Height, Width int // image size in pixels
	C, H, W       int // latent channels, height, width
	R             int // registers (tokens) per image
}

func (s GraphSizes) check() error {
	if s.Height < 1 || s.Width < 1 || s.C < 1 || s.H < 1 || s.W < 1 || s.R < 1 {
		return fmt.Errorf("%w: graph sizes %+v: every size must be >= 1", ErrArgument, s)
	}
	return nil
}

// VelocityFeed is the input of one run of the decoder graph over N items (the conditional
// and unconditional items of every image of a sampler step), in the graph's layout:
//
//	X   [N, C, H, W] float32  x_t
//	T   [N] float32           t (the same for every item)
//	IDs [N, R] int64          the image's token ids, right-padded with id 0
//	K   [N] int64             the prefix length; 0 asks for the unconditional velocity
//
// The graph answers v [N, C, H, W] float32.
type VelocityFeed struct {
	N   int
	X   []float32
	T   []float32
	IDs []int64
	K   []int64
}

// Graphs runs the two networks of a decode. Velocity returns v [N, C, H, W] (N·C·H·W values,
// which GraphDenoiser copies out before the next call, so an implementation may reuse its
// buffer); DecodeLatents turns scaled latents [B, C, H, W] into images [B, 3, Height, Width].
// Implementations need not be safe for concurrent use: a GraphExecutor calls them one at a
// time.
type Graphs interface {
	Velocity(ctx context.Context, f *VelocityFeed) ([]float32, error)
	DecodeLatents(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error)
}

// GraphDenoiser is a decoder graph bound to the token sequences of a batch of images: a
// flow.Denoiser whose every Velocity call is ONE run of the graph over all its items,
// conditional and unconditional together (the feed is built here and the output scattered
// back into the items). It reuses its feed buffers between calls, so it is not safe for
// concurrent use (the sampler calls it once per step).
type GraphDenoiser struct {
	s      GraphSizes
	maxT   float64
	prefix string    // error prefix, "flextok/native: Velocity"
	ids    [][]int64 // per image: R ids, right-padded with 0
	k      []int64   // per image: the prefix length
	run    func(context.Context, *VelocityFeed) ([]float32, error)
	feed   VelocityFeed
}

var _ flow.Denoiser = (*GraphDenoiser)(nil)

// BindGraph prepares token sequences for sampling with the decoder graph run, with the rules
// of Decoder.Bind (CheckTokens: at most s.R ids each, below codebook; k nil means every
// sequence's length, otherwise k[i] in [1, s.R]). maxTimestep bounds the t of Velocity
// (CheckTime); pkg prefixes the errors ("flextok/native").
func BindGraph(pkg string, s GraphSizes, codebook int, maxTimestep float64, ids [][]uint32, k []int,
	run func(context.Context, *VelocityFeed) ([]float32, error)) (*GraphDenoiser, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: Bind: %w", pkg, err)
	}
	if run == nil {
		return nil, fmt.Errorf("%s: Bind: nil graph run", pkg)
	}
	keep, err := CheckTokens(ids, k, s.R, codebook)
	if err != nil {
		return nil, fmt.Errorf("%s: Bind: %w", pkg, err)
	}
	g := &GraphDenoiser{s: s, maxT: maxTimestep, prefix: pkg + ": Velocity", run: run,
		ids: make([][]int64, len(ids)), k: make([]int64, len(ids))}
	for i, seq := range ids {
		g.ids[i] = make([]int64, s.R) // the rest stays id 0, the official padding
		for j, id := range seq {
			g.ids[i][j] = int64(id)
		}
		g.k[i] = int64(keep[i])
	}
	return g, nil
}

// Images is the number of bound token sequences.
func (g *GraphDenoiser) Images() int { return len(g.ids) }

// Velocity implements flow.Denoiser: one run of the velocity graph over every item.
func (g *GraphDenoiser) Velocity(ctx context.Context, t float32, batch []flow.Item) error {
	s := g.s
	if err := CheckTime(t, g.maxT); err != nil {
		return fmt.Errorf("%s: %w", g.prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	per := s.C * s.H * s.W
	n := len(batch)
	f := &g.feed
	f.N = n
	f.X = grow(f.X, n*per)
	f.T = grow(f.T, n)
	f.IDs = grow(f.IDs, n*s.R)
	f.K = grow(f.K, n)
	for i := range batch {
		it := &batch[i]
		if h, w, err := CheckItem(it, len(g.ids), s.C); err != nil {
			return fmt.Errorf("%s: item %d: %w", g.prefix, i, err)
		} else if h != s.H || w != s.W {
			return fmt.Errorf("%s: item %d: x_t shape %v, want [%d, %d, %d]", g.prefix, i, it.X.Shape, s.C, s.H, s.W)
		}
		copy(f.X[i*per:], it.X.Data)
		f.T[i] = t
		copy(f.IDs[i*s.R:], g.ids[it.Image])
		f.K[i] = 0 // the null condition
		if !it.Uncond {
			f.K[i] = g.k[it.Image]
		}
	}
	v, err := g.run(ctx, f)
	if err != nil {
		return err
	}
	if len(v) != n*per {
		return fmt.Errorf("%s: %w: the graph gave %d values for %d items of %d", g.prefix, ErrGraphMismatch, len(v), n, per)
	}
	for i := range batch {
		it := &batch[i]
		if len(it.V.Data) != per {
			it.V.Data = make([]float32, per)
		}
		if it.V.Shape == nil {
			it.V.Shape = []int{s.C, s.H, s.W}
		}
		copy(it.V.Data, v[i*per:(i+1)*per])
	}
	return nil
}

// grow returns b resized to n values, reusing its array when it is large enough.
func grow[T any](b []T, n int) []T {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]T, n)
}

// GraphModel describes the model whose graphs a GraphExecutor runs: what payloads carry and
// check (Identity), the decode hints (nil: none), the graphs' sizes and the decoder's maximum
// timestep (0: 1, the sampler's range).
type GraphModel struct {
	Identity    Identity
	Hints       *payload.Hints
	Sizes       GraphSizes
	MaxTimestep float64
}

// GraphExecutor is a decode-only Executor over a model's exported graphs run by a Graphs
// (onnxruntime-web in the GOOS=js module): payload checks, hints, noise, the flow sampler and
// guidance are this package's, as for an Engine, so its images are the Engine's up to the
// Graphs' float rounding. It decodes at the graphs' size only and does not encode (no encoder
// graph: ErrUnsupported). Calls run one at a time (a mutex), since Graphs need not be safe
// for concurrent use.
type GraphExecutor struct {
	m      GraphModel
	fsq    *fsq.Quantizer
	graphs Graphs
	lock   chan struct{} // a mutex that a canceled context can stop waiting for
	close  func() error
	once   sync.Once
	err    error
}

var _ Executor = (*GraphExecutor)(nil)

// NewGraphExecutor returns the executor of m's graphs run by g. closeFn, if not nil, is
// called once by Close (releasing the graphs' sessions).
func NewGraphExecutor(m GraphModel, g Graphs, closeFn func() error) (*GraphExecutor, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil Graphs", ErrArgument)
	}
	if err := m.Sizes.check(); err != nil {
		return nil, err
	}
	q, err := fsq.New(m.Identity.Levels)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrArgument, err)
	}
	if m.Identity.MaxTokens != m.Sizes.R {
		return nil, fmt.Errorf("%w: the identity has %d tokens, the graphs %d registers", ErrArgument, m.Identity.MaxTokens, m.Sizes.R)
	}
	if m.MaxTimestep == 0 {
		m.MaxTimestep = 1
	}
	if !(m.MaxTimestep > 0) {
		return nil, fmt.Errorf("%w: max timestep %v", ErrArgument, m.MaxTimestep)
	}
	m.Identity.Levels = append([]int(nil), m.Identity.Levels...)
	return &GraphExecutor{m: m, fsq: q, graphs: g, lock: make(chan struct{}, 1), close: closeFn}, nil
}

// Identity is the model identity of the graphs (GraphModel.Identity).
func (x *GraphExecutor) Identity() payload.Model {
	id := x.m.Identity.Model
	id.Levels = append([]int(nil), id.Levels...)
	return id
}

// Accepts reports whether payloads made by model p decode here (Identity.Accepts).
func (x *GraphExecutor) Accepts(p *payload.Model) bool { return x.m.Identity.Accepts(p) }

// Hints are the model's decode hints (nil: none).
func (x *GraphExecutor) Hints() *payload.Hints { return x.m.Hints }

// ImageSize is the size the graphs were exported for, the only one this executor decodes at.
func (x *GraphExecutor) ImageSize() (int, int) { return x.m.Sizes.Height, x.m.Sizes.Width }

// MaxTokens is the number of tokens per image.
func (x *GraphExecutor) MaxTokens() int { return x.m.Sizes.R }

// DefaultDecodeOptions returns HintedDecodeOptions of p and the model's hints.
func (x *GraphExecutor) DefaultDecodeOptions(p *payload.Payload) DecodeOptions {
	return HintedDecodeOptions(p, x.m.Hints)
}

// errNoEncoder is the error of every encode: a web model package has no encoder graph.
var errNoEncoder = fmt.Errorf("%w: this model decodes only (its graphs have no encoder)", ErrUnsupported)

// Encode fails: the graphs have no encoder.
func (x *GraphExecutor) Encode(context.Context, image.Image, EncodeOptions) (*payload.Payload, error) {
	return nil, errNoEncoder
}

// EncodeBatch fails: the graphs have no encoder.
func (x *GraphExecutor) EncodeBatch(context.Context, []image.Image, EncodeOptions) ([]*payload.Payload, error) {
	return nil, errNoEncoder
}

// Decode turns a payload (or its first K tokens) into an image tensor [3, H, W], unclamped,
// as Engine.Decode with the networks run by the Graphs.
func (x *GraphExecutor) Decode(ctx context.Context, p *payload.Payload, o DecodeOptions) (tensor.Tensor, error) {
	imgs, err := x.DecodeBatch(ctx, []*payload.Payload{p}, o)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return imgs[0], nil
}

// DecodeBatch decodes several payloads in one sampler run (DecodePayloads): every sampler step
// is one Graphs.Velocity call over the conditional and unconditional items of all images, and
// the VAE decodes them in one Graphs.DecodeLatents call.
func (x *GraphExecutor) DecodeBatch(ctx context.Context, ps []*payload.Payload, o DecodeOptions) ([]tensor.Tensor, error) {
	select {
	case x.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-x.lock }()
	return DecodePayloads(ctx, ps, o, x.m.Identity, x.m.Hints, x.latent, x.bind, x.decodeLatents)
}

func (x *GraphExecutor) bind(ids [][]uint32) (flow.Denoiser, error) {
	return BindGraph("flextok/engine", x.m.Sizes, x.fsq.CodebookSize(), x.m.MaxTimestep, ids, nil, x.velocity)
}

// GraphTimings accumulate the time a GraphExecutor's decodes spend in its Graphs' calls (the
// networks; the rest of a decode is the sampler, the checks and the copies), for the decodes
// whose context carries them (WithGraphTimings). Not safe for concurrent decodes.
type GraphTimings struct {
	Velocity      time.Duration // in Graphs.Velocity, all calls
	VelocityCalls int           // calls: one per sampler step
	VAE           time.Duration // in Graphs.DecodeLatents
}

type timingsKey struct{}

// WithGraphTimings returns ctx carrying t: a GraphExecutor's decodes under it add their graph
// times to t.
func WithGraphTimings(ctx context.Context, t *GraphTimings) context.Context {
	return context.WithValue(ctx, timingsKey{}, t)
}

func graphTimings(ctx context.Context) *GraphTimings {
	t, _ := ctx.Value(timingsKey{}).(*GraphTimings)
	return t
}

// velocity is one Graphs.Velocity call, timed.
func (x *GraphExecutor) velocity(ctx context.Context, f *VelocityFeed) ([]float32, error) {
	t0 := time.Now()
	v, err := x.graphs.Velocity(ctx, f)
	if t := graphTimings(ctx); t != nil {
		t.Velocity += time.Since(t0)
		t.VelocityCalls++
	}
	return v, err
}

// decodeLatents runs the VAE graph (timed) and checks the shape of what it gives.
func (x *GraphExecutor) decodeLatents(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
	s := x.m.Sizes
	n := latents.Shape[0]
	t0 := time.Now()
	img, err := x.graphs.DecodeLatents(ctx, latents)
	if t := graphTimings(ctx); t != nil {
		t.VAE += time.Since(t0)
	}
	if err != nil {
		return tensor.Tensor{}, err
	}
	if want := []int{n, 3, s.Height, s.Width}; img.Check() != nil || !tensor.SameShape(img, tensor.Tensor{Shape: want}) {
		return tensor.Tensor{}, fmt.Errorf("%w: the VAE graph gave shape %v with %d values, want %v", ErrGraphMismatch, img.Shape, len(img.Data), want)
	}
	return img, nil
}

// latent is the executor's LatentFunc: only the graphs' size.
func (x *GraphExecutor) latent(height, width int) ([]int, error) {
	s := x.m.Sizes
	if height == 0 && width == 0 {
		height, width = s.Height, s.Width
	}
	if height != s.Height || width != s.Width {
		return nil, fmt.Errorf("image size %dx%d, but the graphs were exported for %dx%d", height, width, s.Height, s.Width)
	}
	return []int{s.C, s.H, s.W}, nil
}

// DecodeImage is Decode followed by the conversion to 8-bit RGB.
func (x *GraphExecutor) DecodeImage(ctx context.Context, p *payload.Payload, o DecodeOptions) (*image.NRGBA, error) {
	t, err := x.Decode(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return ftimage.FromTensor(t)
}

// Close calls the close function given to NewGraphExecutor, once; it is idempotent.
func (x *GraphExecutor) Close() error {
	x.once.Do(func() {
		if x.close != nil {
			x.err = x.close()
		}
	})
	return x.err
}

// Graphs returns the engine's own networks behind the Graphs interface, at its default image
// size: the reference that other Graphs (ONNX Runtime, onnxruntime-web) are checked against,
// and what tests of GraphExecutor run natively. A GraphExecutor over them decodes exactly as
// the engine does (the same kernels on the same rows), bit for bit.
func (e *Engine) Graphs() (GraphModel, Graphs, error) {
	if e.decErr != nil {
		return GraphModel{}, nil, e.decErr
	}
	H, W := e.ImageSize()
	l := e.geo.Latent(H, W)
	m := GraphModel{Identity: e.id, Hints: e.hints, MaxTimestep: e.cfg.Decoder.MaxTimestep,
		Sizes: GraphSizes{Height: H, Width: W, C: l[0], H: l[1], W: l[2], R: e.id.MaxTokens}}
	m.Identity.Levels = append([]int(nil), m.Identity.Levels...)
	return m, engineGraphs{e: e, s: m.Sizes}, nil
}

// engineGraphs runs a VelocityFeed on the engine's decoder: every item is bound as a sequence
// of its own (k = 0 items as unconditional items).
type engineGraphs struct {
	e *Engine
	s GraphSizes
}

func (g engineGraphs) Velocity(ctx context.Context, f *VelocityFeed) ([]float32, error) {
	s := g.s
	per := s.C * s.H * s.W
	if f.N < 1 || len(f.X) != f.N*per || len(f.T) != f.N || len(f.IDs) != f.N*s.R || len(f.K) != f.N {
		return nil, fmt.Errorf("%w: feed of %d items with %d, %d, %d, %d values", ErrArgument, f.N, len(f.X), len(f.T), len(f.IDs), len(f.K))
	}
	ids := make([][]uint32, f.N)
	k := make([]int, f.N)
	batch := make([]flow.Item, f.N)
	out := make([]float32, f.N*per)
	for i := range ids {
		ids[i] = make([]uint32, s.R)
		for j, v := range f.IDs[i*s.R : (i+1)*s.R] {
			if v < 0 || v > int64(^uint32(0)) {
				return nil, fmt.Errorf("%w: item %d token %d: id %d", ErrArgument, i, j, v)
			}
			ids[i][j] = uint32(v)
		}
		k[i] = int(f.K[i])
		if f.K[i] == 0 {
			k[i] = s.R // any valid prefix: the item is unconditional
		}
		if f.T[i] != f.T[0] {
			return nil, fmt.Errorf("%w: item %d has t = %v, item 0 t = %v", ErrArgument, i, f.T[i], f.T[0])
		}
		batch[i] = flow.Item{Image: i, Uncond: f.K[i] == 0,
			X: tensor.Tensor{Shape: []int{s.C, s.H, s.W}, Data: f.X[i*per : (i+1)*per]},
			V: tensor.Tensor{Shape: []int{s.C, s.H, s.W}, Data: out[i*per : (i+1)*per]}}
	}
	c, err := g.e.dec.Bind(ids, k)
	if err != nil {
		return nil, err
	}
	if err := c.Velocity(ctx, f.T[0], batch); err != nil {
		return nil, err
	}
	return out, nil
}

func (g engineGraphs) DecodeLatents(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
	return g.e.vae.Decode(ctx, latents)
}
