package flow

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// target is a toy analytic denoiser: the velocity (x_t - x0)/t of the straight path through x0,
// which makes every Euler step exact, so the sampler must land on x0 (cond) or on x0u for the
// unconditional items.
type target struct {
	x0, x0u [][]float32 // per image
	calls   int
	ts      []float32
	sizes   []int
}

func (d *target) Velocity(ctx context.Context, t float32, batch []Item) error {
	d.calls++
	d.ts = append(d.ts, t)
	d.sizes = append(d.sizes, len(batch))
	for _, it := range batch {
		x0 := d.x0[it.Image]
		if it.Uncond {
			x0 = d.x0u[it.Image]
		}
		for j, x := range it.X.Data {
			it.V.Data[j] = float32((float64(x) - float64(x0[j])) / float64(t))
		}
	}
	return nil
}

func randData(seed uint64, n int, scale float64) []float32 {
	g := NewNormal(seed, 99)
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(scale * g.Float64())
	}
	return out
}

func TestSampleLandsOnTarget(t *testing.T) {
	shapes := [][]int{{4, 8, 8}, {2, 4, 6}}
	d := &target{
		x0:  [][]float32{randData(1, 256, 1.5), randData(2, 48, 1.5)},
		x0u: [][]float32{randData(3, 256, 1.5), randData(4, 48, 1.5)},
	}
	for _, steps := range []int{1, 3, 20} {
		*d = target{x0: d.x0, x0u: d.x0u}
		previews := 0
		opt := Options{Steps: steps, Shapes: shapes, Seed: 7, OnStep: func(s Step) error {
			previews++
			// x_t - t*v is x0 at every step for this denoiser.
			for i := range s.X0 {
				if e := tensor.MaxAbsDiff(s.X0[i].Data, d.x0[i]); e > 4e-6 {
					t.Errorf("T=%d step %d image %d: preview off by %g", steps, s.Index, i, e)
				}
			}
			return nil
		}}
		xs, err := Sample(context.Background(), d, opt)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range xs {
			if !tensor.SameShape(x, tensor.Tensor{Shape: shapes[i]}) {
				t.Fatalf("T=%d image %d: shape %v", steps, i, x.Shape)
			}
			// The last step is x - float32(dt*v) with v = (x - x0)/dt: a few float32 roundings.
			if e := tensor.MaxAbsDiff(x.Data, d.x0[i]); e > 2e-6 {
				t.Errorf("T=%d image %d: max |x - x0| = %g", steps, i, e)
			}
		}
		if d.calls != steps || previews != steps {
			t.Errorf("T=%d: %d denoiser calls, %d callbacks", steps, d.calls, previews)
		}
		for k, tt := range d.ts {
			if want := float32(float64(steps-k) / float64(steps)); tt != want || d.sizes[k] != 2 {
				t.Errorf("T=%d call %d: t = %v (want %v), batch of %d (want 2)", steps, k, tt, want, d.sizes[k])
			}
		}
	}
}

// TestSampleCFGLandsOnMix: with CFG the velocity is that of the straight path through
// x0u + s(x0 - x0u), so the sampler lands there.
func TestSampleCFGLandsOnMix(t *testing.T) {
	const s = 3.0
	d := &target{x0: [][]float32{randData(1, 96, 1)}, x0u: [][]float32{randData(2, 96, 1)}}
	xs, err := Sample(context.Background(), d, Options{Steps: 10, Guidance: s, Shapes: [][]int{{6, 4, 4}}})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 96)
	for j := range want {
		want[j] = float32(float64(d.x0u[0][j]) + s*(float64(d.x0[0][j])-float64(d.x0u[0][j])))
	}
	if e := tensor.MaxAbsDiff(xs[0].Data, want); e > 2e-5 {
		t.Errorf("max |x - mix| = %g", e)
	}
	for k, n := range d.sizes {
		if n != 2 {
			t.Fatalf("call %d: batch of %d, want 2 (cond + uncond)", k, n)
		}
	}
}

