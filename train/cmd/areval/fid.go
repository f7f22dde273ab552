package main

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// frechet is the Fréchet distance between Gaussians fitted to two feature sets (rows are
// samples): |μ1 − μ2|² + tr(S1 + S2 − 2 (S1^½ S2 S1^½)^½), with sample covariances (n − 1), the
// symmetric form of train/flextok_train/classifier.py's frechet_distance (the same value as
// the usual sqrtm(S1·S2) form for covariance matrices). It is the proxy FID of issue #12: the
// space is the evaluation classifier's 64 features, not Inception's.
func frechet(a, b [][]float64) (float64, error) {
	if len(a) < 2 || len(b) < 2 {
		return 0, fmt.Errorf("frechet: %d and %d samples, need at least 2 each", len(a), len(b))
	}
	mu1, s1 := meanCov(a)
	mu2, s2 := meanCov(b)
	d := 0.0
	for i := range mu1 {
		d += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i])
	}
	r1, err := sqrtPSD(s1)
	if err != nil {
		return 0, err
	}
	var m mat.Dense
	m.Product(r1, s2, r1)
	sym := symmetric(&m)
	cm, err := sqrtPSD(sym)
	if err != nil {
		return 0, err
	}
	return d + mat.Trace(s1) + mat.Trace(s2) - 2*mat.Trace(cm), nil
}

func meanCov(x [][]float64) ([]float64, *mat.SymDense) {
	n, dim := len(x), len(x[0])
	mu := make([]float64, dim)
	for _, r := range x {
		for j, v := range r {
			mu[j] += v
		}
	}
	for j := range mu {
		mu[j] /= float64(n)
	}
	c := mat.NewSymDense(dim, nil)
	for i := range dim {
		for j := i; j < dim; j++ {
			s := 0.0
			for _, r := range x {
				s += (r[i] - mu[i]) * (r[j] - mu[j])
			}
			c.SetSym(i, j, s/float64(n-1))
		}
	}
	return mu, c
}

// symmetric returns (m + mᵀ)/2.
func symmetric(m mat.Matrix) *mat.SymDense {
	r, _ := m.Dims()
	s := mat.NewSymDense(r, nil)
	for i := range r {
		for j := i; j < r; j++ {
			s.SetSym(i, j, (m.At(i, j)+m.At(j, i))/2)
		}
	}
	return s
}

// sqrtPSD is the square root of a symmetric positive semi-definite matrix by its eigen
// decomposition (negative round-off eigenvalues clipped to 0).
func sqrtPSD(a *mat.SymDense) (*mat.Dense, error) {
	var e mat.EigenSym
	if !e.Factorize(a, true) {
		return nil, fmt.Errorf("frechet: eigen decomposition failed")
	}
	w := e.Values(nil)
	var v mat.Dense
	e.VectorsTo(&v)
	n := len(w)
	var vs mat.Dense
	vs.CloneFrom(&v)
	for j := range n {
		s := math.Sqrt(max(w[j], 0))
		for i := range n {
			vs.Set(i, j, vs.At(i, j)*s)
		}
	}
	var out mat.Dense
	out.Mul(&vs, v.T())
	return &out, nil
}
