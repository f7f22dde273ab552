package flow

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Golden values of the noise generator. The TypeScript port checks the same numbers; a change
// here is a breaking change of every seeded result.
var noiseGoldens = []struct {
	seed, stream uint64
	sha256       string    // of the first 1024 float32 values, little endian
	first        [4]uint32 // float32 bits of the first four values
}{
	{0, 0, "d2f99d86767f33b448333a54a49a0fa41f6925cff116a774ed8d4190f495051e",
		[4]uint32{0xbf8c3e6c, 0x3f31b7a6, 0xbffa64bc, 0xbf3dce15}}, // -1.095655, 0.6942085, -1.9561992, -0.7414258
	{42, 7, "6ff0d12237cfe283757d7b17614cd6c05dc47e23c3c371c17daf96b0f80f3ebb",
		[4]uint32{0x3fe851fb, 0x3dec989f, 0x3d9e0ce4, 0x3eccc40b}}, // 1.8150018, 0.11552548, 0.077173024, 0.3999332
}

func TestPCGGolden(t *testing.T) {
	// The raw PCG-DXSM stream for (1, 2); the same values appear in Go's own math/rand/v2 tests.
	want := []uint64{0xc4f5a58656eef510, 0x9dcec3ad077dec6c, 0xc8d04605312f8088}
	g := NewNormal(1, 2)
	ref := rand.NewPCG(1, 2)
	for i, w := range want {
		got := g.Uint64()
		if got != w || ref.Uint64() != w {
			t.Fatalf("draw %d: got %#x, want %#x", i, got, w)
		}
	}
}

func TestNoiseGolden(t *testing.T) {
	for _, c := range noiseGoldens {
		buf := make([]float32, 1024)
		NewNormal(c.seed, c.stream).Fill(buf)
		if got := tensor.SHA256(buf); got != c.sha256 {
			t.Errorf("seed (%d, %d): sha256 %s, want %s", c.seed, c.stream, got, c.sha256)
		}
		for i, w := range c.first {
			if got := math.Float32bits(buf[i]); got != w {
				t.Errorf("seed (%d, %d): value %d has bits %#08x (%v), want %#08x (%v)",
					c.seed, c.stream, i, got, buf[i], w, math.Float32frombits(w))
			}
		}
	}
}

// TestNoiseSequential checks that images take consecutive values of one stream, including
// the carried-over second value of a pair when an image has an odd number of values.
func TestNoiseSequential(t *testing.T) {
	shapes := [][]int{{3, 5, 7}, {1, 1, 1}, {2, 3, 3}}
	xs, err := Noise(42, 7, shapes...)
	if err != nil {
		t.Fatal(err)
	}
	flat := make([]float32, 105+1+18)
	NewNormal(42, 7).Fill(flat)
	off := 0
	for i, x := range xs {
		if !tensor.SameShape(x, tensor.Tensor{Shape: shapes[i]}) {
			t.Fatalf("image %d: shape %v, want %v", i, x.Shape, shapes[i])
		}
		if tensor.SHA256(x.Data) != tensor.SHA256(flat[off:off+len(x.Data)]) {
			t.Fatalf("image %d is not values %d..%d of the stream", i, off, off+len(x.Data))
		}
		off += len(x.Data)
	}
	// Different streams of one seed differ.
	a, b := make([]float32, 8), make([]float32, 8)
	NewNormal(42, 7).Fill(a)
	NewNormal(42, 8).Fill(b)
	if tensor.MaxAbsDiff(a, b) == 0 {
		t.Fatal("streams 7 and 8 of seed 42 are equal")
	}
}

func TestNoiseBadShapes(t *testing.T) {
	for _, s := range [][]int{nil, {16, 32}, {16, 0, 32}, {1, -1, 1}, {1 << 20, 1 << 20, 1 << 20}} {
		if _, err := Noise(0, 0, s); err == nil {
			t.Errorf("Noise(%v): no error", s)
		}
	}
	if xs, err := Noise(0, 0); err != nil || len(xs) != 0 {
		t.Errorf("Noise(): %v, %v", xs, err)
	}
}

// TestNormalStats is a sanity check of the distribution on 2^20 values: mean, variance,
// skewness, excess kurtosis and the mass within one standard deviation, each within about
// 6 standard errors.
func TestNormalStats(t *testing.T) {
	const n = 1 << 20
	g := NewNormal(3, 0)
	var s1, s2, s3, s4 float64
	within := 0
	for i := 0; i < n; i++ {
		x := float64(float32(g.Float64()))
		s1 += x
		s2 += x * x
		s3 += x * x * x
		s4 += x * x * x * x
		if math.Abs(x) < 1 {
			within++
		}
	}
	mean, m2, m3, m4 := s1/n, s2/n, s3/n, s4/n
	check := func(name string, got, want, se float64) {
		t.Helper()
		if math.Abs(got-want) > 6*se {
			t.Errorf("%s = %.5f, want %.5f ± %.5f", name, got, want, 6*se)
		}
	}
	check("mean", mean, 0, 1/math.Sqrt(n))
	check("variance", m2-mean*mean, 1, math.Sqrt(2.0/n))
	check("third moment", m3, 0, math.Sqrt(15.0/n))
	check("fourth moment", m4, 3, math.Sqrt(96.0/n))
	p := 0.6826894921370859
	check("P(|x|<1)", float64(within)/n, p, math.Sqrt(p*(1-p)/n))
}

func BenchmarkNoise(b *testing.B) {
	buf := make([]float32, 16*32*32)
	g := NewNormal(1, 0)
	b.SetBytes(int64(4 * len(buf)))
	for b.Loop() {
		g.Fill(buf)
	}
}
