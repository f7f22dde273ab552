package kernels

import "fmt"

// Layout says how the second operand of Gemm is stored.
type Layout uint8

const (
	// NK is the PyTorch Linear weight layout: element (p, j) of the K x N operand is
	// b[j*ldb+p], i.e. the operand is W^T for W[N,K].
	NK Layout = iota
	// KN is plain row-major: element (p, j) is b[p*ldb+j].
	KN
)

// Linear computes y[M,N] = x[M,K] · w[N,K]^T + bias, with w in PyTorch [out,in] layout and
// bias of length N or nil. All slices are dense row-major.
//
// Portable path (the reference, bit-identical on every platform and for every thread count):
//
//	for i < M, j < N:
//		var acc float32
//		for p := 0; p < K; p++ { acc += float32(x[i*K+p] * w[j*K+p]) }
//		y[i*N+j] = acc + bias[j] // or acc when bias is nil
//
// MatMulNaive is exactly that loop.
func Linear(o Opts, y, x, w, bias []float32, m, k, n int) {
	if bias != nil {
		need("Linear", "bias", bias, n)
	}
	need("Linear", "y", y, m*n)
	Gemm(o, m, n, k, x, k, w, k, NK, y, n)
	if bias != nil {
		addBiasCols(o, y, n, bias, m, n)
	}
}

// MatMul is Linear without bias: y[M,N] = x[M,K] · w[N,K]^T.
func MatMul(o Opts, y, x, w []float32, m, k, n int) { Linear(o, y, x, w, nil, m, k, n) }

// MatMulNaive is the reference loop of Linear (bias may be nil). It gives the same bits as
// the portable path of Linear.
func MatMulNaive(y, x, w, bias []float32, m, k, n int) {
	needDims("MatMulNaive", m, k, n)
	need("MatMulNaive", "x", x, m*k)
	need("MatMulNaive", "w", w, n*k)
	need("MatMulNaive", "y", y, m*n)
	if bias != nil {
		need("MatMulNaive", "bias", bias, n)
	}
	for i := 0; i < m; i++ {
		xr := x[i*k : i*k+k]
		for j := 0; j < n; j++ {
			wr := w[j*k : j*k+k]
			var acc float32
			for p, xv := range xr {
				acc += float32(xv * wr[p])
			}
			if bias != nil {
				acc += bias[j]
			}
			y[i*n+j] = acc
		}
	}
}

// addBiasCols adds bias[j] to column j of the rows x cols matrix c (row stride ldc).
func addBiasCols(o Opts, c []float32, ldc int, bias []float32, rows, cols int) {
	parallelWork(o.threads(), rows, float64(cols)*nsElem, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := c[i*ldc : i*ldc+cols]
			for j, b := range bias[:cols] {
				r[j] += b
			}
		}
	})
}

// Gemm computes C = A · B for an M x K matrix A (a[i*lda+p]) and a K x N matrix B stored as
// layout says, into the M x N matrix C (c[i*ldc+j]); C is overwritten. This is the one matrix
// product behind Linear, attention and convolution.
//
// Portable path: every element of C is the float32 sum over p = 0, 1, ..., K-1, in that order,
// of the explicitly rounded products float32(A(i,p)*B(p,j)), starting from zero (the loop in
// Linear's comment). Blocking, packing and threads change only which element is computed
// when, never the order of one element's sum.
//
// Fast path (o.Fast on amd64 with AVX-512F or AVX2+FMA, not with -tags purego): fused
// multiply-adds, K split into blocks of 256 whose register sums are added to C. Each element
// of either path differs from the exact sum S = Σ A(i,p)B(p,j) by at most
// (K+1)·2^-24·Σ|A(i,p)B(p,j)| to first order: the portable sum rounds each product and each
// of K additions once (Higham, Accuracy and Stability of Numerical Algorithms, §3.1), the fused
// path rounds only its additions, and blocking only regroups additions, which never raises the
// count along any path beyond K. So the two paths differ by at most twice that (plus the bias
// add's rounding); the tests check exactly these bounds, never equality.
func Gemm(o Opts, m, n, k int, a []float32, lda int, b []float32, ldb int, layout Layout, c []float32, ldc int) {
	needDims("Gemm", m, n, k)
	if lda < k || ldc < n || (layout == NK && ldb < k) || (layout == KN && ldb < n) {
		panic(fmt.Sprintf("flextok/kernels: Gemm: leading dimensions lda=%d ldb=%d ldc=%d too small for M=%d N=%d K=%d", lda, ldb, ldc, m, n, k))
	}
	need("Gemm", "a", a, strided(m, k, lda))
	if layout == NK {
		need("Gemm", "b", b, strided(n, k, ldb))
	} else {
		need("Gemm", "b", b, strided(k, n, ldb))
	}
	need("Gemm", "c", c, strided(m, n, ldc))
	if m == 0 || n == 0 {
		return
	}
	gemmWith(kernelFor(o), o.threads(), m, n, k, a, lda, b, ldb, layout, c, ldc)
}

