package kernels

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

// refNorm returns the exact normalisation of v and the |mean|·rstd term of its error bound.
func refNorm(v []float32, eps float64) (y []float64, meanTerm float64) {
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	mean := s / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (float64(x) - mean) * (float64(x) - mean)
	}
	rstd := 1 / math.Sqrt(ss/float64(len(v))+eps)
	y = make([]float64, len(v))
	for i, x := range v {
		y[i] = (float64(x) - mean) * rstd
	}
	return y, math.Abs(mean) * rstd
}

// LayerNorm bound: mean32 and rstd32 are each rounded once (u relative), x-mean32 and the
// product each round once more, and the rounding of mean32 (u·|mean|) is scaled by rstd.
// That is at most 3u·|y| + u·|mean|·rstd to first order; we check 4u·(|y| + |mean|·rstd).
func TestLayerNorm(t *testing.T) {
	r := newRand(10)
	for _, n := range []int{1, 2, 7, 64, 768, 1152} {
		rows := 5
		x := randSlice(r, rows*n, 3)
		for i := range x {
			x[i] += 10 // a large mean exercises the mean term
		}
		y := make([]float32, rows*n)
		LayerNorm(Opts{}, y, x, rows, n, 1e-5)
		for i := 0; i < rows; i++ {
			want, mt := refNorm(x[i*n:(i+1)*n], float64(float32(1e-5)))
			within(t, fmt.Sprintf("n=%d row %d", n, i), y[i*n:(i+1)*n], want, func(j int) float64 {
				return 4 * u * (math.Abs(want[j]) + mt)
			})
		}
		y2 := append([]float32(nil), x...)
		LayerNorm(Opts{Threads: 3}, y2, y2, rows, n, 1e-5) // in place, threaded
		sameBits(t, "LayerNorm threads/in place", y2, y)
	}
}

func TestLayerNormHeads(t *testing.T) {
	r := newRand(11)
	const tokens, heads, hd, ld = 9, 3, 64, 3 * 64 * 3 // q inside a fused qkv row
	x := randSlice(r, tokens*ld, 2)
	got := append([]float32(nil), x...)
	LayerNormHeads(Opts{Threads: 2}, got, tokens, ld, heads, hd, 1e-5)
	for tk := 0; tk < tokens; tk++ {
		for h := 0; h < heads; h++ {
			want := make([]float32, hd)
			LayerNorm(Opts{}, want, x[tk*ld+h*hd:], 1, hd, 1e-5)
			sameBits(t, "head", got[tk*ld+h*hd:tk*ld+(h+1)*hd], want)
		}
		sameBits(t, "untouched tail", got[tk*ld+heads*hd:(tk+1)*ld], x[tk*ld+heads*hd:(tk+1)*ld])
	}
}

// GroupNorm bound: the LayerNorm terms scaled by |gamma|, plus one rounding of the gamma
// product and one of the beta add: 6u·((|n|+|mean|·rstd)·|gamma| + |beta|).
func TestGroupNorm(t *testing.T) {
	r := newRand(12)
	const c, h, w, groups = 8, 5, 7, 4
	x := randSlice(r, c*h*w, 4)
	gamma, beta := randSlice(r, c, 2), randSlice(r, c, 1)
	for _, affine := range []bool{false, true} {
		g, bt := gamma, beta
		if !affine {
			g, bt = nil, nil
		}
		y := make([]float32, c*h*w)
		GroupNorm(Opts{}, y, x, c, h*w, groups, 1e-6, g, bt)
		cg := c / groups
		for gi := 0; gi < groups; gi++ {
			n, mt := refNorm(x[gi*cg*h*w:(gi+1)*cg*h*w], float64(float32(1e-6)))
			want := make([]float64, len(n))
			for i := range n {
				ch := gi*cg + i/(h*w)
				want[i] = n[i]
				if affine {
					want[i] = n[i]*float64(gamma[ch]) + float64(beta[ch])
				}
			}
			within(t, fmt.Sprintf("affine=%v group %d", affine, gi), y[gi*cg*h*w:], want, func(i int) float64 {
				ch := gi*cg + i/(h*w)
				if !affine {
					return 4 * u * (math.Abs(n[i]) + mt)
				}
				return 6 * u * ((math.Abs(n[i])+mt)*math.Abs(float64(gamma[ch])) + math.Abs(float64(beta[ch])))
			})
		}
		y2 := make([]float32, c*h*w)
		GroupNorm(Opts{Threads: 3}, y2, x, c, h*w, groups, 1e-6, g, bt)
		sameBits(t, "GroupNorm threads", y2, y)
	}
}

