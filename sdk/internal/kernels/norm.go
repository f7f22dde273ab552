package kernels

import "math"

// moments returns the mean and the biased variance of v. Both are accumulated in float64 in
// index order (the sum, then the sum of squared deviations from that mean: two passes). A
// float64 sum of float32 values is exact to about n·2^-53 relative, far below float32
// resolution for every length this engine sees, and IEEE float64 addition gives the same bits
// on every platform, so the statistic is both deterministic and closer to the true value than
// torch's float32 reductions (which differ from it by a few float32 ulps at most).
func moments(v []float32) (mean, variance float64) {
	if len(v) == 0 {
		return 0, 0
	}
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	mean = s / float64(len(v))
	var ss float64
	for _, x := range v {
		d := float64(x) - mean
		ss += float64(d * d)
	}
	return mean, ss / float64(len(v))
}

// normParams returns the float32 mean and 1/sqrt(var+eps) used to normalise v. The reciprocal
// square root is computed in float64 (sqrt is correctly rounded on every platform) and then
// rounded once to float32.
func normParams(v []float32, eps float32) (mean, rstd float32) {
	m, va := moments(v)
	return float32(m), float32(1 / math.Sqrt(va+float64(eps)))
}

// normRow writes y[i] = (x[i] - mean) * rstd, in float32.
func normRow(y, x []float32, eps float32) {
	mean, rstd := normParams(x, eps)
	y = y[:len(x)]
	for i, v := range x {
		y[i] = (v - mean) * rstd
	}
}

// LayerNorm normalises each row of x [rows, n] over its last dimension without affine
// parameters (PyTorch LayerNorm(n, elementwise_affine=False, eps)), writing y [rows, n]; y may
// be x. Statistics: see moments. Output: y = (x - mean32) * rstd32 in float32, where mean32 and
// rstd32 = 1/sqrt(var+eps) are each rounded once from float64. Rows are split across threads.
func LayerNorm(o Opts, y, x []float32, rows, n int, eps float32) {
	needDims("LayerNorm", rows, n)
	need("LayerNorm", "x", x, rows*n)
	need("LayerNorm", "y", y, rows*n)
	parallelWork(o.threads(), rows, float64(n)*nsNorm, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			normRow(y[i*n:i*n+n], x[i*n:i*n+n], eps)
		}
	})
}

// LayerNormHeads applies LayerNorm over each head in place (QK-norm): x holds tokens rows of
// heads·headDim features with row stride ld (ld >= heads·headDim, so a view into a fused qkv
// tensor works), and each of the heads contiguous slices of headDim features is normalised
// on its own, exactly as LayerNorm does.
func LayerNormHeads(o Opts, x []float32, tokens, ld, heads, headDim int, eps float32) {
	needDims("LayerNormHeads", tokens, ld, heads, headDim)
	if ld < heads*headDim {
		panic("flextok/kernels: LayerNormHeads: ld < heads*headDim")
	}
	need("LayerNormHeads", "x", x, strided(tokens, heads*headDim, ld))
	parallelWork(o.threads(), tokens, float64(heads*headDim)*nsNorm, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			for h := 0; h < heads; h++ {
				s := x[t*ld+h*headDim : t*ld+(h+1)*headDim]
				normRow(s, s, eps)
			}
		}
	})
}

// GroupNorm is PyTorch GroupNorm(groups, c, eps, affine) on one image x [c, hw] (hw = H·W),
// writing y [c, hw]; y may be x. Each group of c/groups consecutive channels is normalised
// with the statistics of all its c/groups·hw values (see moments, same order: channel by
// channel, pixel by pixel), then y = float32((x-mean)*rstd)*gamma[ch] + beta[ch], each product
// rounded explicitly. gamma and beta have length c, or are both nil for no affine. Groups are
// split across threads.
func GroupNorm(o Opts, y, x []float32, c, hw, groups int, eps float32, gamma, beta []float32) {
	needDims("GroupNorm", c, hw, groups)
	if groups <= 0 || c%groups != 0 {
		panic("flextok/kernels: GroupNorm: channels not divisible by groups")
	}
	if (gamma == nil) != (beta == nil) {
		panic("flextok/kernels: GroupNorm: gamma and beta must be both set or both nil")
	}
	need("GroupNorm", "x", x, c*hw)
	need("GroupNorm", "y", y, c*hw)
	if gamma != nil {
		need("GroupNorm", "gamma", gamma, c)
		need("GroupNorm", "beta", beta, c)
	}
	cg := c / groups
	parallelWork(o.threads(), groups, float64(cg*hw)*nsNorm, func(lo, hi int) {
		for g := lo; g < hi; g++ {
			xs := x[g*cg*hw : (g+1)*cg*hw]
			mean, rstd := normParams(xs, eps)
			for ch := g * cg; ch < (g+1)*cg; ch++ {
				xr := x[ch*hw : ch*hw+hw]
				yr := y[ch*hw : ch*hw+hw]
				if gamma == nil {
					for i, v := range xr {
						yr[i] = (v - mean) * rstd
					}
					continue
				}
				gm, bt := gamma[ch], beta[ch]
				for i, v := range xr {
					yr[i] = float32(float32((v-mean)*rstd)*gm) + bt
				}
			}
		}
	})
}
