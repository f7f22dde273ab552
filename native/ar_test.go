package native

import (
	"context"
	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
)

const arTinyDir = "../conformance/testdata/ar/tiny"

// randomARForDefault is a random-weight AR model made for the default tokenizer (its identity
// from models.LoadDefault: vocabulary 64,000, its maximum token count), small width, and that tokenizer.
func randomARForDefault(t testing.TB) (*ar.Model, ar.Tokenizer) {
	t.Helper()
	eng, err := models.LoadDefault(engine.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	m, err := arfixture.RandomForDefault(arfixture.Shape{Dim: 64, Layers: 2, Heads: 4, KVHeads: 2, MultipleOf: 32},
		[]string{"cross", "star", "hexagon"}, 7)
	if err != nil {
		t.Fatal(err)
	}
	return m, eng
}

// arPair returns the Go generator and the ONNX Runtime one of m.
func arPair(t testing.TB, m *ar.Model, tok ar.Tokenizer, o Options) (*ar.Generator, *ar.Generator, *ARBackend) {
	t.Helper()
	goGen, err := ar.NewGenerator(m, ar.Options{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewAR(m, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ortGen, err := ar.NewGenerator(m, ar.Options{Tokenizer: tok, Executor: b})
	if err != nil {
		t.Fatal(err)
	}
	return goGen, ortGen, b
}

func genIDs(t testing.TB, g *ar.Generator, req ar.Request) [][]uint32 {
	t.Helper()
	ps, err := g.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]uint32, len(ps))
	for i, p := range ps {
		out[i] = p.IDs
	}
	return out
}

// TestARGreedy: greedy ids on ONNX Runtime equal the Go executor's, with and without CFG, on
// the conformance model and on a random-weight model paired with the default tokenizer (every
// token up to the block size).
func TestARGreedy(t *testing.T) {
	o := needORT(t)
	tiny, err := ar.Load(arTinyDir)
	if err != nil {
		t.Fatal(err)
	}
	rnd, tok := randomARForDefault(t)
	for _, tc := range []struct {
		name    string
		m       *ar.Model
		tok     ar.Tokenizer
		classes []int
	}{{"tiny", tiny, nil, []int{0, 3, 4, 1}}, {"random-default-tokenizer", rnd, tok, []int{2, 0, 1}}} {
		goGen, ortGen, _ := arPair(t, tc.m, tc.tok, o)
		for _, cfg := range []float64{1, 3} {
			req := ar.Request{Classes: tc.classes, K: tc.m.Cfg.BlockSize, Sampling: ar.DefaultSampling()}
			req.Greedy, req.CFG = true, cfg
			want, got := genIDs(t, goGen, req), genIDs(t, ortGen, req)
			for i := range want {
				if !slices.Equal(want[i], got[i]) {
					t.Fatalf("%s cfg %v sample %d: ORT ids differ from Go's\n go  %v\n ort %v", tc.name, cfg, i, want[i], got[i])
				}
			}
		}
	}
}

// TestARSampled states the bound for sampled ids: along one sequence (teacher-forced with the
// Go executor's ids), the logits of every position agree within 1e-5 of their largest
// magnitude; with that agreement the sampled ids (temperature 1, top-k 0 and 50, CFG 1 and 3)
// equal the Go executor's for every test seed — a draw changes only when a uniform lands within
// ~1e-5 of a cumulative-probability boundary, which the test seeds do not hit.
func TestARSampled(t *testing.T) {
	o := needORT(t)
	m, tok := randomARForDefault(t)
	goGen, ortGen, b := arPair(t, m, tok, o)
	ctx := context.Background()
	// logits bound
	classes := []int{0, 1, 2, 3} // 3: the null class
	gr := goGen.NewRunner(ctx, len(classes))
	or, err := b.NewStepper(ctx, len(classes))
	if err != nil {
		t.Fatal(err)
	}
	gl, err := gr.Prefill(classes)
	if err != nil {
		t.Fatal(err)
	}
	ol, err := or.Prefill(classes)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	ids := make([]uint32, len(classes))
	for s := 0; s < m.Cfg.BlockSize; s++ {
		var dm, sc float64
		for i := range gl {
			dm = max(dm, math.Abs(float64(gl[i])-float64(ol[i])))
			sc = max(sc, math.Abs(float64(gl[i])))
		}
		worst = max(worst, dm/sc)
		if dm/sc > 1e-5 {
			t.Fatalf("position %d: logits max rel difference %.3g > 1e-5", s, dm/sc)
		}
		V := m.Cfg.VocabSize
		for i := range ids { // the arg-max of Go's logits (teacher forcing)
			row := gl[i*V : (i+1)*V]
			ids[i] = uint32(slices.Index(row, slices.Max(row)))
		}
		if s+1 == m.Cfg.BlockSize {
			break
		}
		if gl, err = gr.Step(ids); err != nil {
			t.Fatal(err)
		}
		if ol, err = or.Step(ids); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("logits: max rel difference %.3g over %d positions", worst, m.Cfg.BlockSize)
	// sampled ids
	for seed := uint64(1); seed <= 2; seed++ {
		for _, cfg := range []float64{1, 3} {
			for _, topK := range []int{0, 50} {
				req := ar.Request{Classes: []int{0, 1, 2}, K: m.Cfg.BlockSize, Sampling: ar.DefaultSampling(), Seed: seed}
				req.CFG, req.TopK = cfg, topK
				want, got := genIDs(t, goGen, req), genIDs(t, ortGen, req)
				for i := range want {
					if !slices.Equal(want[i], got[i]) {
						t.Fatalf("seed %d cfg %v top-k %d sample %d: sampled ids differ\n go  %v\n ort %v", seed, cfg, topK, i, want[i], got[i])
					}
				}
			}
		}
	}
}

// TestARExportDir: with Options.ExportDir the two graphs are saved under the model's cache
// directory, and a second NewAR opens them (the same ids) without exporting again.
func TestARExportDir(t *testing.T) {
	o := needORT(t)
	m, err := ar.Load(arTinyDir)
	if err != nil {
		t.Fatal(err)
	}
	o.ExportDir = t.TempDir()
	_, g1, b1 := arPair(t, m, nil, o)
	for _, f := range []string{"ar_prefill.onnx", "ar_step.onnx"} {
		if _, err := os.Stat(filepath.Join(b1.CacheDir(o.ExportDir), f)); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := os.Stat(filepath.Join(b1.CacheDir(o.ExportDir), "ar_step.onnx"))
	_, g2, b2 := arPair(t, m, nil, o)
	st2, _ := os.Stat(filepath.Join(b2.CacheDir(o.ExportDir), "ar_step.onnx"))
	if !st.ModTime().Equal(st2.ModTime()) {
		t.Fatal("the second NewAR exported again")
	}
	req := ar.Request{Classes: []int{1, 2}, K: 16, Sampling: ar.DefaultSampling(), Seed: 9}
	req.CFG = 2
	a, b := genIDs(t, g1, req), genIDs(t, g2, req)
	if !slices.Equal(a[0], b[0]) || !slices.Equal(a[1], b[1]) {
		t.Fatal("cached graphs generate other ids")
	}
	// errors: a stepper misused
	s, _ := b1.NewStepper(context.Background(), 2)
	if _, err := s.Step([]uint32{1, 2}); err == nil {
		t.Fatal("step before prefill accepted")
	}
	if _, err := s.Prefill([]int{0, 99}); err == nil {
		t.Fatal("class 99 accepted")
	}
}
