package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// vaeRef reads a reference tensor with its shape.
func vaeRef(t testing.TB, f *safetensors.File, name string) tensor.Tensor {
	t.Helper()
	info, ok := f.Info(name)
	if !ok {
		t.Fatalf("reference has no %s", name)
	}
	data, err := f.ReadFloat32(name)
	if err != nil {
		t.Fatal(err)
	}
	x, err := tensor.FromData(data, info.Shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// vaeMaxRel is max|got-want| / max|want|: the largest error relative to the tensor's scale
// (an elementwise relative error is meaningless near the zeros of a smooth image).
func vaeMaxRel(got, want []float32) float64 {
	var m float64
	for _, w := range want {
		m = max(m, math.Abs(float64(w)))
	}
	if m == 0 {
		return tensor.MaxAbsDiff(got, want)
	}
	return tensor.MaxAbsDiff(got, want) / m
}

// vaePaths are the two ways the engine runs: the deterministic portable reference and the
// fast path (FMA assembly on amd64, two goroutines).
var vaePaths = []struct {
	name string
	opts Options
}{
	{"portable", Options{}},
	{"fast", Options{Fast: true, Threads: 2}},
}

// TestVAEOfficial compares Encode and Decode with the official PyTorch outputs (diffusers
// 0.32.2 AutoencoderKL, CPU, float32) of every case.
//
// Bounds. Both sides compute in float32; they differ only in rounding: PyTorch's convolutions
// (oneDNN / im2col + BLAS, blocked sums with FMA) and GroupNorm statistics sum in another order
// than the engine (index-order float32 sums; float64 statistics), and SDPA's softmax differs in
// the last bits. Each float32 reduction over K terms carries a relative error of order
// K·2^-24 in the worst case and √K·2^-24 typically; the largest K here is 9·8 = 72 per 3x3
// conv, and errors pass through a few dozen layers (GroupNorm re-normalises, so they do not
// grow geometrically). Measured (amd64, AVX-512 fast path): max relative error
// (max|Δ| / max|want|) 4.5e-7 ... 1.14e-6 and NMSE 1.8e-13 ... 1.2e-12 over all cases, stages
// and both paths. The bounds below, 1e-5 relative and 1e-10 NMSE, leave a ~9x margin on the
// first and ~100x on the second while still catching any real bug
// (a wrong padding, order or eps changes the output at the 1e-3 level or more).
// c3 stores bf16 weights: both sides upcast them exactly to float32 and compute in float32,
// so the same bounds apply.
func TestVAEOfficial(t *testing.T) {
	const maxRelBound, nmseBound = 1e-5, 1e-10
	ctx := context.Background()
	for _, c := range refCases(t) {
		for _, p := range vaePaths {
			t.Run(c.name+"/"+p.name, func(t *testing.T) {
				v, err := NewVAE(c.model, p.opts)
				if err != nil {
					t.Fatal(err)
				}
				check := func(stage string, got, want tensor.Tensor) {
					t.Helper()
					if !tensor.SameShape(got, want) {
						t.Fatalf("%s: shape %v, want %v", stage, got.Shape, want.Shape)
					}
					rel, nmse := vaeMaxRel(got.Data, want.Data), tensor.NMSE(got.Data, want.Data)
					t.Logf("%-16s max rel %.2e  NMSE %.2e", stage, rel, nmse)
					if !(rel <= maxRelBound) || !(nmse <= nmseBound) {
						t.Errorf("%s: max rel %.3e (bound %.0e), NMSE %.3e (bound %.0e)", stage, rel, maxRelBound, nmse, nmseBound)
					}
				}
				lat, err := v.Encode(ctx, vaeRef(t, c.ref, "image"))
				if err != nil {
					t.Fatal(err)
				}
				check("encode", lat, vaeRef(t, c.ref, "vae_latents"))
				for _, pair := range [][2]string{
					{"vae_decode_in", "vae_decode_out"},
					{"detok_none_latents", "detok_none_image"},
					{"detok_cfg_latents", "detok_cfg_image"},
					{"detok_apg_latents", "detok_apg_image"},
				} {
					img, err := v.Decode(ctx, vaeRef(t, c.ref, pair[0]))
					if err != nil {
						t.Fatal(err)
					}
					check("decode "+strings.TrimSuffix(pair[0], "_latents"), img, vaeRef(t, c.ref, pair[1]))
				}
			})
		}
	}
}

// TestVAEThreadsBitIdentical checks that the portable path gives the same bits for every
// thread count (work is split by rows, groups and attention query chunks, never along a
// reduction), batched or image by image.
func TestVAEThreadsBitIdentical(t *testing.T) {
	ctx := context.Background()
	for _, c := range refCases(t) {
		t.Run(c.name, func(t *testing.T) {
			img, lat := vaeRef(t, c.ref, "image"), vaeRef(t, c.ref, "vae_decode_in")
			var encRef, decRef string
			for _, threads := range []int{1, 2, 3} {
				v, err := NewVAE(c.model, Options{Threads: threads})
				if err != nil {
					t.Fatal(err)
				}
				e, err := v.Encode(ctx, img)
				if err != nil {
					t.Fatal(err)
				}
				d, err := v.Decode(ctx, lat)
				if err != nil {
					t.Fatal(err)
				}
				if threads == 1 {
					encRef, decRef = tensor.SHA256(e.Data), tensor.SHA256(d.Data)
					continue
				}
				if h := tensor.SHA256(e.Data); h != encRef {
					t.Errorf("Encode, %d threads: sha256 %s, want %s (1 thread)", threads, h, encRef)
				}
				if h := tensor.SHA256(d.Data); h != decRef {
					t.Errorf("Decode, %d threads: sha256 %s, want %s (1 thread)", threads, h, decRef)
				}
			}
			// A batch is the images one by one: the last image alone gives the same bits.
			v, err := NewVAE(c.model, Options{})
			if err != nil {
				t.Fatal(err)
			}
			B := lat.Shape[0]
			one := vaeSlice(t, lat, B-1)
			d1, err := v.Decode(ctx, one)
			if err != nil {
				t.Fatal(err)
			}
			dAll, err := v.Decode(ctx, lat)
			if err != nil {
				t.Fatal(err)
			}
			n := len(d1.Data)
			if tensor.SHA256(d1.Data) != tensor.SHA256(dAll.Data[(B-1)*n:]) {
				t.Error("Decode of the last image alone differs from its slice of the batch")
			}
		})
	}
}

// vaeSlice returns image i of a batch as a batch of one.
func vaeSlice(t testing.TB, x tensor.Tensor, i int) tensor.Tensor {
	t.Helper()
	n := x.Len() / x.Shape[0]
	shape := append([]int{1}, x.Shape[1:]...)
	y, err := tensor.FromData(append([]float32(nil), x.Data[i*n:(i+1)*n]...), shape...)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func vaeTensor(t testing.TB, shape ...int) tensor.Tensor {
	t.Helper()
	x, err := tensor.New(shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// vaeWantErr fails unless err is non-nil, has the package prefix and mentions every part.
func vaeWantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "flextok/engine: ") {
		t.Errorf("error %q lacks the flextok/engine: prefix", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not mention %q", msg, p)
		}
	}
}

// TestVAEBadInput checks that malformed inputs are errors, never panics.
func TestVAEBadInput(t *testing.T) {
	c := refCases(t)[0]
	v, err := NewVAE(c.model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f, C := v.DownsampleFactor(), v.LatentChannels()
	for _, tc := range []struct {
		name string
		x    tensor.Tensor
		want string
	}{
		{"rank3", vaeTensor(t, 3, 4*f, 4*f), "rank 4"},
		{"channels", vaeTensor(t, 1, 4, 4*f, 4*f), "channels"},
		{"height", vaeTensor(t, 1, 3, 4*f+1, 4*f), "not a multiple"},
		{"width", vaeTensor(t, 1, 3, 4*f, 4*f-1), "not a multiple"},
		{"empty", vaeTensor(t, 0, 3, 4*f, 4*f), "empty"},
		{"data", tensor.Tensor{Shape: []int{1, 3, f, f}, Data: make([]float32, 5)}, "images"},
	} {
		t.Run("encode/"+tc.name, func(t *testing.T) {
			_, err := v.Encode(ctx, tc.x)
			vaeWantErr(t, err, "Encode", tc.want)
		})
	}
	for _, tc := range []struct {
		name string
		x    tensor.Tensor
		want string
	}{
		{"rank2", vaeTensor(t, C, 4), "rank 4"},
		{"channels", vaeTensor(t, 1, C+1, 4, 4), "channels"},
		{"empty", vaeTensor(t, 1, C, 0, 4), "empty"},
		{"huge", tensor.Tensor{Shape: []int{1, C, 1 << 20, 1 << 20}}, "latents"},
	} {
		t.Run("decode/"+tc.name, func(t *testing.T) {
			_, err := v.Decode(ctx, tc.x)
			vaeWantErr(t, err, "Decode", tc.want)
		})
	}
	t.Run("decode/toolarge", func(t *testing.T) {
		// The output or an activation would exceed tensor.MaxElements (checked before any
		// allocation; building such latents here would take gigabytes).
		vaeWantErr(t, v.checkSize("Decode", 1<<16, 1<<16), "Decode", "65536x65536")
	})
	t.Run("nil model", func(t *testing.T) {
		_, err := NewVAE(nil, Options{})
		vaeWantErr(t, err, "NewVAE")
		_, err = NewVAE(&model.Model{}, Options{})
		vaeWantErr(t, err, "NewVAE")
	})
	// NaN inputs are not errors (the official code propagates them too), but must not panic.
	t.Run("nan input", func(t *testing.T) {
		x := vaeTensor(t, 1, C, 2, 2)
		for i := range x.Data {
			x.Data[i] = float32(math.NaN())
		}
		if _, err := v.Decode(ctx, x); err != nil {
			t.Fatal(err)
		}
	})
}

// TestVAECancelled checks that a cancelled context stops Encode and Decode with its error.
func TestVAECancelled(t *testing.T) {
	c := refCases(t)[0]
	v, err := NewVAE(c.model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = v.Encode(ctx, vaeRef(t, c.ref, "image"))
	vaeWantErr(t, err, "Encode")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Encode: %v does not wrap context.Canceled", err)
	}
	_, err = v.Decode(ctx, vaeRef(t, c.ref, "vae_decode_in"))
	vaeWantErr(t, err, "Decode")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Decode: %v does not wrap context.Canceled", err)
	}
}

// TestVAEBadWeights checks that a missing, misshaped or non-finite weight, and a config the
// kernels cannot run, are errors naming the problem.
func TestVAEBadWeights(t *testing.T) {
	c := refCases(t)[0]
	cfg := c.model.Config.VAE
	const victim = model.VAEPrefix + "decoder.up_blocks.0.resnets.0.conv2.weight"
	get := func(change func(name string, w []float32) ([]float32, error)) func(string) ([]float32, error) {
		return func(name string) ([]float32, error) {
			w, err := c.model.Tensor(name)
			if err != nil || name != victim {
				return w, err
			}
			return change(name, w)
		}
	}
	t.Run("ok", func(t *testing.T) {
		if _, err := newVAE(cfg, get(func(_ string, w []float32) ([]float32, error) { return w, nil }), Options{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := newVAE(cfg, get(func(n string, _ []float32) ([]float32, error) {
			return nil, fmt.Errorf("%w: missing %s", model.ErrWeights, n)
		}), Options{})
		vaeWantErr(t, err, victim, "missing")
		if !errors.Is(err, model.ErrWeights) {
			t.Errorf("%v does not wrap model.ErrWeights", err)
		}
	})
	t.Run("misshaped", func(t *testing.T) {
		_, err := newVAE(cfg, get(func(_ string, w []float32) ([]float32, error) { return w[1:], nil }), Options{})
		vaeWantErr(t, err, victim, "values, want")
	})
	t.Run("nan", func(t *testing.T) {
		_, err := newVAE(cfg, get(func(_ string, w []float32) ([]float32, error) {
			w = append([]float32(nil), w...)
			w[3] = float32(math.NaN())
			return w, nil
		}), Options{})
		vaeWantErr(t, err, victim, "NaN")
	})
	t.Run("inf", func(t *testing.T) {
		_, err := newVAE(cfg, get(func(_ string, w []float32) ([]float32, error) {
			w = append([]float32(nil), w...)
			w[0] = float32(math.Inf(-1))
			return w, nil
		}), Options{})
		vaeWantErr(t, err, victim, "Inf")
	})
	for _, tc := range []struct {
		name   string
		change func(*model.VAEConfig)
		want   string
	}{
		{"groups", func(c *model.VAEConfig) { c.NormGroups = 3 }, "norm_num_groups"},
		{"no blocks", func(c *model.VAEConfig) { c.BlockOutChannels = nil }, "block_out_channels"},
		{"layers", func(c *model.VAEConfig) { c.LayersPerBlock = 0 }, "layers_per_block"},
		{"scale", func(c *model.VAEConfig) { c.ScalingFactor = 0 }, "scaling_factor"},
		{"latent", func(c *model.VAEConfig) { c.LatentChannels = 0 }, "channels"},
	} {
		t.Run("config/"+tc.name, func(t *testing.T) {
			bad := cfg
			bad.BlockOutChannels = append([]int(nil), cfg.BlockOutChannels...)
			tc.change(&bad)
			_, err := newVAE(bad, c.model.Tensor, Options{})
			vaeWantErr(t, err, tc.want)
		})
	}
}

// TestVAEAttendChunks checks the query chunking of the mid-block attention against one
// kernel call over all queries, bit for bit on the portable path.
func TestVAEAttendChunks(t *testing.T) {
	const n, c = 37, 8
	r := rand.New(rand.NewPCG(1, 2))
	q, k, v := make([]float32, n*c), make([]float32, n*c), make([]float32, n*c)
	for _, s := range [][]float32{q, k, v} {
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
	}
	want := make([]float32, n*c)
	d := kernels.AttnDims{Batch: 1, Heads: 1, SeqQ: n, SeqK: n, HeadDim: c}
	kernels.Attention(kernels.Opts{}, want, q, k, v, d, float32(1/math.Sqrt(c)), kernels.Mask{})
	for _, threads := range []int{1, 2, 5, 64} {
		got := make([]float32, n*c)
		vaeAttend(kernels.Opts{Threads: threads}, got, q, k, v, n, c)
		if tensor.SHA256(got) != tensor.SHA256(want) {
			t.Errorf("threads %d: chunked attention differs from one call", threads)
		}
	}
}

// vaeRandom builds a VAE of cfg with random weights (for benchmarks).
func vaeRandom(tb testing.TB, cfg model.VAEConfig, o Options) *VAE {
	tb.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	var expected []model.Tensor
	full := &model.Config{VAE: cfg}
	for _, x := range full.ExpectedTensors() {
		if x.Part == "vae" {
			expected = append(expected, x)
		}
	}
	size := map[string]int{}
	for _, x := range expected {
		n := 1
		for _, d := range x.Shape {
			n *= d
		}
		size[x.Name] = n
	}
	v, err := newVAE(cfg, func(name string) ([]float32, error) {
		n, ok := size[name]
		if !ok {
			return nil, fmt.Errorf("no tensor %s", name)
		}
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.02)
		}
		if strings.Contains(name, "norm") && strings.HasSuffix(name, ".weight") {
			for i := range w {
				w[i] += 1
			}
		}
		return w, nil
	}, o)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// BenchmarkVAEDecode decodes on the tiny official cases and, unless -short, a 64x64 image (8x8
// latent) with the real VAE widths ([128,256,512,512], 2 layers per block, 32 groups, C=16) and random
// weights.
func BenchmarkVAEDecode(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, v *VAE, lat tensor.Tensor) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Decode(ctx, lat); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, c := range refCases(b) {
		lat := vaeRef(b, c.ref, "vae_decode_in")
		for _, p := range vaePaths {
			b.Run(fmt.Sprintf("exec=go/case=%s/path=%s", c.name, p.name), func(b *testing.B) {
				v, err := NewVAE(c.model, p.opts)
				if err != nil {
					b.Fatal(err)
				}
				run(b, v, lat)
			})
		}
	}
	if testing.Short() {
		return
	}
	cfg := model.VAEConfig{
		InChannels: 3, OutChannels: 3, LatentChannels: 16,
		BlockOutChannels: []int{128, 256, 512, 512}, LayersPerBlock: 2, NormGroups: 32, NormEps: 1e-6,
		MidBlockAttention: true, UseQuantConv: true, UsePostQuantConv: true, ScalingFactor: 0.18215,
	}
	lat := vaeTensor(b, 1, 16, 8, 8)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range lat.Data {
		lat.Data[i] = float32(r.NormFloat64())
	}
	// Fast path only: the portable path takes about 20 s per decode here (2 cores, AMD EPYC;
	// fast path 1.75 s), too long for a routine benchmark run.
	b.Run("exec=go/case=real_widths_64px/path=fast", func(b *testing.B) {
		run(b, vaeRandom(b, cfg, Options{Fast: true, Threads: 2}), lat)
	})
}

// vaeGolden pins the sha256 of the portable path's outputs per case: Encode(image) and
// Decode(vae_decode_in). The same bits must come out natively (any GOARCH), under GOOS=js and
// under GOOS=wasip1 (make test-wasm runs this test there). Regenerate with
// FLEXTOK_VAE_GOLDEN=print go test -run TestVAEGolden -v ./sdk/engine when the arithmetic
// changes on purpose (and say why in the commit).
var vaeGolden = map[string][2]string{
	"c1_w32_zero_e2":        {"f848c04f020f6d25e4b6d3557a187459af65792d323a20fbc24467e5d855506c", "2592eb35624a4022078a92294da2eee36c55057cdeb0cf736ad902bb46b47ecf"},
	"c2_w64_learned_t1":     {"6bc2bad3623c6305199135cf56617f3c644177fc22969f0b6186325bacd65745", "e93121ce14e606756323c95e5b3d116fef47e49391994067e25952afae433d2a"},
	"c3_bf16_w48_e1_d2":     {"1d45f039ce14d8b0290e8328a288ce485443e72a2a0ca49870a4658d37538064", "5da4376f8b1624856f6e9687bc685d90046820945c370d6dc3e4f8b46418fbcc"},
	"c4_w32_nulltok_e2":     {"1cade44e9dcae0396494a460e5264e563f99c84c568ae1a5bce1f2000e1e704a", "4d6a02d8cebd131b9a584dc471f84b4790a28a0f7dc3369f5172875a93c910bb"},
	"c5_w32_img48_tab64_g8": {"f70157c5de56d7f627dd09375286cd018c29562a6384d6a6a766db78018fa82e", "baa49d95e96bf0c9454ba1c386c2e6c91802346e689008796ce1f8a08d28edf0"},
}

func TestVAEGolden(t *testing.T) {
	ctx := context.Background()
	for _, c := range refCases(t) {
		v, err := NewVAE(c.model, Options{})
		if err != nil {
			t.Fatal(err)
		}
		e, err := v.Encode(ctx, vaeRef(t, c.ref, "image"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := v.Decode(ctx, vaeRef(t, c.ref, "vae_decode_in"))
		if err != nil {
			t.Fatal(err)
		}
		got := [2]string{tensor.SHA256(e.Data), tensor.SHA256(d.Data)}
		if os.Getenv("FLEXTOK_VAE_GOLDEN") == "print" {
			fmt.Printf("\t%q: {%q, %q},\n", c.name, got[0], got[1])
			continue
		}
		want, ok := vaeGolden[c.name]
		if !ok {
			t.Errorf("%s: no golden hashes", c.name)
			continue
		}
		if got != want {
			t.Errorf("%s: sha256 (encode, decode) = %q, want %q", c.name, got, want)
		}
	}
}
