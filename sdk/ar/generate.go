package ar

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Tokenizer is what a Generator needs of the tokenizer its payloads are for: engine.Engine
// satisfies it.
type Tokenizer interface {
	Identity() payload.Model
	ImageSize() (height, width int)
	Hints() *payload.Hints
}

// Options configure a Generator.
type Options struct {
	// Tokenizer, if set, is checked against the model's config (CheckTokenizer) and gives the
	// payloads' model identity, image size and decode hints. Without it payloads carry the
	// config's tokenizer identity and no image size (tests, conformance).
	Tokenizer Tokenizer
	// Exec selects the kernels: the zero value is the portable path (bit-identical everywhere);
	// Fast the AVX-512 path where there is one; Threads per kernel.
	Exec nn.Options
	// Executor, if set, runs the model instead of the Go executor (native.ARBackend: ONNX
	// Runtime); the sampler (Generate) is the same code either way. Exec is then unused.
	Executor Executor
}

// Stepper runs the model step by step over a fixed batch of sequences and holds their KV
// cache: Prefill once (the class position), then Step per token. Both return the logits of
// the next token, [n, V], valid until the next call. *Runner is the Go executor's.
type Stepper interface {
	Prefill(classes []int) ([]float32, error)
	Step(ids []uint32) ([]float32, error)
}

// Executor makes a Stepper for n sequences; Generate drives whichever Options.Executor names
// (nil: the Go executor).
type Executor interface {
	NewStepper(ctx context.Context, n int) (Stepper, error)
}

var _ Stepper = (*Runner)(nil)

// Generator generates FlexTok token sequences with an AR model. It is safe for concurrent use
// (each Generate call runs its own executor and caches).
type Generator struct {
	m     *Model
	net   *Net[*nn.Linear]
	o     Options
	tok   payload.Model
	img   payload.Image
	hints *payload.Hints
}

// NewGenerator binds m for o.Exec's path (packing the weights once) and checks the tokenizer.
func NewGenerator(m *Model, o Options) (*Generator, error) {
	g := &Generator{m: m, o: o}
	t := m.Cfg.Tokenizer
	g.tok = payload.Model{Name: t.Name, Digest: t.Digest, Levels: t.Levels, MaxTokens: t.Registers}
	if o.Tokenizer != nil {
		g.tok = o.Tokenizer.Identity()
		if err := m.CheckTokenizer(g.tok); err != nil {
			return nil, err
		}
		g.img.Height, g.img.Width = o.Tokenizer.ImageSize()
		g.hints = o.Tokenizer.Hints()
	}
	if o.Executor == nil {
		g.net = Bind(m, func(_ string, w []float32, out, in int) *nn.Linear { return nn.Pack(o.Exec, w, nil, out, in) })
	}
	return g, nil
}

// Model is the generator's model.
func (g *Generator) Model() *Model { return g.m }

// samplerThreads is the number of goroutines among which a step's samples are drawn: the
// executor's threads (Exec.Threads, at least 1), or GOMAXPROCS when another executor runs the
// model (its threads are idle while the sampler runs).
func (g *Generator) samplerThreads() int {
	if g.o.Executor != nil {
		return runtime.GOMAXPROCS(0)
	}
	return max(g.o.Exec.Threads, 1)
}

// Runner runs the model step by step over a batch of sequences with a KV cache: Prefill, then
// Step per token. It is the executor's direct form (conformance tests, custom samplers).
type Runner struct {
	g      *Generator
	e      *nn.Eager
	caches []*nn.KVCache
	x, pos []float32
	n, t   int
}

// NewRunner returns a Go-executor runner for n sequences (it panics on a Generator made with
// Options.Executor, which has no Go weights bound).
func (g *Generator) NewRunner(ctx context.Context, n int) *Runner {
	if g.net == nil {
		panic("flextok/ar: NewRunner on a Generator with another Executor")
	}
	r := &Runner{g: g, e: nn.NewEager(ctx, g.o.Exec), n: n, t: -1}
	for range g.m.Cfg.Layers {
		r.caches = append(r.caches, nn.NewKVCache(n))
	}
	r.x, r.pos = make([]float32, n*g.m.Cfg.Dim), make([]float32, n)
	return r
}