// TestBatchLayout checks the items of one call: conditional items of every image, then
// unconditional ones, sharing X, with preallocated V of the right shape.
func TestBatchLayout(t *testing.T) {
	shapes := [][]int{{2, 2, 2}, {1, 3, 1}, {2, 1, 1}}
	var gotT []float64
	den := DenoiserFunc(func(ctx context.Context, tt float32, batch []Item) error {
		if len(batch) != 6 {
			t.Fatalf("batch of %d, want 6", len(batch))
		}
		for k, it := range batch {
			if it.Image != k%3 || it.Uncond != (k >= 3) {
				t.Fatalf("item %d: Image %d Uncond %v", k, it.Image, it.Uncond)
			}
			if !tensor.SameShape(it.X, tensor.Tensor{Shape: shapes[k%3]}) || !tensor.SameShape(it.V, it.X) || len(it.V.Data) != len(it.X.Data) {
				t.Fatalf("item %d: X %v, V %v", k, it.X.Shape, it.V.Shape)
			}
			if k >= 3 && &it.X.Data[0] != &batch[k-3].X.Data[0] {
				t.Fatalf("item %d does not share X with item %d", k, k-3)
			}
			for j := range it.V.Data {
				it.V.Data[j] = 0.5
			}
		}
		return nil
	})
	opt := Options{Steps: 4, Shapes: shapes, GuidanceFunc: func(tt float64) float64 {
		gotT = append(gotT, tt)
		return 1 // still guided: a GuidanceFunc always turns guidance on
	}}
	if _, err := Sample(context.Background(), den, opt); err != nil {
		t.Fatal(err)
	}
	if want := []float64{1, 0.75, 0.5, 0.25}; len(gotT) != 4 || gotT[0] != want[0] || gotT[1] != want[1] || gotT[3] != want[3] {
		t.Fatalf("GuidanceFunc saw t = %v, want %v", gotT, want)
	}
}

// linear is a deterministic toy velocity field with distinct conditional and unconditional
// parts per image, used for exactness and batching tests.
func linear(ctx context.Context, t float32, batch []Item) error {
	for _, it := range batch {
		a, b := float32(0.9), float32(0.1*float32(it.Image+1))
		if it.Uncond {
			a, b = 1.1, -0.2
		}
		for j, x := range it.X.Data {
			it.V.Data[j] = float32(a*x) + float32(b*t) + float32(0.001*float32(j%7))
		}
	}
	return nil
}

