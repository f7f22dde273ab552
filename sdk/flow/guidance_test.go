package flow

import (
	"math"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/tensor"
)

func TestCFGHand(t *testing.T) {
	c := []float32{1, 2, -3, 0.25}
	u := []float32{0.5, -1, 1, 0.25}
	out := make([]float32, 4)
	cfg(out, c, u, 3)
	// u + 3(c - u): 0.5+1.5, -1+9, 1-12, 0.25+0.
	want := []float32{2, 8, -11, 0.25}
	if tensor.MaxAbsDiff(out, want) != 0 {
		t.Fatalf("cfg = %v, want %v", out, want)
	}
	// s = 1 returns u + (c - u), s = 0 returns u.
	cfg(out, c, u, 0)
	if tensor.MaxAbsDiff(out, u) != 0 {
		t.Fatalf("cfg(s=0) = %v, want u", out)
	}
	// Rounding: 0.1 is the float32 nearest 0.1, then each operation rounds to float32.
	c1, u1 := []float32{0.3}, []float32{0.1}
	cfg(out[:1], c1, u1, 7.5)
	d := float32(c1[0] - u1[0])
	if want := u1[0] + float32(float32(7.5)*d); out[0] != want {
		t.Fatalf("cfg(7.5) = %v, want %v", out[0], want)
	}
	// In place (out aliases c).
	cc := append([]float32(nil), c...)
	cfg(cc, cc, u, 3)
	if tensor.MaxAbsDiff(cc, want) != 0 {
		t.Fatalf("cfg in place = %v, want %v", cc, want)
	}
}

// apgRef is a float64 reference of normalized_guidance with a momentum buffer, written
// independently of apg.apply, that also carries a running error bound for the float32
// implementation (forward error analysis, u = 2^-24 the unit roundoff of float32).
type apgRef struct {
	m, em []float64 // exact momentum buffer and the bound on |m32 - m|
}

type apgRefOut struct {
	out, bound []float64
	clipped    bool
	norm       float64 // ||m|| before clipping
}

const u32 = 0x1p-24

func (r *apgRef) apply(c, uu []float32, s float64) apgRefOut {
	n := len(c)
	if r.m == nil {
		r.m, r.em = make([]float64, n), make([]float64, n)
	}
	// Momentum: m32 = fl(fl(c-u) + (-0.5)m32), so |m32 - m| <= u|d| + u|m| + 0.5|m32_prev - m_prev|.
	var nn float64
	for k := range c {
		d := float64(c[k]) - float64(uu[k])
		r.m[k] = d - 0.5*r.m[k]
		r.em[k] = u32*math.Abs(d) + u32*math.Abs(r.m[k]) + 0.5*r.em[k]
		nn += r.m[k] * r.m[k]
	}
	norm := math.Sqrt(nn)
	q, relq := 1.0, 0.0
	if norm > 2.5 {
		q = 2.5 / norm
		// ||m32|| - ||m|| <= ||em||, then float32 sqrt, reciprocal and product round.
		var ee float64
		for _, e := range r.em {
			ee += e * e
		}
		relq = math.Sqrt(ee)/norm + 4*u32
	}
	dd, edd := make([]float64, n), make([]float64, n)
	var cc, nedd float64
	for k := range c {
		dd[k] = r.m[k] * q
		edd[k] = q*r.em[k] + math.Abs(dd[k])*(relq+u32)
		nedd += edd[k] * edd[k]
		cc += float64(c[k]) * float64(c[k])
	}
	nedd = math.Sqrt(nedd)
	cn := math.Max(math.Sqrt(cc), 1e-12)
	var dot float64
	for k := range c {
		dot += dd[k] * float64(c[k]) / cn
	}
	res := apgRefOut{out: make([]float64, n), bound: make([]float64, n), clipped: norm > 2.5, norm: norm}
	sm1 := s - 1
	for k := range c {
		v1 := float64(c[k]) / cn
		orth := dd[k] - dot*v1
		o := float64(c[k]) + sm1*orth
		// Error of orth: |δdd_k| + |δdot||v1_k| with |δdot| <= ||δdd|| (Cauchy-Schwarz,
		// ||v1|| = 1), then the float32 cast; of out: the float32 s-1, product and sum.
		eorth := edd[k] + nedd*math.Abs(v1) + u32*math.Abs(orth)
		res.out[k] = o
		res.bound[k] = math.Abs(sm1)*eorth + 2*u32*math.Abs(sm1*orth) + u32*math.Abs(o)
	}
	return res
}