// kernelFor returns the micro-kernel of the path o selects: the fast one when o.Fast and this
// build and CPU have one, else the portable one.
func kernelFor(o Opts) microKernel {
	if o.Fast {
		if f, ok := fastKernel(); ok {
			return f
		}
	}
	return portableKernel
}

// gemmWith packs B for kn and runs the product with kn (shapes already checked).
func gemmWith(kn microKernel, threads, m, n, k int, a []float32, lda int, b []float32, ldb int, layout Layout, c []float32, ldc int) {
	bbuf := getBuf(packedLen(kn, n, k))
	defer putBuf(bbuf)
	packAllB(kn, threads, *bbuf, b, ldb, layout, n, k)
	gemmDriver(kn, threads, m, n, k, a, lda, *bbuf, c, ldc)
}

// packedLen is the length of B packed into kn.nr-wide panels.
func packedLen(kn microKernel, n, k int) int { return (n + kn.nr - 1) / kn.nr * kn.nr * k }

// packAllB packs all of B into nr-wide panels of all K, panels split across threads.
func packAllB(kn microKernel, threads int, bp, b []float32, ldb int, layout Layout, n, k int) {
	nr := kn.nr
	parallelWork(threads, (n+nr-1)/nr, float64(nr*k)*nsElem, func(lo, hi int) {
		for jp := lo; jp < hi; jp++ {
			packB(bp[jp*nr*k:(jp+1)*nr*k], b, ldb, layout, jp*nr, min(nr, n-jp*nr), nr, k)
		}
	})
}

// Weights is a Linear weight matrix W[N,K] packed once, for repeated LinearPacked calls (the
// engine packs every weight at load time and saves the packing in each product).
type Weights struct {
	N, K int
	kn   microKernel
	data []float32
	bk   *bf16Kernel // the bf16 path (o.BF16): d16 holds the weights, data is nil
	d16  []uint32
}

// PackWeights packs w [n,k] (PyTorch [out,in] layout) for the path o selects: the fast path
// when o.Fast and this build and CPU have one, else the portable path; with o.BF16 the
// weights are rounded to bfloat16 and packed as such (half the memory; see bf16.go for the
// paths and the error bound). The result does not alias w.
func PackWeights(o Opts, w []float32, n, k int) *Weights {
	needDims("PackWeights", n, k)
	need("PackWeights", "w", w, n*k)
	if o.BF16 {
		bk := bf16KernelFor(o)
		return &Weights{N: n, K: k, bk: &bk, d16: packWeightsBF16(bk, o.threads(), w, n, k)}
	}
	kn := kernelFor(o)
	pw := &Weights{N: n, K: k, kn: kn, data: make([]float32, packedLen(kn, n, k))}
	packAllB(kn, o.threads(), pw.data, w, k, NK, n, k)
	return pw
}

// Path names the path the weights were packed for ("portable", FastPath() or, for bf16
// weights, the bf16 kernel's name: see BF16Path).
func (w *Weights) Path() string {
	if w.bk != nil {
		return w.bk.name
	}
	return w.kn.name
}

// Bytes is the memory the packed weights hold.
func (w *Weights) Bytes() int { return 4*len(w.data) + 4*len(w.d16) }