func (r *Runner) run(table []float32, rows []int) ([]float32, error) {
	c := r.g.m.Cfg
	d := c.Dim
	if len(rows) != r.n {
		return nil, fmt.Errorf("%w: %d rows for a runner of %d sequences", ErrArgument, len(rows), r.n)
	}
	if r.t+1 > c.BlockSize {
		return nil, fmt.Errorf("%w: step %d past block size %d", ErrArgument, r.t+1, c.BlockSize)
	}
	for i, id := range rows {
		copy(r.x[i*d:(i+1)*d], table[id*d:(id+1)*d])
		r.pos[i] = float32(r.t)
	}
	logits, err := Forward[nn.Tensor, *nn.Linear, *nn.KVCache](r.e, r.g.net, nn.NewTensor(r.x, r.n, d), nn.NewTensor(r.pos, r.n, 1), r.caches)
	if err != nil {
		return nil, err
	}
	r.t++
	return logits.Data, nil
}

// Prefill runs the class position of every sequence (classes may include the null class
// NumClasses when the model has it) and returns the logits of token 0, [n, V]; the slice is
// valid until the next call.
func (r *Runner) Prefill(classes []int) ([]float32, error) {
	if r.t != -1 {
		return nil, fmt.Errorf("%w: prefill of a runner already used", ErrArgument)
	}
	for _, k := range classes {
		if k < 0 || k >= r.g.m.Cfg.ClassRows() {
			return nil, fmt.Errorf("%w: class %d outside 0..%d", ErrArgument, k, r.g.m.Cfg.ClassRows()-1)
		}
	}
	return r.run(r.g.m.W.Cls, classes)
}

// Step feeds one token per sequence and returns the logits of the next, [n, V].
func (r *Runner) Step(ids []uint32) ([]float32, error) {
	if r.t < 0 {
		return nil, fmt.Errorf("%w: step before prefill", ErrArgument)
	}
	rows := make([]int, len(ids))
	for i, id := range ids {
		if int(id) >= r.g.m.Cfg.VocabSize {
			return nil, fmt.Errorf("%w: id %d outside the vocabulary of %d", ErrArgument, id, r.g.m.Cfg.VocabSize)
		}
		rows[i] = int(id)
	}
	return r.run(r.g.m.W.Tok, rows)
}

// Request is one generation call: one sample per entry of Classes, K tokens each.
type Request struct {
	Classes []int
	K       int
	Sampling
	// Seed seeds the draws: sample i draws from the stream (Seed, i) of the project's PCG (so a
	// sample's ids do not depend on the others in the batch), one uniform per token.
	Seed uint64
	// OnToken, if set, is called as token n (0-based) of every sample is produced; ids[i] is
	// sample i's (valid during the call). An error stops the generation and is returned.
	OnToken func(n int, ids []uint32) error
}

// Generate produces exactly K tokens per class and returns them as ordinary payloads of the
// tokenizer (Cond.Class set; the tokenizer's decode hints): `flextok decode` decodes them.
func (g *Generator) Generate(ctx context.Context, req Request) ([]*payload.Payload, error) {
	st, err := g.newSeq(req)
	if err != nil {
		return nil, err
	}
	var r Stepper
	if g.o.Executor != nil {
		if r, err = g.o.Executor.NewStepper(ctx, len(st.rows)); err != nil {
			return nil, err
		}
	} else {
		r = g.NewRunner(ctx, len(st.rows))
	}
	feed := make([]uint32, len(st.rows))
	logits, err := r.Prefill(st.rows)
	for {
		if err != nil {
			return nil, err
		}
		if err := st.next(logits, g.samplerThreads()); err != nil {
			return nil, err
		}
		if st.done() {
			return st.payloads(), nil
		}
		logits, err = r.Step(st.feed(feed))
	}
}

// seq is one request's sampling state, the sampler written once: Generate drives it over a
// Stepper of its own, Batch over rows shared with other requests. Its rows are the
// conditional rows of its samples, then (with CFG) their null-class rows, in that order.
type seq struct {
	g    *Generator
	req  Request
	b    int   // samples
	cfg  bool  // guided: the null rows follow
	rows []int // the class (embedding table) row of each model row
	rngs []rng
	out  [][]uint32
	tok  []uint32
	bufs []sampleBuf // one per sampling goroutine
	n    int         // tokens produced per sample
}

