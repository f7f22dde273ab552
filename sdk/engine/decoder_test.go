package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// tokenIDs returns the reference token ids as one sequence per image.
func (c *refCase) tokenIDs(t *testing.T) [][]uint32 {
	ids := c.i64(t, "token_ids")
	info, _ := c.ref.Info("token_ids")
	B, R := info.Shape[0], info.Shape[1]
	out := make([][]uint32, B)
	for i := range out {
		for _, v := range ids[i*R : (i+1)*R] {
			out[i] = append(out[i], uint32(v))
		}
	}
	return out
}

// detokSteps reads the case's detok_steps from MANIFEST.json (4 in the README).
func detokSteps(t *testing.T, name string) int {
	b, err := os.ReadFile(filepath.Join(officialRoot, "MANIFEST.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Cases map[string]struct {
			DetokSteps int `json:"detok_steps"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s := m.Cases[name].DetokSteps
	if s < 1 {
		t.Fatalf("%s: no detok_steps in MANIFEST.json", name)
	}
	return s
}

func TestDecoderOfficial(t *testing.T) {
	for _, c := range refCases(t) {
		for _, v := range engineVariants {
			t.Run(c.name+"/"+v.name, func(t *testing.T) {
				dec, err := NewDecoder(c.model, v.o)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				ids := c.tokenIDs(t)
				B := len(ids)
				ts := c.f32(t, "dec_t").Data
				ks := c.i64(t, "dec_k")
				xt := c.f32(t, "dec_x_t")
				vc, vu := c.f32(t, "velocity_cond"), c.f32(t, "velocity_uncond")
				for j, tj := range ts {
					stages := map[string][]float32{}
					var tr tracer
					if j == 0 {
						// Appended: items of several sequence layouts (the single-token null
						// condition) emit a stage once per group, conditional items first.
						tr = func(s string, d []float32) { stages[s] = append(stages[s], d...) }
					}
					k := make([]int, B)
					for i := range k {
						k[i] = int(ks[j*B+i])
					}
					cond, err := dec.bind(ids, k, tr)
					if err != nil {
						t.Fatal(err)
					}
					items := make([]flow.Item, 2*B)
					for i := range items {
						x := slice(slice(xt, j), i%B)
						items[i] = flow.Item{Image: i % B, Uncond: i >= B, X: x, V: tensor.Tensor{Shape: x.Shape, Data: make([]float32, len(x.Data))}}
					}
					if err := cond.velocity(ctx, tj, items, tr); err != nil {
						t.Fatal(err)
					}
					// Stage by stage for the first call (t = 1), in execution order.
					if j == 0 {
						compare(t, "dec0_registers_posemb", stages["dec_registers_posemb"], c.f32(t, "dec0_registers_posemb").Data, boundStage, whyStage)
						compare(t, "dec0_registers_in", stages["dec_registers_in"], c.f32(t, "dec0_registers_in").Data, boundStage, whyStage)
						var un []float32
						for i := 0; i < B; i++ {
							un = append(un, cond.uncond...)
						}
						compare(t, "dec0_uncond_registers_in", un, c.f32(t, "dec0_uncond_registers_in").Data, boundStage, whyStage)
						W := dec.cfg.Trunk.Width
						pIn := stages["dec_patches_in"]
						compare(t, "dec0_patches_in", pIn[:len(pIn)/2], c.f32(t, "dec0_patches_in").Data, boundStage, whyStage)
						var temb []float32
						for i := 0; i < B; i++ {
							temb = append(temb, stages["dec_temb"][:W]...)
						}
						compare(t, "dec0_temb", temb, c.f32(t, "dec0_temb").Data, boundStage, whyTemb)
						tp := stages["dec_trunk_patches"]
						compare(t, "dec0_trunk_patches", tp[:len(tp)/2], c.f32(t, "dec0_trunk_patches").Data, boundStage, whyStage)
					}
					var gotC, gotU []float32
					for i := 0; i < B; i++ {
						gotC = append(gotC, items[i].V.Data...)
						gotU = append(gotU, items[B+i].V.Data...)
					}
					tag := fmt.Sprintf("t=%g,k=%v", tj, k)
					compare(t, "velocity_cond/"+tag, gotC, slice(vc, j).Data, boundStage, whyStage)
					compare(t, "velocity_uncond/"+tag, gotU, slice(vu, j).Data, boundStage, whyStage)
				}

				// Full detokenize: token_ids[i, :detok_k[i]] through flow.Sample with the injected noise.
				dk := c.i64(t, "detok_k")
				prefix := make([][]uint32, B)
				for i := range prefix {
					prefix[i] = ids[i][:dk[i]]
				}
				den, err := dec.Bind(prefix, nil)
				if err != nil {
					t.Fatal(err)
				}
				noise := c.f32(t, "detok_noise")
				var nz []tensor.Tensor
				for i := 0; i < B; i++ {
					nz = append(nz, slice(noise, i))
				}
				scales := c.f32(t, "detok_guidance_scale").Data
				steps := detokSteps(t, c.name)
				for g, gname := range []string{"none", "cfg", "apg"} {
					out, err := flow.Sample(ctx, den, flow.Options{Steps: steps, Guidance: float64(scales[g]), APG: gname == "apg", Noise: nz})
					if err != nil {
						t.Fatal(err)
					}
					var got []float32
					for _, x := range out {
						got = append(got, x.Data...)
					}
					compare(t, "detok_"+gname+"_latents", got, c.f32(t, "detok_"+gname+"_latents").Data, boundStage, whyDetok)
				}
			})
		}
	}
}

// The time embedding's cos and sin come from exp, cos and sin within an ulp of torch's
// vectorised float32 versions; its arguments reach 1000·t/max_timestep (1000 for c2), where one
// ulp of a frequency moves an argument by ~6e-5, but the measured error stays below 1e-6
// relative, so the stage bound applies.
const whyTemb = "fp32; exp, cos, sin within an ulp of torch's"

// Four Euler steps through CFG or APG (scale 3) carry the per-call error; the sampler itself is
// exact (sdk/flow), and the measured error stays below 5e-7, so the stage bound applies.
const whyDetok = "fp32, 4 steps of per-call error through CFG/APG with scale 3"

// detokenize runs a full guided sample of the case's detok prefixes with the given options.
func detokenize(t *testing.T, c *refCase, o Options, apg bool) ([]float32, *Decoder) {
	t.Helper()
	dec, err := NewDecoder(c.model, o)
	if err != nil {
		t.Fatal(err)
	}
	ids := c.tokenIDs(t)
	dk := c.i64(t, "detok_k")
	for i := range ids {
		ids[i] = ids[i][:dk[i]]
	}
	den, err := dec.Bind(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	noise := c.f32(t, "detok_noise")
	var nz []tensor.Tensor
	for i := range ids {
		nz = append(nz, slice(noise, i))
	}
	out, err := flow.Sample(context.Background(), den, flow.Options{Steps: 3, Guidance: 2.5, APG: apg, Noise: nz})
	if err != nil {
		t.Fatal(err)
	}
	var got []float32
	for _, x := range out {
		got = append(got, x.Data...)
	}
	return got, dec
}

// Each path gives the same bits for any thread count, through a whole guided sample.
func TestDecoderThreadsBitIdentical(t *testing.T) {
	for _, c := range refCases(t) {
		a, _ := detokenize(t, c, Options{Threads: 1}, true)
		b, dec := detokenize(t, c, Options{Threads: 2}, true)
		sameBits(t, c.name+": Threads=1 vs 2", a, b)
		// The fast path too: threads share items (small models) or rows, never a sum.
		fa, _ := detokenize(t, c, Options{Threads: 1, Fast: true}, true)
		fb, _ := detokenize(t, c, Options{Threads: 2, Fast: true}, true)
		sameBits(t, c.name+": fast, Threads=1 vs 2", fa, fb)
		// The sampler used 3 distinct times: 3 cache entries, each computed once.
		if n := len(dec.cache); n != 3 {
			t.Errorf("%s: %d cached times after a 3-step sample, want 3", c.name, n)
		}
	}
}

// Batching (all items of a step in one call) and the per-t cache change no bit: each item run
// alone, on a fresh decoder, gives the same velocity on the portable path.
func TestDecoderBatchingAndCache(t *testing.T) {
	for _, c := range refCases(t) {
		ids := c.tokenIDs(t)
		B := len(ids)
		xt := c.f32(t, "dec_x_t")
		ts := c.f32(t, "dec_t").Data
		dec, err := NewDecoder(c.model, Options{})
		if err != nil {
			t.Fatal(err)
		}
		den, err := dec.Bind(ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		items := make([]flow.Item, 2*B)
		for i := range items {
			items[i] = flow.Item{Image: i % B, Uncond: i >= B, X: slice(slice(xt, 1), i%B)}
		}
		if err := den.Velocity(context.Background(), ts[1], items); err != nil {
			t.Fatal(err)
		}
		for i, it := range items {
			fresh, err := NewDecoder(c.model, Options{})
			if err != nil {
				t.Fatal(err)
			}
			d1, err := fresh.Bind(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			one := []flow.Item{{Image: it.Image, Uncond: it.Uncond, X: it.X, V: tensor.Tensor{Shape: it.X.Shape, Data: make([]float32, len(it.X.Data))}}}
			if err := d1.Velocity(context.Background(), ts[1], one); err != nil {
				t.Fatal(err)
			}
			sameBits(t, fmt.Sprintf("%s item %d alone vs batched", c.name, i), one[0].V.Data, it.V.Data)
		}
		tc := dec.timeCond(ts[1])
		if tc != dec.timeCond(ts[1]) {
			t.Errorf("%s: timeCond recomputed for the same t", c.name)
		}
	}
}

func TestDecoderErrors(t *testing.T) {
	c := refCases(t)[0]
	ctx := context.Background()
	_, err := newDecoder(c.model.Config, getFunc(func(name string) ([]float32, error) {
		if strings.HasSuffix(name, "adaLN_modulation.1.bias") || strings.HasSuffix(name, "dropout_mask_token") {
			return nil, fmt.Errorf("not found")
		}
		return c.model.Tensor(name)
	}), Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "flextok/engine: ") ||
		!strings.Contains(err.Error(), "blocks.0.adaLN_modulation.1.bias") || !strings.Contains(err.Error(), "dec_nested_dropout.dropout_mask_token") {
		t.Errorf("missing tensors: got %v", err)
	}

	dec, err := NewDecoder(c.model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	R := dec.Registers()
	badBind := []struct {
		ids [][]uint32
		k   []int
	}{
		{nil, nil},
		{[][]uint32{{}}, nil},                  // k = 0
		{[][]uint32{{1, 2}}, []int{0}},         // k < 1
		{[][]uint32{{1, 2}}, []int{R + 1}},     // k > R
		{[][]uint32{{1, 2}}, []int{1, 2}},      // len(k) != len(ids)
		{[][]uint32{{64000}}, nil},             // id outside the codebook
		{[][]uint32{make([]uint32, R+1)}, nil}, // more ids than registers
	}
	for _, b := range badBind {
		if _, err := dec.Bind(b.ids, b.k); err == nil || !strings.HasPrefix(err.Error(), "flextok/engine: ") {
			t.Errorf("Bind(%d seqs, k=%v): got %v", len(b.ids), b.k, err)
		}
	}
	den, err := dec.Bind([][]uint32{{5, 6, 7}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := slice(slice(c.f32(t, "dec_x_t"), 0), 0)
	C, h, w := x.Shape[0], x.Shape[1], x.Shape[2]
	badItems := []flow.Item{
		{Image: 1, X: x},
		{Image: -1, X: x},
		{X: tensor.Tensor{Shape: []int{C + 1, h, w}, Data: make([]float32, (C+1)*h*w)}},
		{X: tensor.Tensor{Shape: []int{C, h + 1, w}, Data: make([]float32, C*(h+1)*w)}},
		{X: tensor.Tensor{Shape: []int{C, h}, Data: make([]float32, C*h)}},
		{X: x, V: tensor.Tensor{Shape: []int{C, w, h + 2}}},
	}
	for i, it := range badItems {
		if err := den.Velocity(ctx, 0.5, []flow.Item{it}); err == nil || !strings.HasPrefix(err.Error(), "flextok/engine: ") {
			t.Errorf("bad item %d: got %v", i, err)
		}
	}
	for _, tt := range []float32{-0.1, float32(dec.cfg.MaxTimestep) * 2, float32(math.NaN())} {
		if err := den.Velocity(ctx, tt, []flow.Item{{X: x}}); err == nil {
			t.Errorf("t = %v accepted", tt)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := den.Velocity(cctx, 0.5, []flow.Item{{X: x}}); err != context.Canceled {
		t.Errorf("cancelled context: got %v", err)
	}
	// V is allocated when the caller gives none.
	items := []flow.Item{{X: x}}
	if err := den.Velocity(ctx, 0.5, items); err != nil || len(items[0].V.Data) != len(x.Data) {
		t.Errorf("nil V: err %v, %d values", err, len(items[0].V.Data))
	}
}

// d12Decoder is a decoder of the official d12 shapes (W 768, 12 heads of 64, depth 12, SwiGLU
// 2048, E = 2, head adaLN, 16 latent channels, 2×2 patches, 16×16 grid, 256 registers) with
// seeded random weights: uniform in ±1/sqrt(fan-in) for matrices, ±0.5 for vectors and tables.
// The config is a literal and the weights come from a generator keyed by the config's own
// weight table, so NewDecoder's real loading path is used.
func d12Decoder(tb testing.TB, o Options) *Decoder {
	tb.Helper()
	const W = 768
	cfg := &model.Config{
		VAE:     model.VAEConfig{InChannels: 3, OutChannels: 3, LatentChannels: 16, BlockOutChannels: []int{4}, LayersPerBlock: 1},
		Encoder: model.EncoderConfig{RegistersNMax: 256},
		FSQ:     model.FSQConfig{Levels: []int{8, 8, 8, 5, 5, 5}},
		Decoder: model.DecoderConfig{
			Modules: []model.Module{
				{Name: "dec_from_latents", Class: "LinearLayer"},
				{Name: "dec_registers_posemb_module", Class: "PositionalEmbeddingAdder"},
				{Name: "dec_nested_dropout", Class: "MaskedNestedDropout"},
				{Name: "dec_latent_dropout", Class: "LearnedNullCond"},
				{Name: "dec_noise_patch_emb", Class: "PatchEmbedder"},
				{Name: "dec_patches_posemb_module", Class: "PositionalEmbeddingAdder"},
				{Name: "dec_time_embedder", Class: "TimestepEmbedder"},
				{Name: "dec_transformer", Class: "FlexTransformer"},
				{Name: "dec_to_patches", Class: "ToPatchesLinearHead"},
			},
			Trunk: model.TrunkConfig{Width: W, Depth: 12, HeadDim: 64, Heads: 12, MLPRatio: 4, MLPHidden: 2048,
				Gated: true, QKNorm: true, NormEps: 1e-5, AdaLNExpansion: 2},
			LatentDim: 6, ChannelsIn: 16, ChannelsOut: 16, PatchSize: [2]int{2, 2},
			PatchPosemb:    model.PosembConfig{Module: "dec_patches_posemb_module", Type: "sincos", MaxSizes: []int{16, 16}, Scaling: "absolute"},
			RegisterPosemb: model.PosembConfig{Module: "dec_registers_posemb_module", Type: "learnable_sum", MaxSizes: []int{256}, Scaling: "absolute"},
			NullCond:       model.NullCondLearned, PerSubseqEmbs: true, MaskMode: "full",
			MaxTimestep: 1000, FreqEmbSize: 256, HeadAdaLN: true, HeadNormEps: 1e-5,
		},
	}
	shapes := map[string][]int{}
	for _, tn := range cfg.ExpectedTensors() {
		shapes[tn.Name] = tn.Shape
	}
	r := rand.New(rand.NewPCG(12, 12))
	get := func(name string) ([]float32, error) {
		s, ok := shapes[name]
		if !ok {
			return nil, fmt.Errorf("no tensor %s", name)
		}
		n, a := 1, 0.5
		for _, d := range s {
			n *= d
		}
		if len(s) == 2 {
			a = 1 / math.Sqrt(float64(s[1]))
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((2*r.Float64() - 1) * a)
		}
		return v, nil
	}
	dec, err := newDecoder(cfg, getFunc(get), o)
	if err != nil {
		tb.Fatal(err)
	}
	return dec
}

// BenchmarkDecoderForward times one velocity call at d12 shapes for a batch of 2 items (the
// conditional and unconditional evaluation of one 256 px image: 256 patches + 256 registers
// each), with the per-t adaLN cache warm as in a sampler's steady state. Run it with
// -bench DecoderForward -benchtime 1x: the portable path takes tens of seconds per call.
func BenchmarkDecoderForward(b *testing.B) {
	for _, p := range []struct {
		name string
		o    Options
	}{
		{"portable", Options{Threads: 2}},
		{"fast", Options{Threads: 2, Fast: true}},
	} {
		b.Run("exec=go/path="+p.name+"/model=d12/items=2/threads=2", func(b *testing.B) {
			dec := d12Decoder(b, p.o)
			ids := make([]uint32, 256)
			for i := range ids {
				ids[i] = uint32(i * 250)
			}
			den, err := dec.Bind([][]uint32{ids}, []int{32})
			if err != nil {
				b.Fatal(err)
			}
			x := tensor.Tensor{Shape: []int{16, 32, 32}, Data: make([]float32, 16*32*32)}
			for i := range x.Data {
				x.Data[i] = float32(math.Sin(float64(i)))
			}
			items := []flow.Item{{Image: 0, X: x}, {Image: 0, Uncond: true, X: x}}
			ctx := context.Background()
			if err := den.Velocity(ctx, 0.5, items); err != nil { // warm the per-t cache
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := den.Velocity(ctx, 0.5, items); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(dec.Flops(2, 32, 32)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// Golden sha256 of portable-path outputs on the first official case (c1_w32_zero_e2): the
// encoder's registers and the decoder's velocities (cond and uncond, t = 1). The portable path
// is bit-identical on every platform, so these also pass under GOOS=js and GOOS=wasip1
// (make test-wasm).
const (
	goldenCase       = "c1_w32_zero_e2"
	goldenRegisters  = "ac851e946e2c89eb3f2bad8711355279f1ed5444951e61b0306512df4e71bb72"
	goldenVelocities = "50d4c90117d795587ea5ad474163b6edbc65a868a2d71ab49a2934879cf9ec2a"
)

func TestPortableGolden(t *testing.T) {
	var c *refCase
	for _, rc := range refCases(t) {
		if rc.name == goldenCase {
			c = rc
		}
	}
	if c == nil {
		t.Skip("no case " + goldenCase)
	}
	enc, err := NewEncoder(c.model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	z, err := enc.Registers(context.Background(), c.f32(t, "vae_latents"))
	if err != nil {
		t.Fatal(err)
	}
	if h := tensor.SHA256(z.Data); h != goldenRegisters {
		t.Errorf("encoder registers sha256 %s, want %s", h, goldenRegisters)
	}
	dec, err := NewDecoder(c.model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := c.tokenIDs(t)
	den, err := dec.Bind(ids, []int{7, 32})
	if err != nil {
		t.Fatal(err)
	}
	xt := slice(c.f32(t, "dec_x_t"), 0)
	items := []flow.Item{{Image: 0, X: slice(xt, 0)}, {Image: 1, X: slice(xt, 1)}, {Image: 0, Uncond: true, X: slice(xt, 0)}, {Image: 1, Uncond: true, X: slice(xt, 1)}}
	if err := den.Velocity(context.Background(), 1, items); err != nil {
		t.Fatal(err)
	}
	var v []float32
	for _, it := range items {
		v = append(v, it.V.Data...)
	}
	if h := tensor.SHA256(v); h != goldenVelocities {
		t.Errorf("decoder velocities sha256 %s, want %s", h, goldenVelocities)
	}
}
