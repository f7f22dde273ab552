package ar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Batch steps the sequences of several requests together on the Go executor (continuous
// batching): requests join (Add) and leave (when their K tokens are done, when their OnToken
// fails, or Remove) between steps, and each Step runs one forward pass over every row of every
// request, a new request's class position beside the others' next tokens, each row attending
// over its own KV cache. Each request keeps its own sampling options and random streams and is
// sampled by the same code as Generate, so a request gets the ids that Generate gives it alone
// as long as the kernels compute a row independently of the other rows (the Go kernels do:
// no cut of a matrix product crosses its reduction; TestBatchSameIDs).
//
// A Batch is not safe for concurrent use: one goroutine (a scheduler) calls Add, Remove and
// Step. Step samples the requests on up to Options.Exec.Threads goroutines, so the OnToken
// calls of different requests may run concurrently (one request's are never concurrent). ONNX Runtime's step graph (native.ARBackend) takes one past length for the whole batch,
// so a Batch needs the Go executor (Options.Executor nil).
type Batch struct {
	g      *Generator
	e      *nn.Eager
	caches []*nn.KVCache
	seqs   []*Seq // in row order
	rows   int
	x, pos []float32
	keep   []bool
	offs   []int // each request's first row in a step
}

// Seq is a request in a Batch.
type Seq struct {
	s       *seq
	ids     []uint32 // the ids to feed
	started bool     // prefilled
	removed bool
	err     error
}

// Err is the error that ended the request (its OnToken's, or the pass's), nil when it finished.
func (q *Seq) Err() error { return q.err }

// Done reports whether every sample has its K tokens.
func (q *Seq) Done() bool { return q.s.done() }

// Rows is the model rows the request takes in a step: its samples, twice with CFG.
func (q *Seq) Rows() int { return len(q.s.rows) }

// Payloads are the request's samples as payloads (once Done).
func (q *Seq) Payloads() []*payload.Payload { return q.s.payloads() }

// ErrExecutor marks a Batch asked of a Generator that runs on another executor.
var ErrExecutor = errors.New("flextok/ar: continuous batching needs the Go executor")

// NewBatch returns an empty batch; ctx is checked at every block of every step (its end fails
// the step for every request).
func (g *Generator) NewBatch(ctx context.Context) (*Batch, error) {
	if g.net == nil {
		return nil, ErrExecutor
	}
	b := &Batch{g: g, e: nn.NewEager(ctx, g.o.Exec)}
	for range g.m.Cfg.Layers {
		b.caches = append(b.caches, nn.NewKVCache(0))
	}
	return b, nil
}

// Add checks req (as Generate) and joins it: its class position runs in the next Step.
func (b *Batch) Add(req Request) (*Seq, error) {
	s, err := b.g.newSeq(req)
	if err != nil {
		return nil, err
	}
	q := &Seq{s: s, ids: make([]uint32, len(s.rows))}
	b.seqs = append(b.seqs, q)
	b.rows += len(s.rows)
	for _, c := range b.caches {
		c.Grow(len(s.rows))
	}
	return q, nil
}

// Remove takes q out of the batch (a client gone); its KV cache is dropped.
func (b *Batch) Remove(q *Seq) {
	if !q.removed {
		q.removed = true
		b.compact()
	}
}

// Len is the number of requests in the batch; Rows the model rows of a step.
func (b *Batch) Len() int  { return len(b.seqs) }
func (b *Batch) Rows() int { return b.rows }

// compact drops the removed requests' rows from the caches.
func (b *Batch) compact() {
	b.keep = b.keep[:0]
	kept := b.seqs[:0]
	for _, q := range b.seqs {
		for range q.s.rows {
			b.keep = append(b.keep, !q.removed)
		}
		if !q.removed {
			kept = append(kept, q)
		}
	}
	clear(b.seqs[len(kept):])
	b.seqs = kept
	b.rows = 0
	for _, q := range kept {
		b.rows += len(q.s.rows)
	}
	for _, c := range b.caches {
		c.Keep(b.keep)
	}
}

// Step runs one forward pass over every request of the batch (the class position of those
// that joined since the last step, the next token of the others), samples each request's next
// token with its own options and calls its OnToken, and returns the requests that left: done
// (K tokens) or failed (Err: an OnToken error, or the pass's error, which fails every
// request). Step on an empty batch returns nothing.
func (b *Batch) Step() ([]*Seq, error) {
	if len(b.seqs) == 0 {
		return nil, nil
	}
	c := b.g.m.Cfg
	d, V := c.Dim, c.VocabSize
	if cap(b.x) < b.rows*d {
		b.x, b.pos = make([]float32, b.rows*d), make([]float32, b.rows)
	}
	x, pos := b.x[:b.rows*d], b.pos[:b.rows]
	r := 0
	for _, q := range b.seqs {
		s := q.s
		if !q.started {
			for _, cl := range s.rows {
				copy(x[r*d:(r+1)*d], b.g.m.W.Cls[cl*d:(cl+1)*d])
				pos[r] = -1
				r++
			}
			continue
		}
		if s.n > c.BlockSize {
			return nil, fmt.Errorf("%w: step %d past block size %d", ErrArgument, s.n, c.BlockSize)
		}
		for _, id := range s.feed(q.ids) {
			copy(x[r*d:(r+1)*d], b.g.m.W.Tok[int(id)*d:(int(id)+1)*d])
			pos[r] = float32(s.n - 1)
			r++
		}
	}
	logits, err := Forward[nn.Tensor, *nn.Linear, *nn.KVCache](b.e, b.g.net, nn.NewTensor(x, b.rows, d), nn.NewTensor(pos, b.rows, 1), b.caches)
	if err != nil {
		left := b.seqs
		for _, q := range left {
			q.err, q.removed = err, true
		}
		b.seqs, b.rows = nil, 0
		for i := range b.caches {
			b.caches[i] = nn.NewKVCache(0)
		}
		return left, err
	}
	// Sample each request from its rows: the requests on up to samplerThreads goroutines (the
	// sampler's softmax over the vocabulary costs more than the pass on a small model), or, for
	// a single request, its samples (seq.next).
	b.offs = b.offs[:0]
	r = 0
	for _, q := range b.seqs {
		b.offs = append(b.offs, r)
		r += len(q.s.rows)
	}
	th := min(b.g.samplerThreads(), len(b.seqs))
	inner := 1 // threads per request
	if th <= 1 {
		inner = b.g.samplerThreads()
	}
	sample := func(i int) {
		q := b.seqs[i]
		q.started = true
		if err := q.s.next(logits.Data[b.offs[i]*V:(b.offs[i]+len(q.s.rows))*V], inner); err != nil {
			q.err = err
		}
	}
	if th > 1 {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range th {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < len(b.seqs); i = int(next.Add(1)) - 1 {
					sample(i)
				}
			}()
		}
		wg.Wait()
	} else {
		for i := range b.seqs {
			sample(i)
		}
	}
	var left []*Seq
	for _, q := range b.seqs {
		if q.err != nil || q.s.done() {
			q.removed = true
			left = append(left, q)
		}
	}
	if len(left) > 0 {
		b.compact()
	}
	return left, nil
}
