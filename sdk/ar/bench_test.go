package ar

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/nn"
)

// officialLike is a random-weight model of the official-like size: width 640, 10 layers,
// 10 heads, 64,000 codes, 256 tokens (133 M parameters: ~51 M in the blocks, 2 × 41 M in the
// embedding and the head).
func officialLike() *Model {
	c := &Config{Dim: 640, Layers: 10, Heads: 10, KVHeads: 10, MultipleOf: 256, NormEps: 1e-5, RopeBase: 10000,
		BlockSize: 256, NumClasses: 1000, ClassDropout: 0.1, VocabSize: 64000,
		Tokenizer: TokenizerSpec{Levels: []int{8, 8, 8, 5, 5, 5}, CodebookSize: 64000, Registers: 256}}
	c.FFNHidden = FFNHiddenRule(c.Dim, c.MultipleOf, nil)
	m, err := New(c, RandomWeights(c, 1))
	if err != nil {
		panic(err)
	}
	return m
}

// BenchmarkGenerate reports generated tokens per second (tokens/s: batch × k per call, CFG
// scale 2 so the batch runs 2·batch rows) on the portable and fast paths, side by side.
// -short skips the official-like model.
func BenchmarkGenerate(b *testing.B) {
	tiny, err := Load(tinyDir)
	if err != nil {
		b.Fatal(err)
	}
	models := []struct {
		name string
		m    func() *Model
		k    int
	}{{"tiny", func() *Model { return tiny }, 16}, {"official-like-50M", officialLike, 32}}
	// FLEXTOK_AR_BENCH_DIR adds a checkpoint from disk as "dir" (train/bench_ar.py runs the
	// PyTorch recipe on the same checkpoint and this benchmark in one run, side by side).
	if dir := os.Getenv("FLEXTOK_AR_BENCH_DIR"); dir != "" {
		m, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		models = append(models, struct {
			name string
			m    func() *Model
			k    int
		}{"dir", func() *Model { return m }, m.Cfg.BlockSize})
	}
	for _, md := range models {
		if md.name == "official-like-50M" && testing.Short() {
			continue
		}
		m := md.m()
		for _, p := range []struct {
			name string
			o    nn.Options
		}{{"portable", nn.Options{}}, {"fast", nn.Options{Fast: true}}} {
			if md.name == "dir" {
				p.o.Threads = runtime.GOMAXPROCS(0) // as PyTorch's intra-op pool in train/bench_ar.py
			}
			g, err := NewGenerator(m, Options{Exec: p.o})
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int{1, 16} {
				b.Run(fmt.Sprintf("%s/%s/batch=%d/k=%d", md.name, p.name, batch, md.k), func(b *testing.B) {
					cls := make([]int, batch)
					for i := range cls {
						cls[i] = i % m.Cfg.NumClasses
					}
					s := DefaultSampling()
					s.CFG, s.TopK = 2, 100
					for b.Loop() {
						if _, err := g.Generate(context.Background(), Request{Classes: cls, K: md.k, Sampling: s, Seed: 1}); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(batch*md.k)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
				})
			}
		}
	}
}

// BenchmarkStep splits one token step of the official-like model at batch 1 with CFG (2 rows)
// into the whole step and the head alone (where the time goes).
func BenchmarkStep(b *testing.B) {
	if testing.Short() {
		b.Skip("official-like model")
	}
	m := officialLike()
	for _, p := range []struct {
		name string
		o    nn.Options
	}{{"portable", nn.Options{}}, {"fast", nn.Options{Fast: true}}} {
		g, err := NewGenerator(m, Options{Exec: p.o})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(p.name+"/prefill", func(b *testing.B) {
			for b.Loop() {
				r := g.NewRunner(context.Background(), 2)
				if _, err := r.Prefill([]int{0, 1000}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(p.name+"/step-at-32", func(b *testing.B) {
			r := g.NewRunner(context.Background(), 2)
			if _, err := r.Prefill([]int{0, 1000}); err != nil {
				b.Fatal(err)
			}
			for range 31 {
				if _, err := r.Step([]uint32{1, 1}); err != nil {
					b.Fatal(err)
				}
			}
			// Steps past 32 keep growing the cache; the figure is a step near position 32-ish
			// amortised over b.N steps (the cache is bounded by the block size 256).
			n := 0
			for b.Loop() {
				if n == 200 {
					b.StopTimer()
					r = g.NewRunner(context.Background(), 2)
					r.Prefill([]int{0, 1000})
					n = 0
					b.StartTimer()
				}
				if _, err := r.Step([]uint32{1, 1}); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
		b.Run(p.name+"/head-only", func(b *testing.B) {
			e := nn.NewEager(context.Background(), p.o)
			x := make([]float32, 2*m.Cfg.Dim)
			for b.Loop() {
				e.Block("head")
				e.Linear(nn.NewTensor(x, 2, m.Cfg.Dim), g.net.Head)
			}
		})
	}
}