// Modulate bound: 1+scale, the product and the add each round once:
// 3u·(|x|·|1+scale| + |shift|) to first order; we check 4u times that.
// GatedResidual bound: the product and the add round once each: 2u·(|x|+|gate·y|).
func TestModulateAndGate(t *testing.T) {
	r := newRand(13)
	const rows, n = 7, 33
	x := randSlice(r, rows*n, 3)
	shift, scale, gate := randSlice(r, n, 1), randSlice(r, n, 1), randSlice(r, n, 2)
	y := make([]float32, rows*n)
	Modulate(Opts{}, y, x, shift, scale, rows, n)
	want := make([]float64, rows*n)
	for i := range want {
		j := i % n
		want[i] = float64(x[i])*(1+float64(scale[j])) + float64(shift[j])
	}
	within(t, "Modulate", y, want, func(i int) float64 {
		j := i % n
		return 4 * u * (math.Abs(float64(x[i])*(1+float64(scale[j]))) + math.Abs(float64(shift[j])))
	})
	y2 := append([]float32(nil), x...)
	Modulate(Opts{Threads: 2}, y2, y2, shift, scale, rows, n)
	sameBits(t, "Modulate threads/in place", y2, y)

	res := append([]float32(nil), x...)
	GatedResidual(Opts{Threads: 2}, res, y, gate, rows, n)
	for i := range want {
		want[i] = float64(x[i]) + float64(gate[i%n])*float64(y[i])
	}
	within(t, "GatedResidual", res, want, func(i int) float64 {
		return 2 * u * (math.Abs(float64(x[i])) + math.Abs(float64(gate[i%n])*float64(y[i])))
	})
}

// SiLU is computed in float64 and rounded once, so it is within u·|y| of the exact value
// (plus float64 noise: 1.01u). SwiGLU rounds silu, then the product: 2.02u·|y|.
func TestSiLUAndSwiGLU(t *testing.T) {
	r := newRand(14)
	n := 10000
	a := randSlice(r, n, 12)
	b := randSlice(r, n, 3)
	a[0], a[1], a[2] = 0, -87, 87
	y := make([]float32, n)
	SiLU(Opts{}, y, a)
	want := make([]float64, n)
	for i, v := range a {
		want[i] = float64(v) / (1 + math.Exp(-float64(v)))
	}
	within(t, "SiLU", y, want, func(i int) float64 { return 1.01*u*math.Abs(want[i]) + 1e-45 })
	g := make([]float32, n)
	SwiGLU(Opts{Threads: 2}, g, a, b)
	for i := range want {
		want[i] *= float64(b[i])
	}
	within(t, "SwiGLU", g, want, func(i int) float64 { return 2.02*u*math.Abs(want[i]) + 1e-45 })
	y2 := append([]float32(nil), a...)
	SiLU(Opts{Threads: 3}, y2, y2)
	sameBits(t, "SiLU threads/in place", y2, y)
}

