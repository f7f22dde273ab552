package ar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/nn"
)

// batchModel is a small random model with a null class (CFG) and grouped-query heads.
func batchModel(t testing.TB) *Model {
	c := &Config{Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, MultipleOf: 16, NormEps: 1e-5, RopeBase: 10000,
		BlockSize: 32, NumClasses: 5, ClassDropout: 0.1, VocabSize: 700,
		Tokenizer: TokenizerSpec{Levels: []int{7, 5, 4, 5}, CodebookSize: 700, Registers: 32}}
	c.FFNHidden = FFNHiddenRule(c.Dim, c.MultipleOf, nil)
	m, err := New(c, RandomWeights(c, 3))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBatchSameIDs is continuous batching's key property: requests that join a Batch at
// different steps, with different n, k, sampling options and seeds, get exactly the ids
// Generate gives each alone; one removed mid-way got a prefix of its ids, one whose OnToken
// fails leaves with its error, and the others go on.
func TestBatchSameIDs(t *testing.T) {
	sm := func(cfg, temp float64, topK int, topP float64, greedy bool, guided int) Sampling {
		return Sampling{CFG: cfg, Temperature: temp, TopK: topK, TopP: topP, Greedy: greedy, GuidedTokens: guided}
	}
	type job struct {
		req    Request
		join   int // the step before which it joins
		remove int // the step before which it is removed (0: never)
		failAt int // OnToken fails at this token (0: never)
	}
	jobs := []job{
		{req: Request{Classes: []int{0, 0, 0}, K: 20, Seed: 1, Sampling: sm(2, 1, 50, 1, false, 0)}},
		{req: Request{Classes: []int{1}, K: 7, Seed: 5, Sampling: sm(1, 0.5, 0, 0.8, true, 0)}},
		{req: Request{Classes: []int{2, 2}, K: 32, Seed: 9, Sampling: sm(3, 0.9, 0, 0.9, false, 5)}, join: 3},
		{req: Request{Classes: []int{3}, K: 32, Seed: 4, Sampling: sm(1.5, 1.2, 10, 1, false, 0)}, join: 5, remove: 10},
		{req: Request{Classes: []int{4, 4}, K: 1, Seed: 2, Sampling: sm(1, 1, 0, 1, false, 0)}, join: 12},
		{req: Request{Classes: []int{1, 3}, K: 16, Seed: 2, Sampling: sm(4, 1, 0, 1, false, 0)}, join: 12, failAt: 4},
		{req: Request{Classes: []int{0}, K: 32, Seed: 77, Sampling: sm(2, 1, 5, 0.95, false, 0)}, join: 30},
	}
	m := batchModel(t)
	for _, path := range []struct {
		name string
		o    nn.Options
	}{{"portable", nn.Options{}}, {"fast", nn.Options{Fast: true, Threads: 2}}} {
		t.Run(path.name, func(t *testing.T) {
			g, err := NewGenerator(m, Options{Exec: path.o})
			if err != nil {
				t.Fatal(err)
			}
			b, err := g.NewBatch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			fail := errors.New("client gone")
			got := make([][][]uint32, len(jobs))
			seqs := make([]*Seq, len(jobs))
			finished := make([]bool, len(jobs))
			for step := 0; ; step++ {
				for i, j := range jobs {
					if j.join == step {
						req := j.req
						got[i] = make([][]uint32, len(req.Classes))
						req.OnToken = func(n int, ids []uint32) error {
							if j.failAt > 0 && n == j.failAt {
								return fail
							}
							for s, id := range ids {
								got[i][s] = append(got[i][s], id)
							}
							return nil
						}
						if seqs[i], err = b.Add(req); err != nil {
							t.Fatal(err)
						}
					}
					if j.remove == step && j.remove > 0 {
						b.Remove(seqs[i])
						finished[i] = true
					}
				}
				if b.Len() == 0 && step > 30 {
					break
				}
				left, err := b.Step()
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range left {
					i := slices.Index(seqs, q)
					finished[i] = true
					if jobs[i].failAt > 0 {
						if !errors.Is(q.Err(), fail) {
							t.Errorf("job %d: err %v, want its OnToken's", i, q.Err())
						}
					} else if q.Err() != nil || !q.Done() {
						t.Errorf("job %d left: err %v, done %v", i, q.Err(), q.Done())
					}
				}
			}
			for i, j := range jobs {
				if !finished[i] {
					t.Fatalf("job %d never left", i)
				}
				want, err := g.Generate(context.Background(), j.req)
				if err != nil {
					t.Fatal(err)
				}
				for s, p := range want {
					ids := p.IDs
					switch {
					case j.remove > 0:
						if len(got[i][s]) == 0 || len(got[i][s]) >= len(ids) {
							t.Fatalf("job %d (removed) sample %d: %d ids", i, s, len(got[i][s]))
						}
						ids = ids[:len(got[i][s])]
					case j.failAt > 0:
						ids = ids[:j.failAt]
					default:
						if ps := seqs[i].Payloads(); !slices.Equal(ps[s].IDs, p.IDs) {
							t.Errorf("job %d sample %d: payload ids differ", i, s)
						}
					}
					if !slices.Equal(got[i][s], ids) {
						t.Errorf("job %d sample %d: batched ids\n%v\nalone\n%v", i, s, got[i][s], ids)
					}
				}
			}
			if b.Rows() != 0 {
				t.Errorf("%d rows left", b.Rows())
			}
		})
	}
}

// TestBatchRefusals: Add checks a request as Generate does; a Generator on another executor
// has no Batch.
func TestBatchRefusals(t *testing.T) {
	g, err := NewGenerator(batchModel(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := g.NewBatch(context.Background())
	for _, req := range []Request{
		{Classes: []int{5}, K: 3, Sampling: DefaultSampling()},
		{Classes: []int{0}, K: 33, Sampling: DefaultSampling()},
		{Classes: nil, K: 3, Sampling: DefaultSampling()},
		{Classes: []int{0}, K: 3},
	} {
		if _, err := b.Add(req); !errors.Is(err, ErrArgument) {
			t.Errorf("%+v: %v", req, err)
		}
	}
	if b.Len() != 0 {
		t.Fatal(b.Len())
	}
	h, _ := NewGenerator(batchModel(t), Options{Executor: fakeExec{}})
	if _, err := h.NewBatch(context.Background()); !errors.Is(err, ErrExecutor) {
		t.Fatal(err)
	}
	// A canceled context fails the step for every request.
	ctx, cancel := context.WithCancel(context.Background())
	b, _ = g.NewBatch(ctx)
	q, _ := b.Add(Request{Classes: []int{0}, K: 3, Sampling: DefaultSampling()})
	cancel()
	left, err := b.Step()
	if !errors.Is(err, context.Canceled) || len(left) != 1 || left[0] != q || !errors.Is(q.Err(), context.Canceled) || b.Len() != 0 {
		t.Fatalf("canceled: %v %v %v", left, err, q.Err())
	}
}

type fakeExec struct{}

func (fakeExec) NewStepper(context.Context, int) (Stepper, error) { return nil, fmt.Errorf("fake") }