// TestBatchIndependence: sampling two images together gives the same bits as sampling each
// alone with its noise injected, with APG (one momentum buffer per image) and with CFG.
func TestBatchIndependence(t *testing.T) {
	noise, err := Noise(5, 0, []int{3, 4, 4}, []int{3, 4, 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, apg := range []bool{false, true} {
		both, err := Sample(context.Background(), DenoiserFunc(linear), Options{Steps: 6, Guidance: 7.5, APG: apg, Seed: 5, Shapes: [][]int{{3, 4, 4}, {3, 4, 4}}})
		if err != nil {
			t.Fatal(err)
		}
		// Image 1 alone: its condition index must stay 1, so shift Item.Image.
		for i := range 2 {
			shift := DenoiserFunc(func(ctx context.Context, tt float32, batch []Item) error {
				for k := range batch {
					batch[k].Image += i
				}
				return linear(ctx, tt, batch)
			})
			alone, err := Sample(context.Background(), shift, Options{Steps: 6, Guidance: 7.5, APG: apg, Noise: noise[i : i+1]})
			if err != nil {
				t.Fatal(err)
			}
			if tensor.SHA256(alone[0].Data) != tensor.SHA256(both[i].Data) {
				t.Errorf("APG=%v image %d: alone and batched differ by %g", apg, i, tensor.MaxAbsDiff(alone[0].Data, both[i].Data))
			}
		}
	}
	if noise[0].Data[0] != firstNormal(5, 0) {
		t.Error("Sample modified the injected noise")
	}
}

// firstNormal returns the first value of the stream (test helper).
func firstNormal(seed, stream uint64) float32 { return float32(NewNormal(seed, stream).Float64()) }

// TestSampleGolden pins the bits of a whole guided run (noise, APG, Euler) so that the native,
// GOOS=js and GOOS=wasip1 builds are checked to agree.
func TestSampleGolden(t *testing.T) {
	for _, c := range []struct {
		opt  Options
		want string
	}{
		{Options{Steps: 8, Guidance: 7.5, APG: true, Seed: 1, Shapes: [][]int{{4, 8, 8}, {4, 8, 8}}}, goldenAPG},
		{Options{Steps: 5, Guidance: 3, Seed: 2, Shapes: [][]int{{4, 8, 8}}}, goldenCFG},
		{Options{Steps: 3, Seed: 3, Shapes: [][]int{{4, 8, 8}}}, goldenPlain},
	} {
		xs, err := Sample(context.Background(), DenoiserFunc(linear), c.opt)
		if err != nil {
			t.Fatal(err)
		}
		var all []float32
		for _, x := range xs {
			all = append(all, x.Data...)
		}
		if got := tensor.SHA256(all); got != c.want {
			t.Errorf("steps %d guidance %v APG %v: sha256 %s, want %s", c.opt.Steps, c.opt.Guidance, c.opt.APG, got, c.want)
		}
	}
}

const (
	goldenAPG   = "3d0d9e1d43071a9d3e8d14b41db2edeee99adf8981a09a7f7156ebd5c86ba0d8"
	goldenCFG   = "af6d7a38ab04377ca066f875f6a47f8f7999ef25e16b95a56483c5107339d5ce"
	goldenPlain = "1f8e614f70a9cc6f617f56a81b4b6218207cdf325e8700fbc289b3b600e69b40"
)

// TestInjectedNoiseEqualsSeeded: Options.Noise = Noise(seed) gives the same result as Seed.
func TestInjectedNoiseEqualsSeeded(t *testing.T) {
	shapes := [][]int{{2, 3, 5}}
	a, err := Sample(context.Background(), DenoiserFunc(linear), Options{Steps: 4, Guidance: 2, Seed: 9, Stream: 4, Shapes: shapes})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := Noise(9, 4, shapes...)
	b, err := Sample(context.Background(), DenoiserFunc(linear), Options{Steps: 4, Guidance: 2, Noise: n, Shapes: shapes})
	if err != nil {
		t.Fatal(err)
	}
	if tensor.SHA256(a[0].Data) != tensor.SHA256(b[0].Data) {
		t.Fatal("injected noise and seeded noise give different results")
	}
}

func TestGuidanceOff(t *testing.T) {
	for _, g := range []float64{0, 1} {
		d := &target{x0: [][]float32{randData(1, 8, 1)}, x0u: [][]float32{randData(2, 8, 1)}}
		if _, err := Sample(context.Background(), d, Options{Steps: 2, Guidance: g, APG: true, Shapes: [][]int{{2, 2, 2}}}); err != nil {
			t.Fatal(err)
		}
		if d.sizes[0] != 1 || d.sizes[1] != 1 {
			t.Errorf("guidance %v: batch sizes %v, want [1 1]", g, d.sizes)
		}
	}
}

func TestCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	den := DenoiserFunc(func(ctx context.Context, tt float32, batch []Item) error {
		calls++
		return linear(ctx, tt, batch)
	})
	opt := Options{Steps: 10, Shapes: [][]int{{1, 2, 2}}, OnStep: func(s Step) error {
		if s.Index == 2 {
			cancel()
		}
		return nil
	}}
	xs, err := Sample(ctx, den, opt)
	if !errors.Is(err, context.Canceled) || xs != nil {
		t.Fatalf("got %v, %v; want context.Canceled", xs, err)
	}
	if calls != 3 {
		t.Fatalf("%d denoiser calls after cancelling in step 2, want 3", calls)
	}
	if want := "flextok/flow: step 3 of 10: context canceled"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	// Already cancelled: the model never runs.
	calls = 0
	if _, err := Sample(ctx, den, Options{Steps: 3, Shapes: [][]int{{1, 1, 1}}}); !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("pre-cancelled: %v, %d calls", err, calls)
	}
}

func TestCallbackError(t *testing.T) {
	stop := errors.New("enough")
	seen := 0
	_, err := Sample(context.Background(), DenoiserFunc(linear), Options{Steps: 5, Shapes: [][]int{{1, 2, 2}},
		OnStep: func(s Step) error {
			seen++
			if s.Steps != 5 || s.Index != seen-1 || s.Scale != 1 {
				t.Errorf("step %+v", s)
			}
			if s.Index == 1 {
				return stop
			}
			return nil
		}})
	if !errors.Is(err, stop) || seen != 2 {
		t.Fatalf("err %v after %d callbacks; want %v after 2", err, seen, stop)
	}
	if !strings.HasPrefix(err.Error(), "flextok/flow: step 1 of 5: callback: ") {
		t.Fatalf("error %q", err)
	}
}

func TestDenoiserErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := Sample(context.Background(), DenoiserFunc(func(context.Context, float32, []Item) error { return boom }),
		Options{Steps: 2, Shapes: [][]int{{1, 1, 1}}})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "flextok/flow: step 0 of 2 (t=1): ") {
		t.Fatalf("err %v", err)
	}
	_, err = Sample(context.Background(), DenoiserFunc(func(_ context.Context, _ float32, b []Item) error {
		b[0].V.Data = b[0].V.Data[:1]
		return nil
	}), Options{Steps: 2, Shapes: [][]int{{1, 2, 1}}})
	if err == nil || !strings.Contains(err.Error(), "denoiser returned 1 velocity values for item 0, want 2") {
		t.Fatalf("short velocity: err %v", err)
	}
	_, err = Sample(context.Background(), DenoiserFunc(linear), Options{Steps: 2, Shapes: [][]int{{1, 1, 1}},
		GuidanceFunc: func(float64) float64 { return math.Inf(1) }})
	if err == nil || !strings.Contains(err.Error(), "GuidanceFunc(1) returned +Inf") {
		t.Fatalf("infinite guidance: err %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	ok := [][]int{{1, 2, 2}}
	n1, _ := Noise(0, 0, []int{1, 2, 2})
	bad := tensor.Tensor{Shape: []int{1, 2, 2}, Data: make([]float32, 3)}
	gf := func(float64) float64 { return 2 }
	for _, c := range []struct {
		opt  Options
		want string
	}{
		{Options{Shapes: ok}, "flextok/flow: steps must be >= 1, got 0"},
		{Options{Steps: -3, Shapes: ok}, "flextok/flow: steps must be >= 1, got -3"},
		{Options{Steps: 1, Guidance: math.NaN(), Shapes: ok}, "flextok/flow: guidance must be finite, got NaN"},
		{Options{Steps: 1, Guidance: math.Inf(-1), Shapes: ok}, "flextok/flow: guidance must be finite, got -Inf"},
		{Options{Steps: 1, Guidance: 2, GuidanceFunc: gf, Shapes: ok}, "flextok/flow: set Guidance or GuidanceFunc, not both (Guidance is 2)"},
		{Options{Steps: 1}, "flextok/flow: no images: set Shapes or Noise"},
		{Options{Steps: 1, Noise: []tensor.Tensor{}}, "flextok/flow: no images: Noise is empty"},
		{Options{Steps: 1, Shapes: [][]int{{16, 32}}}, "flextok/flow: image 0: shape must be [C, h, w], got [16 32]"},
		{Options{Steps: 1, Shapes: [][]int{{1, 1, 1}, {16, 0, 32}}}, "flextok/flow: image 1: shape [16 0 32] has a dimension < 1"},
		{Options{Steps: 1, Shapes: [][]int{{1 << 20, 1 << 20, 1}}}, "flextok/flow: image 0: shape [1048576 1048576 1] has more than 2147483647 values"},
		{Options{Steps: 1, Noise: []tensor.Tensor{bad}}, "flextok/flow: noise 0: flextok/tensor: shape [1 2 2] needs 4 values, got 3"},
		{Options{Steps: 1, Noise: n1, Shapes: [][]int{{1, 2, 2}, {1, 2, 2}}}, "flextok/flow: 2 shapes but 1 noise tensors"},
		{Options{Steps: 1, Noise: n1, Shapes: [][]int{{2, 2, 1}}}, "flextok/flow: noise 0 has shape [1 2 2], Shapes[0] is [2 2 1]"},
	} {
		if err := c.opt.Validate(); err == nil || err.Error() != c.want {
			t.Errorf("Validate: %v, want %q", err, c.want)
		}
		if _, err := Sample(context.Background(), DenoiserFunc(linear), c.opt); err == nil || err.Error() != c.want {
			t.Errorf("Sample: %v, want %q", err, c.want)
		}
	}
	if _, err := Sample(context.Background(), nil, Options{Steps: 1, Shapes: ok}); err == nil || err.Error() != "flextok/flow: nil Denoiser" {
		t.Errorf("nil denoiser: %v", err)
	}
	var nilCtx context.Context
	if _, err := Sample(nilCtx, DenoiserFunc(linear), Options{Steps: 1, Shapes: ok}); err == nil {
		t.Errorf("nil context: no error")
	}
	if err := (Options{Steps: 1, Noise: n1}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func BenchmarkSampleOverhead(b *testing.B) {
	// The sampler's own work per step (APG, Euler, preview) with a trivial denoiser.
	opt := Options{Steps: 20, Guidance: 7.5, APG: true, Shapes: [][]int{{16, 32, 32}}, OnStep: func(Step) error { return nil }}
	for b.Loop() {
		if _, err := Sample(context.Background(), DenoiserFunc(linear), opt); err != nil {
			b.Fatal(err)
		}
	}
}