// LinearPacked is Linear with packed weights: y[M,N] = x[M,K] · W^T + bias. It runs the path
// the weights were packed for (o.Fast is ignored) and gives the same bits as Linear on that
// path.
func LinearPacked(o Opts, y, x []float32, w *Weights, bias []float32, m int) {
	needDims("LinearPacked", m)
	need("LinearPacked", "x", x, m*w.K)
	need("LinearPacked", "y", y, m*w.N)
	if bias != nil {
		need("LinearPacked", "bias", bias, w.N)
	}
	if m == 0 || w.N == 0 {
		return
	}
	if w.bk != nil {
		bf16Driver(w.bk, o.threads(), m, w.N, w.K, x, w.K, w.d16, y, w.N)
	} else {
		gemmDriver(w.kn, o.threads(), m, w.N, w.K, x, w.K, w.data, y, w.N)
	}
	if bias != nil {
		addBiasCols(o, y, w.N, bias, m, w.N)
	}
}

// microKernel computes one mr x nr tile: c[r*ldc+j] += Σ_{p<kc} a[p*mr+r]·b[p*nr+j], where a
// and b are packed panels. Portable kernels continue each element's sum from the value in c
// in p order; fast kernels may sum in any order.
type microKernel struct {
	mr, nr, kc int
	macNs      float64 // estimated nanoseconds per multiply-add on one core, for parallelWork
	name       string
	run        func(kc int, a, b, c []float32, ldc int)
}

// FastPath names the fast matrix-product path this build and CPU would use with Opts.Fast,
// or "" when there is none (then Opts.Fast runs the portable code).
func FastPath() string {
	if f, ok := fastKernel(); ok {
		return f.name
	}
	return ""
}

// gemmDriver runs the blocked product over B packed into nr-wide panels of all K (bp). The
// output is cut into a grid of row-panel ranges x column-panel ranges, one per goroutine:
// rows first (as many ranges as threads allow), columns only when there are fewer row panels
// than threads (matrix-vector products). Each goroutine packs its own mr-high panels of A and
// computes its block of C, K block by K block. No cut crosses K, so every element's sum is
// the same for any grid.
func gemmDriver(kn microKernel, threads, m, n, k int, a []float32, lda int, bp []float32, c []float32, ldc int) {
	mr, nr := kn.mr, kn.nr
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	if w := float64(m) * float64(n) * float64(k) * kn.macNs / minWork; w < float64(threads) {
		threads = max(1, int(w)) // too little work to share
	}
	tr := min(threads, mp)
	tc := min(max(1, threads/tr), np)
	parallel(tr*tc, tr*tc, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			ri, ci := t/tc, t%tc
			gemmBlock(kn, m, n, k, a, lda, bp, c, ldc, mp*ri/tr, mp*(ri+1)/tr, np*ci/tc, np*(ci+1)/tc)
		}
	})
}

// gemmBlock computes row panels [ilo, ihi) x column panels [jlo, jhi) of C.
func gemmBlock(kn microKernel, m, n, k int, a []float32, lda int, bp []float32, c []float32, ldc int, ilo, ihi, jlo, jhi int) {
	mr, nr := kn.mr, kn.nr
	for i := ilo * mr; i < min(ihi*mr, m); i++ {
		clear(c[i*ldc+jlo*nr : i*ldc+min(jhi*nr, n)])
	}
	if k == 0 || ilo >= ihi || jlo >= jhi {
		return
	}
	abuf := getBuf((ihi - ilo) * mr * k)
	defer putBuf(abuf)
	ap := *abuf
	for ip := ilo; ip < ihi; ip++ {
		packA(ap[(ip-ilo)*mr*k:(ip-ilo+1)*mr*k], a, lda, ip*mr, min(mr, m-ip*mr), mr, k)
	}
	tile := make([]float32, mr*nr)
	for pc := 0; pc < k; pc += kn.kc {
		kb := min(kn.kc, k-pc)
		for jp := jlo; jp < jhi; jp++ {
			bpan := bp[jp*nr*k+pc*nr : jp*nr*k+(pc+kb)*nr]
			c0 := jp * nr
			cols := min(nr, n-c0)
			for ip := ilo; ip < ihi; ip++ {
				apan := ap[(ip-ilo)*mr*k+pc*mr : (ip-ilo)*mr*k+(pc+kb)*mr]
				r0 := ip * mr
				rows := min(mr, m-r0)
				if rows == mr && cols == nr {
					kn.run(kb, apan, bpan, c[r0*ldc+c0:r0*ldc+c0+(mr-1)*ldc+nr], ldc)
					continue
				}
				clear(tile)
				for r := 0; r < rows; r++ {
					copy(tile[r*nr:r*nr+cols], c[(r0+r)*ldc+c0:])
				}
				kn.run(kb, apan, bpan, tile, nr)
				for r := 0; r < rows; r++ {
					copy(c[(r0+r)*ldc+c0:(r0+r)*ldc+c0+cols], tile[r*nr:])
				}
			}
		}
	}
}