// refAttention is the float64 attention of one sequence and head, with the first-order error
// bound of the float32 path: every score s_j carries at most (D+2)·u·scale·Σ|q·k| error, so
// each probability is off by a relative 2·max_j Δs_j plus a few roundings (exp, the float64
// sum rounded to float32, the division: 4u); the P·V sum adds (SeqK+1)·u·Σ p|v|. The bound is
// Σ_j p_j|v_j| · (2·maxΔs + (SeqK+6)·u), and we check twice it.
func refAttention(q, k, v []float32, ldq, ldk, ldv, sq, sk, hd int, scale float64, allowed func(i, j int) bool) (out, tol []float64) {
	out = make([]float64, sq*hd)
	tol = make([]float64, sq*hd)
	for i := 0; i < sq; i++ {
		s := make([]float64, sk)
		maxErr := 0.0
		mx := math.Inf(-1)
		for j := 0; j < sk; j++ {
			var d, da float64
			for c := 0; c < hd; c++ {
				t := float64(q[i*ldq+c]) * float64(k[j*ldk+c])
				d += t
				da += math.Abs(t)
			}
			s[j] = d * scale
			if allowed(i, j) {
				mx = math.Max(mx, s[j])
				maxErr = math.Max(maxErr, float64(hd+2)*u*da*scale)
			}
		}
		var sum float64
		p := make([]float64, sk)
		for j := range s {
			if allowed(i, j) {
				p[j] = math.Exp(s[j] - mx)
				sum += p[j]
			}
		}
		if sum == 0 {
			continue
		}
		for c := 0; c < hd; c++ {
			var o, oa float64
			for j := range p {
				o += p[j] / sum * float64(v[j*ldv+c])
				oa += p[j] / sum * math.Abs(float64(v[j*ldv+c]))
			}
			out[i*hd+c] = o
			tol[i*hd+c] = 2*oa*(2*maxErr+float64(sk+6)*u) + 1e-30
		}
	}
	return out, tol
}

func TestAttention(t *testing.T) {
	r := newRand(15)
	type tc struct {
		name                    string
		batch, heads, sq, sk, d int
		fused                   bool
		mask                    Mask
	}
	cases := []tc{
		{"full", 2, 3, 17, 17, 64, false, Mask{}},
		{"full-cross", 1, 2, 5, 40, 64, false, Mask{}},
		{"prefix-causal", 2, 2, 24, 24, 64, true, Mask{Kind: MaskPrefixCausal, Prefix: 16}},
		{"func-empty-rows", 1, 2, 9, 9, 8, false, Mask{Kind: MaskFunc, Allow: func(q, k int) bool { return q%3 != 0 && k >= q }}},
		{"one", 1, 1, 1, 1, 1, false, Mask{}},
		// Key counts that are multiples of 16 take the vector softmax on the fast path; more
		// than 72 queries take several query tiles.
		{"full-vector-softmax", 1, 2, 150, 80, 32, false, Mask{}},
		{"fused-vector-softmax", 2, 2, 33, 48, 64, true, Mask{}},
		{"prefix-causal-tiles", 1, 1, 160, 160, 16, false, Mask{Kind: MaskPrefixCausal, Prefix: 100}},
	}
	for _, c := range cases {
		w := c.heads * c.d
		ld := w
		if c.fused {
			ld = 3 * w
		}
		q := randSlice(r, c.batch*c.sq*ld, 3)
		kv := randSlice(r, c.batch*c.sk*ld, 3)
		qv, kk, vv := q, kv, []float32(nil)
		if !c.fused {
			vv = randSlice(r, c.batch*c.sk*ld, 1)
		} else {
			kk = kv[2*w:] // k and v from different features of the fused rows
			vv = kv[w:]
		}
		dims := AttnDims{Batch: c.batch, Heads: c.heads, SeqQ: c.sq, SeqK: c.sk, HeadDim: c.d, LdQ: ld, LdK: ld, LdV: ld}
		const scale = 0.125
		out := make([]float32, c.batch*c.sq*w)
		Attention(Opts{}, out, qv, kk, vv, dims, scale, c.mask)
		for b := 0; b < c.batch; b++ {
			for h := 0; h < c.heads; h++ {
				want, tol := refAttention(qv[b*c.sq*ld+h*c.d:], kk[b*c.sk*ld+h*c.d:], vv[b*c.sk*ld+h*c.d:], ld, ld, ld, c.sq, c.sk, c.d, scale, c.mask.Allowed)
				got := make([]float32, c.sq*c.d)
				for i := 0; i < c.sq; i++ {
					copy(got[i*c.d:(i+1)*c.d], out[(b*c.sq+i)*w+h*c.d:])
				}
				within(t, fmt.Sprintf("%s b=%d h=%d", c.name, b, h), got, want, func(i int) float64 { return tol[i] })
			}
		}
		for _, th := range []int{2, 5} {
			o2 := make([]float32, len(out))
			Attention(Opts{Threads: th}, o2, qv, kk, vv, dims, scale, c.mask)
			sameBits(t, c.name+" threads", o2, out)
		}
		if FastPath() != "" {
			o3 := make([]float32, len(out))
			Attention(Opts{Threads: 2, Fast: true}, o3, qv, kk, vv, dims, scale, c.mask)
			for b := 0; b < c.batch; b++ {
				for h := 0; h < c.heads; h++ {
					want, tol := refAttention(qv[b*c.sq*ld+h*c.d:], kk[b*c.sk*ld+h*c.d:], vv[b*c.sk*ld+h*c.d:], ld, ld, ld, c.sq, c.sk, c.d, scale, c.mask.Allowed)
					got := make([]float32, c.sq*c.d)
					for i := 0; i < c.sq; i++ {
						copy(got[i*c.d:(i+1)*c.d], o3[(b*c.sq+i)*w+h*c.d:])
					}
					within(t, fmt.Sprintf("fast %s b=%d h=%d", c.name, b, h), got, want, func(i int) float64 { return tol[i] })
				}
			}
		}
	}
}

