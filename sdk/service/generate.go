package service

import (
	"context"
	"errors"
	"sync"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// CodeTokenizerMismatch is the code of an "ar_open" whose AR model was trained for another
// tokenizer than the model handle it names (ar.ErrTokenizer).
const CodeTokenizerMismatch = "tokenizer_mismatch"

// arModel is an open AR model: a generator bound to the tokenizer handle it was opened beside.
type arModel struct {
	g    *ar.Generator
	cfg  *ar.Config
	tok  uint64 // the tokenizer's model handle (informational: the generator keeps its identity)
	busy int    // generations running on it (under Service.mu)
}

// generation is an open "generate_open": a goroutine runs ar.Generator.Generate and hands the
// tokens over a channel that "generate_next" drains.
type generation struct {
	mu      sync.Mutex // serialises generate_next calls
	a       *arModel
	n, k    int
	hdr     []payload.Header
	ch      chan []uint32 // one entry per token position: the ids of every sample
	cancel  context.CancelFunc
	fin     chan struct{} // closed when the goroutine ends; then ps, err are set
	ps      []*payload.Payload
	err     error
	sent    int // token positions handed out
	ids     [][]uint32
	drained bool
}

type arInfo struct {
	Name       string   `msgpack:"name"`
	Classes    []string `msgpack:"classes"`
	NumClasses int      `msgpack:"num_classes"`
	MaxTokens  int      `msgpack:"max_tokens"`
	Vocab      int      `msgpack:"vocab"`
	CFG        bool     `msgpack:"cfg"` // the model has the null class: cfg > 1 is allowed
	Params     int64    `msgpack:"params"`
}

type arOpenResponse struct {
	header
	AR uint64 `msgpack:"ar"`
	arInfo
}

type generateOpenResponse struct {
	header
	Generation uint64   `msgpack:"generation"`
	Class      int      `msgpack:"class"`
	N          int      `msgpack:"n"`
	K          int      `msgpack:"k"`
	Headers    [][]byte `msgpack:"headers"` // stream header of each sample (docs/payload.md)
}

type generateNextResponse struct {
	header
	Start    int        `msgpack:"start"`    // position of the first id of this response
	Count    int        `msgpack:"count"`    // ids per sample in this response (0 only when done was already sent)
	IDs      [][]uint32 `msgpack:"ids"`      // ids[i]: sample i's ids start..start+count-1
	Chunks   [][]byte   `msgpack:"chunks"`   // the same ids as a stream chunk per sample
	Done     bool       `msgpack:"done"`     // all k tokens produced
	Payloads [][]byte   `msgpack:"payloads"` // when done: each sample's whole payload
}

func (s *Service) arOpen(h header, r *request) (any, error) {
	config, weights := r.Config, r.Weights
	switch {
	case len(config) == 0 && len(weights) == 0:
		d := s.o.DefaultAR
		if d == nil {
			return nil, errorf(CodeBadRequest, `"ar_open" needs "config" and "weights" (the AR checkpoint's config.json and model.safetensors): this front end embeds no default AR model`)
		}
		config, weights = d.Config, d.Weights
	case len(config) == 0 || len(weights) == 0:
		return nil, errorf(CodeBadRequest, `"ar_open" needs both "config" and "weights" (the AR checkpoint's config.json and model.safetensors), or neither for the default AR model`)
	}
	m, mh, err := s.model(r.Handle)
	if err != nil {
		return nil, err
	}
	defer s.release(m)
	s.mu.Lock()
	full := len(s.ars) >= s.o.MaxModels
	s.mu.Unlock()
	if full {
		return nil, errorf(CodeTooManyHandles, "%d AR models open, the limit; close one first", s.o.MaxModels)
	}
	am, err := ar.LoadBytes(config, weights)
	if err != nil {
		return nil, classify(err, CodeBadModel)
	}
	g, err := ar.NewGenerator(am, ar.Options{Tokenizer: m.x})
	if err != nil {
		if errors.Is(err, ar.ErrTokenizer) {
			e := &Error{Code: CodeTokenizerMismatch, Message: err.Error(), Detail: err.Error(), Field: "handle"}
			return nil, e
		}
		return nil, classify(err, CodeBadModel)
	}
	a := &arModel{g: g, cfg: am.Cfg, tok: mh}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ars) >= s.o.MaxModels {
		return nil, errorf(CodeTooManyHandles, "%d AR models open, the limit; close one first", s.o.MaxModels)
	}
	s.next++
	s.ars[s.next] = a
	return arOpenResponse{h, s.next, a.info()}, nil
}

