package native

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// BenchmarkARVersusGo runs sdk/ar's Generate (one sampler) on the Go executor's fast path and
// on ONNX Runtime's CPU provider side by side, both with GOMAXPROCS threads, CFG scale 2 (2·batch
// rows), top-k 100; tokens/s = batch × k per second. -short keeps the tiny conformance model;
// otherwise also the official-like random-weight model (width 640, 10 layers, V 64,000):
//
//	FLEXTOK_ORT_LIB=$PWD/.deps/ort/libonnxruntime.so go test ./native -run '^$' -bench ARVersusGo -benchtime 1x
func BenchmarkARVersusGo(b *testing.B) {
	o := needORT(b)
	threads := runtime.GOMAXPROCS(0)
	o.IntraOpThreads = threads
	tiny, err := ar.Load(arTinyDir)
	if err != nil {
		b.Fatal(err)
	}
	models := []struct {
		name string
		m    func() *ar.Model
		k    int
	}{{"tiny", func() *ar.Model { return tiny }, 16}, {"official-like", officialLikeAR, 32}}
	for _, md := range models {
		if md.name != "tiny" && testing.Short() {
			continue
		}
		m := md.m()
		ortB, err := NewAR(m, o)
		if err != nil {
			b.Fatal(err)
		}
		gens := []struct {
			name string
			o    ar.Options
		}{{"go", ar.Options{Exec: nn.Options{Fast: true, Threads: threads}}}, {"ort", ar.Options{Executor: ortB}}}
		for _, batch := range []int{1, 16} {
			for _, gen := range gens {
				g, err := ar.NewGenerator(m, gen.o)
				if err != nil {
					b.Fatal(err)
				}
				b.Run(fmt.Sprintf("%s/batch=%d/k=%d/%s", md.name, batch, md.k, gen.name), func(b *testing.B) {
					cls := make([]int, batch)
					for i := range cls {
						cls[i] = i % m.Cfg.NumClasses
					}
					s := ar.DefaultSampling()
					s.CFG, s.TopK = 2, 100
					req := ar.Request{Classes: cls, K: md.k, Sampling: s, Seed: 1}
					if _, err := g.Generate(context.Background(), req); err != nil { // warm-up
						b.Fatal(err)
					}
					for b.Loop() {
						if _, err := g.Generate(context.Background(), req); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(batch*md.k)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
				})
			}
		}
		ortB.Close()
		runtime.GC()
	}
}

// officialLikeAR is sdk/ar's benchmark model: width 640, 10 layers, 10 heads, 64,000 codes,
// 256 tokens (133 M parameters), random weights.
func officialLikeAR() *ar.Model {
	c := &ar.Config{Dim: 640, Layers: 10, Heads: 10, KVHeads: 10, MultipleOf: 256, NormEps: 1e-5, RopeBase: 10000,
		BlockSize: 256, NumClasses: 1000, ClassDropout: 0.1, VocabSize: 64000,
		Tokenizer: ar.TokenizerSpec{Levels: []int{8, 8, 8, 5, 5, 5}, CodebookSize: 64000, Registers: 256}}
	c.FFNHidden = ar.FFNHiddenRule(c.Dim, c.MultipleOf, nil)
	m, err := ar.New(c, ar.RandomWeights(c, 1))
	if err != nil {
		panic(err)
	}
	return m
}
