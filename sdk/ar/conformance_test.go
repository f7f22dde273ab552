package ar

import (
	"bytes"
	"context"
	"math"
	"slices"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

const (
	tinyDir = "../../conformance/testdata/ar/tiny"
	refsST  = "../../conformance/testdata/ar/refs.safetensors"
)

type refs struct {
	f *safetensors.File
	t *testing.T
}

func openRefs(t *testing.T) refs {
	f, err := safetensors.OpenFile(refsST)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return refs{f, t}
}

func (r refs) f32(name string) []float32 {
	v, err := r.f.ReadFloat32(name)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

func (r refs) i64(name string) []int64 {
	v, err := r.f.ReadInt64(name)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

func tinyGen(t testing.TB, o nn.Options) *Generator {
	m, err := Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(m, Options{Exec: o, Tokenizer: fictional()})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// maxRel is max |got − want| / max(|want|∞, tiny): the error relative to the logits' scale.
func maxRel(got, want []float32) float64 {
	var d, s float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		s = max(s, math.Abs(float64(want[i])))
	}
	return d / max(s, 1e-30)
}

var paths = []struct {
	name string
	o    nn.Options
}{{"portable", nn.Options{}}, {"portable-3threads", nn.Options{Threads: 3}}, {"fast", nn.Options{Fast: true}}}

func TestLogits(t *testing.T) {
	r := openRefs(t)
	labels := r.i64("prefill_labels")
	stepIDs := r.i64("step_ids")
	wantPre, wantSteps := r.f32("prefill_logits"), r.f32("step_logits")
	n := len(labels)
	V := len(wantPre) / n
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			g := tinyGen(t, p.o)
			run := g.NewRunner(context.Background(), n)
			cls := make([]int, n)
			for i, l := range labels {
				cls[i] = int(l)
			}
			got, err := run.Prefill(cls)
			if err != nil {
				t.Fatal(err)
			}
			rel := maxRel(got, wantPre)
			t.Logf("prefill: max rel %.3g", rel)
			if rel > 1e-5 {
				t.Errorf("prefill logits: max rel error %.3g > 1e-5", rel)
			}
			for s := 0; s < len(stepIDs)/n; s++ {
				ids := make([]uint32, n)
				for i := range ids {
					ids[i] = uint32(stepIDs[s*n+i])
				}
				got, err := run.Step(ids)
				if err != nil {
					t.Fatal(err)
				}
				rel := maxRel(got, wantSteps[s*n*V:(s+1)*n*V])
				t.Logf("step %d: max rel %.3g", s+1, rel)
				if rel > 1e-5 {
					t.Errorf("step %d logits: max rel error %.3g > 1e-5", s+1, rel)
				}
			}
		})
	}
}