// TestAPGAgainstReference runs five steps of APG (so the momentum buffer carries over) in the
// regime without clipping (small differences) and with clipping (large ones), and checks every
// output value against the float64 reference within 2x its running error bound.
func TestAPGAgainstReference(t *testing.T) {
	const n = 4 * 8 * 8
	for _, tc := range []struct {
		name    string
		diff    float64 // scale of c - u
		s       float64
		clipped bool
	}{
		{"no-clip", 0.01, 7.5, false},
		{"clip", 1, 7.5, true},
		{"clip-s0.5", 3, 0.5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewNormal(11, 0)
			a := newAPG(n)
			var ref apgRef
			c, u, out := make([]float32, n), make([]float32, n), make([]float32, n)
			worst := 0.0
			for step := 0; step < 5; step++ {
				for k := range c {
					c[k] = float32(g.Float64())
					u[k] = c[k] + float32(tc.diff*g.Float64())
				}
				a.apply(out, c, u, tc.s)
				r := ref.apply(c, u, tc.s)
				if r.clipped != tc.clipped {
					t.Fatalf("step %d: ||m|| = %v, clipped = %v, want %v", step, r.norm, r.clipped, tc.clipped)
				}
				for k := range out {
					e := math.Abs(float64(out[k]) - r.out[k])
					if e > 2*r.bound[k] {
						t.Fatalf("step %d, value %d: got %v, reference %v, error %.3g > 2 x bound %.3g",
							step, k, out[k], r.out[k], e, r.bound[k])
					}
					worst = max(worst, e/r.bound[k])
				}
				// Compare the buffer too: it must hold the unclipped value.
				for k := range a.m {
					if e := math.Abs(float64(a.m[k]) - ref.m[k]); e > 2*ref.em[k] {
						t.Fatalf("step %d: momentum %d = %v, reference %v", step, k, a.m[k], ref.m[k])
					}
				}
			}
			t.Logf("worst error / bound = %.3f", worst)
		})
	}
}

// TestAPGProperties checks the geometry on one step: the guidance update (out - c)/(s-1) is
// orthogonal to c, and its norm is at most 2.5 when clipped.
func TestAPGProperties(t *testing.T) {
	const n = 16 * 32 * 32
	g := NewNormal(5, 5)
	c, u, out := make([]float32, n), make([]float32, n), make([]float32, n)
	for k := range c {
		c[k] = float32(g.Float64())
		u[k] = float32(g.Float64())
	}
	const s = 7.5
	newAPG(n).apply(out, c, u, s)
	var dot, cc, uu, dc, dd float64
	for k := range c {
		upd := (float64(out[k]) - float64(c[k])) / (s - 1)
		dot += upd * float64(c[k])
		cc += float64(c[k]) * float64(c[k])
		uu += upd * upd
		d := float64(c[k]) - float64(u[k])
		dc += d * float64(c[k])
		dd += d * d
	}
	if cos := dot / math.Sqrt(cc*uu); math.Abs(cos) > 1e-5 {
		t.Errorf("cos(update, c) = %v, want 0", cos)
	}
	// ||d|| is about sqrt(2n) = 181, so d is clipped to norm 2.5 and the update is its part
	// orthogonal to c: 2.5 * sqrt(1 - cos^2(d, c)).
	want := 2.5 * math.Sqrt(1-dc*dc/(dd*cc))
	if nu := math.Sqrt(uu); math.Abs(nu-want) > 1e-5*want {
		t.Errorf("||update|| = %v, want %v", nu, want)
	}
}

func TestAPGSpecialValues(t *testing.T) {
	// c == u: zero difference, norm 0, reciprocal +Inf, scale 1: out == c.
	c := []float32{1, -2, 3}
	out := make([]float32, 3)
	newAPG(3).apply(out, c, c, 7.5)
	if tensor.MaxAbsDiff(out, c) != 0 {
		t.Fatalf("apg(c, c) = %v, want %v", out, c)
	}
	// c == 0: normalize divides by eps 1e-12, the projection is 0, out = (s-1)*d.
	z := []float32{0, 0}
	u := []float32{0.5, -0.25}
	newAPG(2).apply(out[:2], z, u, 3)
	if want := []float32{-1, 0.5}; tensor.MaxAbsDiff(out[:2], want) != 0 {
		t.Fatalf("apg(0, u) = %v, want %v", out[:2], want)
	}
	// NaN in the input propagates (torch.minimum propagates NaN).
	newAPG(2).apply(out[:2], []float32{1, float32(math.NaN())}, []float32{0, 0}, 3)
	if out[0] == out[0] {
		t.Fatalf("apg with NaN = %v, want NaN", out[:2])
	}
}

func BenchmarkAPGStep(b *testing.B) {
	const n = 16 * 32 * 32
	g := NewNormal(1, 1)
	c, u, out := make([]float32, n), make([]float32, n), make([]float32, n)
	g.Fill(c)
	g.Fill(u)
	a := newAPG(n)
	b.SetBytes(4 * n)
	for b.Loop() {
		a.apply(out, c, u, 7.5)
	}
}

func BenchmarkCFGStep(b *testing.B) {
	const n = 16 * 32 * 32
	g := NewNormal(1, 1)
	c, u, out := make([]float32, n), make([]float32, n), make([]float32, n)
	g.Fill(c)
	g.Fill(u)
	b.SetBytes(4 * n)
	for b.Loop() {
		cfg(out, c, u, 7.5)
	}
}