func TestMaskSemantics(t *testing.T) {
	m := Mask{Kind: MaskPrefixCausal, Prefix: 3}
	for q := 0; q < 6; q++ {
		for k := 0; k < 6; k++ {
			want := k < 3 || k <= q
			if m.Allowed(q, k) != want {
				t.Fatalf("prefix-causal(%d,%d) = %v", q, k, !want)
			}
		}
	}
	if !(Mask{}).Allowed(0, 99) {
		t.Fatal("zero Mask must be full")
	}
	// A masked key must have no influence at all: change its value and the output keeps its bits.
	r := newRand(16)
	dims := AttnDims{Batch: 1, Heads: 1, SeqQ: 4, SeqK: 4, HeadDim: 4}
	q, k, v := randSlice(r, 16, 1), randSlice(r, 16, 1), randSlice(r, 16, 1)
	causal := Mask{Kind: MaskPrefixCausal, Prefix: 0}
	o1 := make([]float32, 16)
	Attention(Opts{}, o1, q, k, v, dims, 0.5, causal)
	k[3*4], v[3*4] = 100, 100 // key 3 is visible only to query 3
	o2 := make([]float32, 16)
	Attention(Opts{}, o2, q, k, v, dims, 0.5, causal)
	sameBits(t, "queries 0-2", o1[:12], o2[:12])
	// Query 0 sees only key 0: its output is v[0] exactly (p = 1).
	sameBits(t, "query 0", o1[:4], v[:4])
}

// refConv is the float64 convolution with Σ|w·x| (+ |bias|) for the bound: refConvAt at every
// output.
func refConv(x, w, bias []float32, d ConvDims) (y, sabs []float64) {
	oh, ow := d.Out()
	y = make([]float64, d.OutC*oh*ow)
	sabs = make([]float64, len(y))
	for oc := 0; oc < d.OutC; oc++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				i := (oc*oh+oy)*ow + ox
				y[i], sabs[i] = refConvAt(x, w, bias, d, oc, oy, ox)
			}
		}
	}
	return y, sabs
}