func TestGreedy(t *testing.T) {
	r := openRefs(t)
	cond := r.i64("cond_labels")
	cls := make([]int, len(cond))
	for i, c := range cond {
		cls[i] = int(c)
	}
	cases := []struct {
		ref    string
		cfg    float64
		guided int
	}{{"greedy_nocfg", 1, 0}, {"greedy_cfg", 3, 0}, {"greedy_cfg_int1", 3, 1 + 2}}
	for _, p := range paths {
		g := tinyGen(t, p.o)
		for _, c := range cases {
			want := r.i64(c.ref)
			s := DefaultSampling()
			s.Greedy, s.CFG, s.GuidedTokens = true, c.cfg, c.guided
			var streamed [][]uint32
			ps, err := g.Generate(context.Background(), Request{Classes: cls, K: 8, Sampling: s,
				OnToken: func(n int, ids []uint32) error {
					streamed = append(streamed, append([]uint32(nil), ids...))
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range ps {
				for j, id := range p.IDs {
					if int64(id) != want[i*8+j] || streamed[j][i] != id {
						t.Fatalf("%s %s: sample %d = %v (streamed %v), want %v", p.Model.Name, c.ref, i, p.IDs, streamed, want[i*8:(i+1)*8])
					}
				}
				if *p.Cond.Class != cls[i] || p.Count() != 8 {
					t.Fatalf("payload cond %v count %d", *p.Cond.Class, p.Count())
				}
				if err := p.Validate(); err != nil {
					t.Fatalf("payload: %v", err)
				}
			}
		}
	}
}

func TestFilter(t *testing.T) {
	r := openRefs(t)
	in := r.f32("filter_in")
	raw, err := r.f.ReadRaw("filter_kept")
	if err != nil {
		t.Fatal(err)
	}
	V := len(raw) / 2
	for row := 0; row < 2; row++ {
		l := append([]float32(nil), in[row*V:(row+1)*V]...)
		Filter(l, 0.7, 50, 0.9, nil)
		kept := 0
		for i, v := range l {
			got := !math.IsInf(float64(v), -1)
			if got != (raw[row*V+i] == 1) {
				t.Fatalf("row %d id %d: kept %v, reference %v", row, i, got, raw[row*V+i])
			}
			if got {
				kept++
			}
		}
		t.Logf("row %d: %d ids kept", row, kept)
	}
}

// TestSeedGolden pins sampled ids for a seed on the portable path: the same ids natively,
// with -tags purego and under GOOS=js (make test-wasm).
func TestSeedGolden(t *testing.T) {
	g := tinyGen(t, nn.Options{})
	s := Sampling{CFG: 2, Temperature: 1, TopK: 100, TopP: 0.95}
	ps, err := g.Generate(context.Background(), Request{Classes: []int{0, 1, 2, 3, 4}, K: 16, Sampling: s, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, p := range ps {
		got = append(got, p.IDs...)
	}
	// A smaller batch draws the same ids for its samples (one stream per sample index).
	few, err := g.Generate(context.Background(), Request{Classes: []int{0, 1}, K: 16, Sampling: s, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	for i := range few {
		for j, id := range few[i].IDs {
			if ps[i].IDs[j] != id {
				t.Fatalf("sample %d in a batch of 2 %v, of 5 %v", i, few[i].IDs, ps[i].IDs)
			}
		}
	}
	if h := hashIDs(got); h != seedGolden {
		t.Fatalf("seeded ids hash %s, golden %s (ids %v)", h, seedGolden, got)
	}
	// The samples drawn on 3 goroutines (seq.next shares them out) are the same ids.
	ps3, err := tinyGen(t, nn.Options{Threads: 3}).Generate(context.Background(), Request{Classes: []int{0, 1, 2, 3, 4}, K: 16, Sampling: s, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	var got3 []uint32
	for _, p := range ps3 {
		got3 = append(got3, p.IDs...)
	}
	if h := hashIDs(got3); h != seedGolden {
		t.Fatalf("seeded ids on 3 threads hash %s, golden %s", h, seedGolden)
	}
}

func TestKthLargest(t *testing.T) {
	r := newRNG(3, 4)
	for n := 1; n < 300; n += 7 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(int(r.uniform() * 20)) // many ties
		}
		s := append([]float32(nil), v...)
		slices.Sort(s)
		for k := 1; k <= n; k += 3 {
			if got := kthLargestInPlace(append([]float32(nil), v...), k); got != s[n-k] {
				t.Fatalf("quickselect: n %d k %d: %v, want %v", n, k, got, s[n-k])
			}
			var b sampleBuf
			if got := b.kthLargestHeap(v, k); got != s[n-k] {
				t.Fatalf("heap: n %d k %d: %v, want %v", n, k, got, s[n-k])
			}
		}
	}
}

// TestStream sends every sample as the payload stream form while it is generated (one chunk
// per token, encoded and decoded as bytes) and gets back the payloads Generate returns.
func TestStream(t *testing.T) {
	g := tinyGen(t, nn.Options{})
	classes := []int{1, 4}
	const k = 6
	wire := make([][]byte, len(classes))
	for i, c := range classes {
		h := g.StreamHeader(c, k)
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		wire[i] = b
	}
	s := DefaultSampling()
	s.CFG = 3
	ps, err := g.Generate(context.Background(), Request{Classes: classes, K: k, Sampling: s, Seed: 9,
		OnToken: func(n int, ids []uint32) error {
			for i := range classes {
				h := g.StreamHeader(classes[i], k)
				c := payload.Chunk{Start: n, IDs: []uint32{ids[i]}, End: n == k-1}
				b, err := c.AppendBinary(wire[i], &h)
				if err != nil {
					return err
				}
				wire[i] = b
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		st, err := payload.DecodeStream(wire[i], payload.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.Payload()
		if err != nil || !st.Done() {
			t.Fatalf("stream %d: %v (done %v)", i, err, st.Done())
		}
		a, err1 := got.MarshalBinary()
		b, err2 := p.MarshalBinary()
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Fatalf("stream %d: payload differs from Generate's (%v, %v)", i, err1, err2)
		}
	}
}
