package fmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ulps returns the distance between a and b in units in the last place.
func ulps(a, b float64) uint64 {
	ia, ib := int64(math.Float64bits(a)), int64(math.Float64bits(b))
	if ia < 0 {
		ia = math.MinInt64 - ia
	}
	if ib < 0 {
		ib = math.MinInt64 - ib
	}
	if ia > ib {
		return uint64(ia - ib)
	}
	return uint64(ib - ia)
}

func TestAgainstStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		x := (r.Float64()*2 - 1) * 700
		// math.Exp is assembly on amd64 and itself within 1 ulp, so two results may be 2 apart.
		if d := ulps(Exp(x), math.Exp(x)); d > 2 {
			t.Fatalf("Exp(%v) = %v, want %v (%d ulp)", x, Exp(x), math.Exp(x), d)
		}
		y := r.Float64() * math.Pow(10, float64(r.IntN(40)-20))
		if d := ulps(Log(y), math.Log(y)); d > 1 {
			t.Fatalf("Log(%v) = %v, want %v (%d ulp)", y, Log(y), math.Log(y), d)
		}
		z := (r.Float64()*2 - 1) * 8
		if d := ulps(Tanh(z), math.Tanh(z)); d > 2 {
			t.Fatalf("Tanh(%v) = %v, want %v (%d ulp)", z, Tanh(z), math.Tanh(z), d)
		}
	}
}

func TestSpecialValues(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name      string
		got, want float64
	}{
		{"Exp(0)", Exp(0), 1},
		{"Exp(+Inf)", Exp(inf), inf},
		{"Exp(-Inf)", Exp(-inf), 0},
		{"Exp(1000)", Exp(1000), inf},
		{"Exp(-1000)", Exp(-1000), 0},
		{"Log(1)", Log(1), 0},
		{"Log(0)", Log(0), -inf},
		{"Log(+Inf)", Log(inf), inf},
		{"Tanh(0)", Tanh(0), 0},
		{"Tanh(30)", Tanh(30), 1},
		{"Tanh(-30)", Tanh(-30), -1},
		{"Atanh(0)", Atanh(0), 0},
		{"Atanh(1)", Atanh(1), inf},
		{"Sigmoid(0)", Sigmoid(0), 0.5},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !math.IsNaN(Log(-1)) || !math.IsNaN(Exp(math.NaN())) || !math.IsNaN(Atanh(2)) {
		t.Error("NaN cases did not return NaN")
	}
	if d := ulps(Atanh(0.5), math.Atanh(0.5)); d > 2 {
		t.Errorf("Atanh(0.5) = %v, want %v", Atanh(0.5), math.Atanh(0.5))
	}
}

func TestExpF(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	worst := 0.0
	for i := 0; i < 1000000; i++ {
		x := (r.Float64()*2 - 1) * 100
		got, want := ExpF(x), math.Exp(x)
		if x > 89 {
			if !math.IsInf(got, 1) {
				t.Fatalf("ExpF(%v) = %v, want +Inf", x, got)
			}
			continue
		}
		if x < -104 {
			if got != 0 {
				t.Fatalf("ExpF(%v) = %v, want 0", x, got)
			}
			continue
		}
		rel := math.Abs(got-want) / want
		worst = max(worst, rel)
		if rel > 2e-12 {
			t.Fatalf("ExpF(%v) = %v, want %v (relative error %.3g)", x, got, want, rel)
		}
	}
	t.Logf("worst relative error %.3g", worst)
	if !math.IsNaN(ExpF(math.NaN())) || ExpF(0) != 1 {
		t.Fatal("special values")
	}
}

func BenchmarkExp(b *testing.B) {
	xs := make([]float64, 1024)
	for i := range xs {
		xs[i] = -float64(i) / 64
	}
	var s float64
	b.Run("fn=Exp", func(b *testing.B) {
		for b.Loop() {
			for _, x := range xs {
				s += Exp(x)
			}
		}
	})
	b.Run("fn=ExpF", func(b *testing.B) {
		for b.Loop() {
			for _, x := range xs {
				s += ExpF(x)
			}
		}
	})
	_ = s
}