// newSeq checks req against the model and starts its sampling state.
func (g *Generator) newSeq(req Request) (*seq, error) {
	c := g.m.Cfg
	if err := req.Check(); err != nil {
		return nil, err
	}
	B := len(req.Classes)
	if B == 0 {
		return nil, fmt.Errorf("%w: no classes", ErrArgument)
	}
	if req.K < 1 || req.K > c.BlockSize {
		return nil, fmt.Errorf("%w: k = %d outside 1..%d (the tokenizer's maximum)", ErrArgument, req.K, c.BlockSize)
	}
	for _, k := range req.Classes {
		if k < 0 || k >= c.NumClasses {
			return nil, fmt.Errorf("%w: class %d outside 0..%d", ErrArgument, k, c.NumClasses-1)
		}
	}
	cfg := req.CFG > 1
	if cfg && !c.HasNull() {
		return nil, fmt.Errorf("%w: cfg scale %v needs the null class, and this model has none (class_dropout 0)", ErrArgument, req.CFG)
	}
	s := &seq{g: g, req: req, b: B, cfg: cfg, rows: append([]int(nil), req.Classes...),
		rngs: make([]rng, B), out: make([][]uint32, B), tok: make([]uint32, B)}
	if cfg {
		for range req.Classes {
			s.rows = append(s.rows, c.NumClasses)
		}
	}
	for i := range s.rngs {
		s.rngs[i] = newRNG(req.Seed, uint64(i))
	}
	return s, nil
}

// next samples token s.n of every sample from logits, this request's rows ([len(rows), V]),
// and calls OnToken. The samples are shared among up to threads goroutines: each has its own
// row, RNG stream and output, so the ids do not depend on how they are shared.
func (s *seq) next(logits []float32, threads int) error {
	B := s.b
	workers := max(min(threads, B), 1)
	for len(s.bufs) < workers {
		s.bufs = append(s.bufs, sampleBuf{row: make([]float32, s.g.m.Cfg.VocabSize)})
	}
	if workers <= 1 {
		for i := range B {
			s.sample(i, logits, &s.bufs[0])
		}
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := B * w / workers; i < B*(w+1)/workers; i++ {
					s.sample(i, logits, &s.bufs[w])
				}
			})
		}
		wg.Wait()
	}
	for i, t := range s.tok {
		s.out[i] = append(s.out[i], t)
	}
	s.n++
	if s.req.OnToken != nil {
		return s.req.OnToken(s.n-1, s.tok)
	}
	return nil
}

// sample draws token s.n of sample i into s.tok[i]: guidance and temperature in one pass over
// the row (the same float32 operations, in the same order, as guiding and then Filter), then
// top-k and top-p, then the draw.
func (s *seq) sample(i int, logits []float32, b *sampleBuf) {
	req, V, row := &s.req, s.g.m.Cfg.VocabSize, b.row
	s32 := float32(req.CFG)
	t := float32(1)
	filter := req.TopK > 0 || req.TopP < 1 || !req.Greedy
	if filter {
		t = float32(max(req.Temperature, 1e-5))
	}
	guide := s.cfg && (req.GuidedTokens == 0 || s.n < req.GuidedTokens)
	cr := logits[i*V : (i+1)*V]
	switch {
	case guide && filter:
		ur := logits[(s.b+i)*V : (s.b+i+1)*V]
		for j := range row {
			row[j] = float32(ur[j]+float32((cr[j]-ur[j])*s32)) / t
		}
	case guide:
		ur := logits[(s.b+i)*V : (s.b+i+1)*V]
		for j := range row {
			row[j] = ur[j] + float32((cr[j]-ur[j])*s32)
		}
	case filter:
		for j, v := range cr {
			row[j] = v / t
		}
	default:
		copy(row, cr)
	}
	if filter {
		b.truncate(row, req.TopK, req.TopP)
	}
	s.tok[i] = uint32(pick(row, req.Greedy, s.rngs[i]))
}

// done reports whether every sample has its K tokens.
func (s *seq) done() bool { return s.n >= s.req.K }

// feed writes the ids to feed next (the last token of each sample, again for its null row)
// into dst[:len(rows)] and returns it.
func (s *seq) feed(dst []uint32) []uint32 {
	dst = dst[:len(s.rows)]
	copy(dst, s.tok)
	if s.cfg {
		copy(dst[s.b:], s.tok)
	}
	return dst
}

// payloads are the samples as payloads of the tokenizer.
func (s *seq) payloads() []*payload.Payload {
	ps := make([]*payload.Payload, s.b)
	for i, ids := range s.out {
		cl := s.req.Classes[i]
		ps[i] = &payload.Payload{Model: s.g.tok, Image: s.g.img, IDs: ids, Cond: &payload.Cond{Class: &cl}, Hints: s.g.hints}
	}
	return ps
}

// StreamHeader is the header of the payload stream form (docs/payload.md) of one sample of
// class with k tokens: a caller writes it, then a chunk per OnToken call (Start n, the
// sample's id, End at n = k−1), and the receiver decodes the image coarse to fine as they come.
func (g *Generator) StreamHeader(class, k int) payload.Header {
	return payload.Header{Model: g.tok, Image: g.img, Count: k, Cond: &payload.Cond{Class: &class}, Hints: g.hints}
}
