package kernels

// The direct convolution of the fast path: 3x3 stride-1 convolutions (the bulk of the VAE)
// without im2col. For stride 1 the im2col row of tap (ci, dy, dx) over nr consecutive output
// pixels of output row oy is just input row oy+dy of channel ci shifted by dx, so the kernel
// reads those rows in place from one zero-padded copy of the input (one copy of x per call,
// where im2col writes every input value nine times, once per tap). The weights are packed as
// for the matrix kernel; the kernel keeps an mr x nr tile of outputs in registers over a block
// of input channels and their nine taps.

// directKernel is a direct 3x3 stride-1 convolution micro-kernel: for r < mr and j < nr,
//
//	c[r*ldc+j] += Σ_{ci<cn} Σ_{dy,dx<3} a[(ci*9+dy*3+dx)*mr+r] * x[ci*ps+dy*rs+dx+j]
//
// with a in packA's layout and x in a zero-padded input copy (row stride rs, plane stride ps).
type directKernel struct {
	mr, nr int
	name   string
	run    func(cn int, a, x, c []float32, ldc, rs, ps int)
}

// directChannels is the number of input channels one kernel call covers: the weights of an
// mr-row panel for them (mr·9·directChannels floats, 13.5 KiB for mr = 12) stay in L1 while
// the kernel runs over all the tiles of an output row.
var directChannels = 32

// useDirect reports whether convolution d runs on the direct kernel of the fast kernel kn.
func useDirect(kn microKernel, d ConvDims) (directKernel, bool) {
	if d.KH != 3 || d.KW != 3 || max(d.Stride, 1) != 1 {
		return directKernel{}, false
	}
	return directKernelFor(kn)
}

// paddedInput describes the zero-padded copy of a stride-1 convolution's input that a direct
// kernel reads: InC planes of rows rows of rs values, the input at row PadT and column PadL
// of each plane. Each row is wide enough for whole nr-wide tiles of output pixels plus the
// kernel's KW−1 extra columns; whatever lies outside the input is zero.
type paddedInput struct {
	rs, ps, rows int
	tiles        int // nr-wide tiles per output row
}

func padLayout(d ConvDims, nr int) paddedInput {
	oh, ow := d.Out()
	tiles := (ow + nr - 1) / nr
	rs := tiles*nr + d.KW - 1
	rows := oh + d.KH - 1
	return paddedInput{rs: rs, ps: rows * rs, rows: rows, tiles: tiles}
}

// padCopy writes the zero-padded copy of x [InC, InH, InW] into xp (InC·p.ps values),
// channels split across threads.
func padCopy(threads int, xp, x []float32, d ConvDims, p paddedInput) {
	hw := d.InH * d.InW
	parallelWork(threads, d.InC, float64(p.ps)*nsElem, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			plane := xp[c*p.ps : (c+1)*p.ps]
			top := min(d.PadT, p.rows) * p.rs
			clear(plane[:top])
			src := x[c*hw : (c+1)*hw]
			iy := 0
			for ; iy < d.InH && d.PadT+iy < p.rows; iy++ {
				row := plane[(d.PadT+iy)*p.rs : (d.PadT+iy+1)*p.rs]
				n := min(d.InW, p.rs-d.PadL) // input columns that reach an output
				clear(row[:d.PadL])
				copy(row[d.PadL:d.PadL+n], src[iy*d.InW:iy*d.InW+n])
				clear(row[d.PadL+n:])
			}
			clear(plane[(d.PadT+iy)*p.rs:])
		}
	})
}

// convDirect computes y [OutC, OutH·OutW] = conv(x, w) + bias (bias may be nil) for a 3x3
// stride-1 convolution with dk. Every output's sum runs over blocks of directChannels input
// channels in order; within a block the kernel sums (ci, dy, dx) in order with fused
// multiply-adds; the block sums are added to the output in order, then the bias. Threads
// split the output rows, so the result is the same for every thread count. The error bound is
// Gemm's fast-path bound with K = InC·9.
func convDirect(dk directKernel, threads int, d ConvDims, w, x, y, bias []float32) {
	m, k := d.OutC, d.InC*d.KH*d.KW
	oh, ow := d.Out()
	n := oh * ow
	mr, nr := dk.mr, dk.nr
	mp := (m + mr - 1) / mr
	p := padLayout(d, nr)

	xbuf := getBuf(d.InC * p.ps)
	defer putBuf(xbuf)
	xp := *xbuf
	padCopy(threads, xp, x, d, p)

	abuf := getBuf(mp * mr * k)
	defer putBuf(abuf)
	ap := *abuf
	parallelWork(threads, mp, float64(mr*k)*nsElem, func(lo, hi int) {
		for ip := lo; ip < hi; ip++ {
			packA(ap[ip*mr*k:(ip+1)*mr*k], w, k, ip*mr, min(mr, m-ip*mr), mr, k)
		}
	})

	tw := p.tiles * nr
	// The output row is computed in a contiguous buffer and copied out at the end (as in
	// convGemm: rows of y are a whole image apart). Its row stride avoids a multiple of 1 KiB,
	// which would put the tile's rows in the same few cache sets.
	ldb := tw
	if ldb%256 == 0 {
		ldb += 16
	}
	cn := directChannels
	parallelWork(threads, oh, float64(m)*float64(k)*float64(tw)*0.02, func(lo, hi int) {
		cbuf := getBuf(mp * mr * ldb)
		defer putBuf(cbuf)
		cb := *cbuf
		for oy := lo; oy < hi; oy++ {
			clear(cb)
			for c0 := 0; c0 < d.InC; c0 += cn {
				cc := min(cn, d.InC-c0)
				xrow := xp[c0*p.ps+oy*p.rs:]
				for ip := 0; ip < mp; ip++ {
					apan := ap[ip*mr*k+c0*9*mr : ip*mr*k+(c0+cc)*9*mr]
					ct := cb[ip*mr*ldb:]
					for jt := 0; jt < p.tiles; jt++ {
						dk.run(cc, apan, xrow[jt*nr:], ct[jt*nr:], ldb, p.rs, p.ps)
					}
				}
			}
			for i := 0; i < m; i++ {
				dst, src := y[i*n+oy*ow:i*n+oy*ow+ow], cb[i*ldb:i*ldb+ow]
				if bias == nil {
					copy(dst, src)
					continue
				}
				b := bias[i]
				for j, v := range src {
					dst[j] = v + b
				}
			}
		}
	})
}