// packA copies rows [r0, r0+rows) of A into dst as dst[p*mr+r], padding to mr rows with zeros.
func packA(dst, a []float32, lda, r0, rows, mr, k int) {
	for r := 0; r < rows; r++ {
		src := a[(r0+r)*lda : (r0+r)*lda+k]
		for p, v := range src {
			dst[p*mr+r] = v
		}
	}
	for r := rows; r < mr; r++ {
		for p := 0; p < k; p++ {
			dst[p*mr+r] = 0
		}
	}
}

// packB copies columns [c0, c0+cols) of B into dst as dst[p*nr+j], padding to nr with zeros.
func packB(dst, b []float32, ldb int, layout Layout, c0, cols, nr, k int) {
	if layout == KN {
		for p := 0; p < k; p++ {
			d := dst[p*nr : p*nr+nr]
			copy(d, b[p*ldb+c0:p*ldb+c0+cols])
			clear(d[cols:])
		}
		return
	}
	// Transpose in blocks of 16 K values so that the nr x 16 destination block stays in L1
	// while the nr source rows are read 64 bytes at a time.
	const pb = 16
	for p0 := 0; p0 < k; p0 += pb {
		pn := min(pb, k-p0)
		for j := 0; j < cols; j++ {
			src := b[(c0+j)*ldb+p0 : (c0+j)*ldb+p0+pn]
			for pp, v := range src {
				dst[(p0+pp)*nr+j] = v
			}
		}
		for j := cols; j < nr; j++ {
			for pp := 0; pp < pn; pp++ {
				dst[(p0+pp)*nr+j] = 0
			}
		}
	}
}

// portableKernel is the scalar 4x4 register-blocked kernel: sixteen independent sums, each
// continued from c in p order with explicitly rounded products.
var portableKernel = microKernel{mr: 4, nr: 4, kc: 512, macNs: 0.4, name: "portable", run: kernel4x4}

func kernel4x4(kc int, a, b, c []float32, ldc int) {
	r0 := c[0:4:4]
	r1 := c[ldc : ldc+4 : ldc+4]
	r2 := c[2*ldc : 2*ldc+4 : 2*ldc+4]
	r3 := c[3*ldc : 3*ldc+4 : 3*ldc+4]
	c00, c01, c02, c03 := r0[0], r0[1], r0[2], r0[3]
	c10, c11, c12, c13 := r1[0], r1[1], r1[2], r1[3]
	c20, c21, c22, c23 := r2[0], r2[1], r2[2], r2[3]
	c30, c31, c32, c33 := r3[0], r3[1], r3[2], r3[3]
	a = a[:4*kc]
	b = b[:4*kc]
	for len(a) >= 4 && len(b) >= 4 {
		a0, a1, a2, a3 := a[0], a[1], a[2], a[3]
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		c00 += float32(a0 * b0)
		c01 += float32(a0 * b1)
		c02 += float32(a0 * b2)
		c03 += float32(a0 * b3)
		c10 += float32(a1 * b0)
		c11 += float32(a1 * b1)
		c12 += float32(a1 * b2)
		c13 += float32(a1 * b3)
		c20 += float32(a2 * b0)
		c21 += float32(a2 * b1)
		c22 += float32(a2 * b2)
		c23 += float32(a2 * b3)
		c30 += float32(a3 * b0)
		c31 += float32(a3 * b1)
		c32 += float32(a3 * b2)
		c33 += float32(a3 * b3)
		a = a[4:]
		b = b[4:]
	}
	r0[0], r0[1], r0[2], r0[3] = c00, c01, c02, c03
	r1[0], r1[1], r1[2], r1[3] = c10, c11, c12, c13
	r2[0], r2[1], r2[2], r2[3] = c20, c21, c22, c23
	r3[0], r3[1], r3[2], r3[3] = c30, c31, c32, c33
}