func (a *arModel) info() arInfo {
	c := a.cfg
	return arInfo{Name: c.Name, Classes: c.Classes, NumClasses: c.NumClasses, MaxTokens: c.BlockSize,
		Vocab: c.VocabSize, CFG: c.HasNull(), Params: c.Params()}
}

// class resolves the request's class (a name of the config's "classes", or an id).
func (a *arModel) class(r *request) (int, error) {
	c := a.cfg
	switch {
	case r.ClassName != nil:
		for i, n := range c.Classes {
			if n == *r.ClassName {
				return i, nil
			}
		}
		e := errorf(CodeBadRequest, "unknown class %q (classes: %q)", *r.ClassName, c.Classes)
		e.Field = "class"
		return 0, e
	case r.Class != nil:
		if *r.Class >= int64(c.NumClasses) {
			e := errorf(CodeBadRequest, "class %d, want 0..%d", *r.Class, c.NumClasses-1)
			e.Field = "class"
			return 0, e
		}
		return int(*r.Class), nil
	}
	return 0, errorf(CodeBadRequest, `"generate_open" needs "class" (a name or an id)`)
}

// sampling layers the config's sampling hints and the request's options over ar.DefaultSampling.
func (a *arModel) sampling(r *request) (ar.Sampling, error) {
	sp := ar.DefaultSampling()
	if h := a.cfg.Hints; h != nil {
		if h.CFGScale != nil && a.cfg.HasNull() {
			sp.CFG = *h.CFGScale
		}
		if h.CFGInterval != nil && *h.CFGInterval >= 0 {
			sp.GuidedTokens = *h.CFGInterval + 2
		}
		if h.Temperature != nil {
			sp.Temperature = *h.Temperature
		}
		if h.TopK != nil {
			sp.TopK = *h.TopK
		}
		if h.TopP != nil {
			sp.TopP = *h.TopP
		}
	}
	if r.CFG != nil {
		sp.CFG = *r.CFG
	}
	if r.GuidedTokens != nil {
		sp.GuidedTokens = int(*r.GuidedTokens)
	}
	if r.Temperature != nil {
		sp.Temperature = *r.Temperature
	}
	if r.TopK != nil {
		sp.TopK = int(*r.TopK)
	}
	if r.TopP != nil {
		sp.TopP = *r.TopP
	}
	if r.Greedy != nil {
		sp.Greedy = *r.Greedy
	}
	if err := sp.Check(); err != nil {
		return sp, classify(err, CodeBadRequest)
	}
	if sp.CFG > 1 && !a.cfg.HasNull() {
		e := errorf(CodeBadRequest, "cfg %v needs the null class, and this model has none (class_dropout 0)", sp.CFG)
		e.Field = "cfg"
		return sp, e
	}
	return sp, nil
}

func (s *Service) arLookup(h int64) (*arModel, error) {
	if h > 0 {
		if a, ok := s.ars[uint64(h)]; ok {
			return a, nil
		}
	}
	return nil, errorf(CodeUnknownHandle, "no open AR model has handle %d", h)
}

func (s *Service) generateOpen(h header, r *request) (any, error) {
	s.mu.Lock()
	a, err := s.arLookup(r.AR)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	cl, err := a.class(r)
	if err != nil {
		return nil, err
	}
	n := 1
	if r.N != nil {
		if *r.N < 1 || *r.N > int64(s.o.MaxSamples) {
			return nil, errorf(CodeBadRequest, "n = %d, want 1..%d", *r.N, s.o.MaxSamples)
		}
		n = int(*r.N)
	}
	k := a.cfg.BlockSize
	if r.K != nil {
		if *r.K < 1 || *r.K > int64(a.cfg.BlockSize) {
			return nil, errorf(CodeBadRequest, "k = %d, want 1..%d (the tokenizer's maximum)", *r.K, a.cfg.BlockSize)
		}
		k = int(*r.K)
	}
	if steps := int64(n) * int64(k); steps > int64(s.o.MaxGenerateTokens) {
		return nil, errorf(CodeBadRequest, "n × k = %d tokens, at most %d per generation", steps, s.o.MaxGenerateTokens)
	}
	sp, err := a.sampling(r)
	if err != nil {
		return nil, err
	}
	var seed uint64
	if r.Seed != nil {
		seed = *r.Seed
	}
	classes := make([]int, n)
	for i := range classes {
		classes[i] = cl
	}
	g := &generation{a: a, n: n, k: k, ch: make(chan []uint32, k), fin: make(chan struct{}), ids: make([][]uint32, n)}
	headers := make([][]byte, n)
	for i := range headers {
		hd := a.g.StreamHeader(cl, k)
		b, err := hd.AppendBinary(nil)
		if err != nil {
			return nil, classify(err, CodeInternal)
		}
		g.hdr = append(g.hdr, hd)
		headers[i] = b
	}
	s.mu.Lock()
	if len(s.gens) >= s.o.MaxStreams {
		s.mu.Unlock()
		return nil, errorf(CodeTooManyHandles, "%d generations open, the limit; close one first", s.o.MaxStreams)
	}
	if _, err := s.arLookup(r.AR); err != nil { // closed meanwhile
		s.mu.Unlock()
		return nil, err
	}
	s.next++
	gh := s.next
	s.gens[gh] = g
	a.busy++
	s.mu.Unlock()

	// The generation outlives this request: it runs until done, or until generate_close
	// (or closing its AR model) cancels it.
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	req := ar.Request{Classes: classes, K: k, Sampling: sp, Seed: seed,
		OnToken: func(_ int, ids []uint32) error {
			c := append([]uint32(nil), ids...)
			select {
			case g.ch <- c: // never blocks: the channel holds k entries
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				g.err = errorf(CodeInternal, "panic: %v", p)
			}
			close(g.ch)
			close(g.fin)
		}()
		g.ps, g.err = a.g.Generate(ctx, req)
	}()
	return generateOpenResponse{h, gh, cl, n, k, headers}, nil
}

