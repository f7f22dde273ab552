package flow

import "math"

// Constants of the official APG call (MinRFPipeline with perform_norm_guidance=True).
const (
	apgMomentum      = -0.5 // MomentumBuffer(-0.5)
	apgEta           = 0.0  // weight of the parallel component
	apgNormThreshold = 2.5  // L2 norm above which the guidance difference is rescaled
	normalizeEps     = 1e-12
)

// cfg writes out[k] = u[k] + s*(c[k] - u[k]) with the float32 rounding of torch's
// `pred_uncond + guidance_scale * (pred_cond - pred_uncond)`: the Python float s becomes a
// float32 scalar, each operation rounds to float32. out may alias c or u.
func cfg(out, c, u []float32, s float64) {
	s32 := float32(s)
	u = u[:len(out)]
	c = c[:len(out)]
	for k := range out {
		d := float32(c[k] - u[k])
		out[k] = u[k] + float32(s32*d)
	}
}

// apg is the adaptive projected guidance state of one image: the momentum buffer of
// MomentumBuffer(-0.5) (zero before the first step, unclipped afterwards) and a scratch slice.
type apg struct {
	m  []float32 // running average of the guidance difference
	d  []float32 // scratch: the clipped difference
	v1 []float64 // scratch: c normalized
}

func newAPG(n int) *apg {
	return &apg{m: make([]float32, n), d: make([]float32, n), v1: make([]float64, n)}
}

// apply writes normalized_guidance(c, u, s, buffer, eta=0, norm_threshold=2.5) into out, which
// may alias c (every c[k] is read before out[k] is written, and the last loop is elementwise).
//
// Order and precision, as in cfg_utils.py:
//
//	diff = c - u                                   f32
//	m    = diff + (-0.5)*m; diff = m                f32, product rounded first
//	n    = ||diff||_2 over all values               f32 result (see norm32)
//	q    = min(1, reciprocal(n) * 2.5)              f32; torch evaluates 2.5/n as n.reciprocal()*2.5
//	diff = diff * q                                 f32
//	v1   = c / max(||c||_2, 1e-12)                  f64 (F.normalize on c.double())
//	par  = (sum diff*v1) * v1; orth = diff - par    f64, then both cast to f32
//	out  = c + f32(s-1) * (orth + f32(0)*par)       f32
func (a *apg) apply(out, c, u []float32, s float64) {
	n := len(out)
	m, d, v1 := a.m[:n], a.d[:n], a.v1[:n]
	c, u = c[:n], u[:n]

	// 1-2. Momentum. m starts at zero and -0.5*0 + diff == diff exactly, as in Python where
	// the buffer starts as the int 0.
	mom := float32(apgMomentum)
	for k := range m {
		diff := float32(c[k] - u[k])
		m[k] = diff + float32(mom*m[k])
	}

	// 3. Norm clipping. torch.minimum propagates NaN, so a NaN norm gives a NaN scale.
	q := float32(1/norm32(m)) * float32(apgNormThreshold)
	scale := float32(1)
	if q != q {
		scale = q
	} else if q < 1 {
		scale = q
	}
	for k := range d {
		d[k] = float32(m[k] * scale)
	}

	// 4. Projection on c in float64.
	var cc float64
	for _, v := range c {
		x := float64(v)
		cc += float64(x * x) // exact: the product of two float32 fits in float64
	}
	den := math.Max(math.Sqrt(cc), normalizeEps)
	var dot float64
	for k, v := range c {
		v1[k] = float64(v) / den
		dot += float64(float64(d[k]) * v1[k])
	}

	// 5. Combine.
	sm1 := float32(s - 1)
	eta := float32(apgEta)
	for k, v := range c {
		par := float64(dot * v1[k])
		orth := float64(d[k]) - par
		upd := float32(orth) + float32(eta*float32(par))
		out[k] = v + float32(sm1*upd)
	}
}

// norm32 returns the L2 norm of x as float32, the dtype torch's diff.norm(p=2) returns.
//
// The squares of float32 values are exact in float64 and are summed in float64 in index order;
// the square root is taken in float64 and rounded once to float32. The result is therefore the
// correctly rounded float32 norm except when the float64 sum error (at most len(x)*2^-53
// relative) moves a value across a float32 rounding boundary.
//
// torch accumulates in float32 instead: on CPU in 8 (AVX2) or 16 (AVX-512) FMA lanes, each
// summing len/L squares serially, then a serial horizontal sum; on CUDA in per-thread partial
// sums and a tree. Its relative error on the sum of squares is at most about m*2^-24 with m the
// longest serial chain (len/L + L), hence at most about m*2^-25 on the norm, and typically
// sqrt(m)*2^-25. For a 16x32x32 latent on AVX2 (m = 2056) that is < 6.2e-5 worst case and
// about 1.4e-6 typically; this implementation is closer to the exact norm than torch on every
// target, so |n_go - n_torch| is bounded by torch's own error. The norm only matters when
// clipping is active (n > 2.5), where it sets the scale of the difference with the same
// relative error.
func norm32(x []float32) float32 {
	var ss float64
	for _, v := range x {
		f := float64(v)
		ss += float64(f * f)
	}
	return float32(math.Sqrt(ss))
}