// Conv2d is a Gemm with K = InC·KH·KW: bound (K+2)·u·(Σ|w·x| + |bias|) as for Linear.
func TestConv2d(t *testing.T) {
	r := newRand(17)
	cases := []ConvDims{
		{InC: 3, InH: 9, InW: 7, OutC: 5, KH: 3, KW: 3, Stride: 1, PadT: 1, PadB: 1, PadL: 1, PadR: 1},
		{InC: 4, InH: 8, InW: 8, OutC: 6, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1}, // diffusers Downsample2D
		{InC: 4, InH: 7, InW: 9, OutC: 3, KH: 3, KW: 3, Stride: 2, PadB: 1, PadR: 1},
		{InC: 16, InH: 5, InW: 6, OutC: 7, KH: 1, KW: 1, Stride: 1},
		{InC: 2, InH: 6, InW: 6, OutC: 2, KH: 1, KW: 1, Stride: 2},
		{InC: 1, InH: 1, InW: 1, OutC: 1, KH: 1, KW: 1},
	}
	for _, d := range cases {
		oh, ow := d.Out()
		x := randSlice(r, d.InC*d.InH*d.InW, 2)
		w := randSlice(r, d.OutC*d.InC*d.KH*d.KW, 1)
		bias := randSlice(r, d.OutC, 1)
		want, sabs := refConv(x, w, bias, d)
		k := d.InC * d.KH * d.KW
		var first []float32
		for _, o := range []Opts{{}, {Threads: 2}, {Threads: 3}, {Threads: 2, Fast: true}} {
			y := make([]float32, d.OutC*oh*ow)
			Conv2d(o, y, x, w, bias, d)
			within(t, fmt.Sprintf("%+v %+v", d, o), y, want, func(i int) float64 { return float64(k+2) * u * sabs[i] })
			if first == nil {
				first = y
			} else if !o.Fast {
				sameBits(t, "Conv2d threads", y, first)
			}
		}
	}
}

func TestUpsample2x(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12} // [2, 2, 3]
	y := make([]float32, 48)
	Upsample2x(Opts{Threads: 2}, y, x, 2, 2, 3)
	for c := 0; c < 2; c++ {
		for i := 0; i < 4; i++ {
			for j := 0; j < 6; j++ {
				if got, want := y[(c*4+i)*6+j], x[(c*2+i/2)*3+j/2]; got != want {
					t.Fatalf("y[%d,%d,%d] = %v, want %v", c, i, j, got, want)
				}
			}
		}
	}
}

// BenchmarkAttention is one d12 decoder attention (cond and uncond batched: 2 sequences of
// 512 tokens, 12 heads of 64), QK-norm excluded. GFLOP/s counts the two products only
// (4·S²·D per head), so the softmax's exp shows up as a lower rate.
func BenchmarkAttention(b *testing.B) {
	const batch, heads, seq, hd = 2, 12, 512, 64
	r := newRand(20)
	w := heads * hd
	q, k, v := randSlice(r, batch*seq*w, 2), randSlice(r, batch*seq*w, 2), randSlice(r, batch*seq*w, 1)
	out := make([]float32, batch*seq*w)
	dims := AttnDims{Batch: batch, Heads: heads, SeqQ: seq, SeqK: seq, HeadDim: hd}
	paths := []Opts{{Threads: runtime.GOMAXPROCS(0)}}
	names := []string{"portable"}
	if FastPath() != "" {
		paths = append(paths, Opts{Threads: runtime.GOMAXPROCS(0), Fast: true})
		names = append(names, runtime.GOARCH)
	}
	for i, o := range paths {
		b.Run(fmt.Sprintf("path=%s/B=%d,H=%d,S=%d", names[i], batch, heads, seq), func(b *testing.B) {
			for b.Loop() {
				Attention(o, out, q, k, v, dims, 0.125, Mask{})
			}
			flop := 4.0 * seq * seq * hd * heads * batch
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSwiGLU is the SwiGLU combine of one d12 MLP (1024 tokens x 2048).
func BenchmarkSwiGLU(b *testing.B) {
	const n = 1024 * 2048
	r := newRand(21)
	a, g := randSlice(r, n, 4), randSlice(r, n, 1)
	y := make([]float32, n)
	o := Opts{Threads: runtime.GOMAXPROCS(0)}
	b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
		for b.Loop() {
			SwiGLU(o, y, a, g)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
}