func (s *Service) generateNext(ctx context.Context, h header, r *request) (any, error) {
	s.mu.Lock()
	g, ok := s.gens[uint64(max(r.Generation, 0))]
	s.mu.Unlock()
	if !ok || r.Generation <= 0 {
		return nil, errorf(CodeUnknownHandle, "no open generation has handle %d", r.Generation)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	resp := generateNextResponse{header: h, Start: g.sent, IDs: make([][]uint32, g.n), Chunks: [][]byte{}, Payloads: [][]byte{}}
	var got [][]uint32
	if !g.drained {
		// Wait for one token position, then take those already produced.
		select {
		case c, ok := <-g.ch:
			if ok {
				got = append(got, c)
			} else {
				g.drained = true
			}
		case <-ctx.Done():
			return nil, classify(ctx.Err(), CodeCanceled)
		}
	more:
		for !g.drained && (r.Max == nil || int64(len(got)) < *r.Max) {
			select {
			case c, ok := <-g.ch:
				if !ok {
					g.drained = true
					break more
				}
				got = append(got, c)
			default:
				break more
			}
		}
	}
	if len(got) == 0 && g.drained {
		<-g.fin
		if g.err != nil {
			return nil, classify(g.err, CodeInternal)
		}
	}
	resp.Count = len(got)
	for i := range resp.IDs {
		ids := make([]uint32, len(got))
		for j, c := range got {
			ids[j] = c[i]
		}
		resp.IDs[i] = ids
		g.ids[i] = append(g.ids[i], ids...)
		if len(ids) > 0 {
			ch := payload.Chunk{Start: g.sent, IDs: ids, End: g.sent+len(ids) == g.k}
			b, err := ch.AppendBinary(nil, &g.hdr[i])
			if err != nil {
				return nil, classify(err, CodeInternal)
			}
			resp.Chunks = append(resp.Chunks, b)
		}
	}
	g.sent += len(got)
	if g.sent == g.k {
		<-g.fin
		if g.err != nil {
			return nil, classify(g.err, CodeInternal)
		}
		resp.Done = true
		for _, p := range g.ps {
			b, err := p.MarshalBinary()
			if err != nil {
				return nil, classify(err, CodeInternal)
			}
			resp.Payloads = append(resp.Payloads, b)
		}
	}
	return resp, nil
}

func (s *Service) generateClose(h header, r *request) (any, error) {
	s.mu.Lock()
	g, ok := s.gens[uint64(max(r.Generation, 0))]
	if !ok || r.Generation <= 0 {
		s.mu.Unlock()
		return nil, errorf(CodeUnknownHandle, "no open generation has handle %d", r.Generation)
	}
	s.dropGen(uint64(r.Generation), g)
	s.mu.Unlock()
	return streamCloseResponse{h}, nil
}

// dropGen removes generation gh and cancels its goroutine (under s.mu).
func (s *Service) dropGen(gh uint64, g *generation) {
	delete(s.gens, gh)
	g.a.busy--
	g.cancel()
}

// closeAR removes AR handle ah and its generations (under s.mu); it returns the number of
// generations closed.
func (s *Service) closeAR(ah uint64, a *arModel) int {
	delete(s.ars, ah)
	n := 0
	for gh, g := range s.gens {
		if g.a == a {
			s.dropGen(gh, g)
			n++
		}
	}
	return n
}
