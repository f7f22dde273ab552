package server

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// batcher is the continuous-batching scheduler of one AR model (docs/server.md, "Continuous
// batching"): the generate requests of the model run as one ar.Batch, one forward pass per
// step over every request's rows. A request joins at the next step (its class position beside
// the others' next tokens) and leaves when its k tokens are done, when its client goes or its
// time limit passes (its context, checked before every step). Its tokens go to its handler
// through a channel that never blocks the scheduler (room for all k rounds), and the handler
// writes them to its client, so a slow client never holds the batch up.
//
// The scheduler runs on a goroutine while the batch has work and exits when it empties (no
// goroutine outlives the requests). It takes a work slot for each step and gives it back after
// it, so that encode and decode requests waiting for a slot get one between two steps.
type batcher struct {
	s       *Server
	g       *ar.Generator
	model   string
	mu      sync.Mutex
	pending []*genJob
	running bool
	peak    atomic.Int64 // the most requests a step has run together (tests)
}

// genJob is one generate request in the batcher.
type genJob struct {
	ctx    context.Context
	req    ar.Request // OnToken sends to rounds
	rounds chan genRound
	// set before rounds is closed:
	ps  []*payload.Payload
	err error
}

type genRound struct {
	t   int
	ids []uint32
}

func newBatcher(s *Server, model string, g *ar.Generator) *batcher {
	return &batcher{s: s, g: g, model: model}
}

// generate runs req in the batch and calls onToken on the calling goroutine for each token
// round as it is produced (an error from it takes the request out of the batch and is
// returned); it returns the payloads or the error that ended the request.
func (b *batcher) generate(ctx context.Context, req ar.Request, onToken func(t int, ids []uint32) error) ([]*payload.Payload, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	j := &genJob{ctx: ctx, req: req, rounds: make(chan genRound, req.K)}
	j.req.OnToken = func(t int, ids []uint32) error {
		j.rounds <- genRound{t, append([]uint32(nil), ids...)} // room for every round: never blocks
		return nil
	}
	b.submit(j)
	var ferr error
	for r := range j.rounds {
		if ferr == nil {
			if ferr = onToken(r.t, r.ids); ferr != nil {
				cancel() // out of the batch before the next step; drain until the scheduler lets go
			}
		}
	}
	if ferr != nil {
		return nil, ferr
	}
	return j.ps, j.err
}

func (b *batcher) submit(j *genJob) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, j)
	b.s.adm.wait(1)
	if !b.running {
		b.running = true
		go b.loop()
	}
}

// finish ends j's part in the batch: its result, then the end of its rounds.
func finish(j *genJob, q *ar.Seq, err error) {
	if err == nil && q != nil {
		if err = q.Err(); err == nil {
			j.ps = q.Payloads()
		}
	}
	j.err = err
	close(j.rounds)
}

func (b *batcher) loop() {
	batch, err := b.g.NewBatch(context.Background())
	jobs := map[*ar.Seq]*genJob{}
	rows := b.s.m.batchRows.WithLabelValues(b.model)
	defer rows.Set(0)
	for {
		b.mu.Lock()
		joining := b.pending
		b.pending = nil
		b.s.adm.wait(-len(joining))
		if len(joining) == 0 && len(jobs) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, j := range joining {
			if err != nil { // no batch (never: the Generator has the Go executor)
				finish(j, nil, err)
				continue
			}
			if e := j.ctx.Err(); e != nil {
				finish(j, nil, e)
				continue
			}
			q, e := batch.Add(j.req)
			if e != nil {
				finish(j, nil, e)
				continue
			}
			jobs[q] = j
		}
		for q, j := range jobs { // clients gone, time limits passed
			if e := j.ctx.Err(); e != nil {
				batch.Remove(q)
				delete(jobs, q)
				finish(j, nil, e)
			}
		}
		if len(jobs) == 0 {
			continue
		}
		rows.Set(float64(batch.Rows()))
		if n := int64(batch.Len()); n > b.peak.Load() {
			b.peak.Store(n)
		}
		b.s.adm.acquire(context.Background())
		left, _ := batch.Step() // a pass error fails every request (each q.Err())
		b.s.adm.release()
		for _, q := range left {
			finish(jobs[q], q, nil)
			delete(jobs, q)
		}
	}
}
