package kernels

import "sync/atomic"

// The direct convolution of the fast path: 3x3 stride-1 convolutions (the bulk of the VAE)
// without im2col. For stride 1 the im2col row of tap (ci, dy, dx) over nr consecutive output
// pixels of output row oy is just input row oy+dy of channel ci shifted by dx, so the kernel
// reads those rows in place from a zero-padded copy of a band of input rows (each input value
// is copied (band+2)/band times, where im2col writes it nine times, once per tap). The weights
// are packed as for the matrix kernel; the kernel keeps an mr x nr tile of outputs in
// registers over a block of input channels and their nine taps.

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

// DirectConv, true by default, lets benchmarks compare the fast path's two algorithms for 3x3
// stride-1 convolutions: false runs them as the im2col product (as before the direct kernel).
// Change it only while no convolution runs.
var DirectConv = true

// useDirect reports whether convolution d runs on the direct kernel of the fast kernel kn.
func useDirect(kn microKernel, d ConvDims) (directKernel, bool) {
	if !DirectConv || d.KH != 3 || d.KW != 3 || max(d.Stride, 1) != 1 {
		return directKernel{}, false
	}
	return directKernelFor(kn)
}

// directPlan is how convDirect walks one convolution:
//   - channels: the input channels of one kernel call. The weights of an mr-row panel for them
//     (mr·9·channels floats, 13.5 KiB for mr = 12 and 32 channels) stay in L1 while the
//     kernel runs over every tile of a group of output rows.
//   - group: the output rows computed together into a contiguous buffer (OutC·group rows of
//     whole tiles), so that each weight panel is read once per group, not once per row.
//   - band: the output rows whose zero-padded input rows (band+2 rows of every channel) each
//     thread copies at a time, a multiple of group. The rows stay in L2 while every weight
//     panel runs over them, and the copy is never a second image in memory.
type directPlan struct{ channels, group, band int }

// planDirect sizes the plan for d on an mr x nr kernel that sums over planes input planes
// (channels, or pairs of channels for bf16) of 4-byte elements, for threads threads: blocks of
// channels planes; groups of output rows whose output buffer fits in 320 KiB (so a weight
// panel read from L2 or L3 serves several rows); bands whose input rows fit in 1 MiB, a
// multiple of the group, at least four per thread where the rows allow (threads take bands
// as they go). Measured on the d12 VAE's shapes (BenchmarkConv2dVAE, AMD EPYC with 1 MiB of L2
// per core, shared with other jobs, which makes differences under 10% hard to see): groups of
// 2-4 rows were 3-10% faster than single rows at 512 channels and no slower elsewhere; blocks
// of 16 or 64 channels were no faster than 32; bands of 4 rows or more were up to 5% faster
// than bands of one row.
func planDirect(d ConvDims, mr, nr, planes, channels, threads int) directPlan {
	oh, ow := d.Out()
	tw := (ow + nr - 1) / nr * nr
	rs := tw + d.KW - 1
	m := (d.OutC + mr - 1) / mr * mr
	group := max(1, min(oh, (320<<10)/(4*m*directStride(tw))))
	band := (1<<20)/(4*planes*rs) - (d.KH - 1)
	band = min(band, (oh+4*threads-1)/(4*threads))
	band = max(group, band/group*group)
	return directPlan{channels: channels, group: group, band: band}
}

// directStride is the row stride of the output buffer for rows of tw values: not a multiple
// of 1 KiB, which would put a tile's rows in the same few cache sets.
func directStride(tw int) int {
	if tw%256 == 0 {
		return tw + 16
	}
	return tw
}

// convDirect computes y [OutC, OutH·OutW] = conv(x, w) + bias (bias may be nil) for a 3x3
// stride-1 convolution with dk, walked as pl says. Every output's sum starts from the bias (or
// zero) and runs over blocks of pl.channels input channels in order; within a block the kernel
// sums (ci, dy, dx) in order with fused multiply-adds, and the block sums are added in order.
// Threads split the output rows, so the result is the same for every thread count, group and
// band. The error bound is Gemm's fast-path bound with K = InC·9.
func convDirect(dk directKernel, pl directPlan, threads int, d ConvDims, w, x, y, bias []float32) {
	m, k := d.OutC, d.InC*d.KH*d.KW
	mr := dk.mr
	mp := (m + mr - 1) / mr
	abuf := getBuf(mp * mr * k)
	defer putBuf(abuf)
	ap := *abuf
	parallelWork(threads, mp, float64(mr*k)*nsElem, func(lo, hi int) {
		for ip := lo; ip < hi; ip++ {
			packA(ap[ip*mr*k:(ip+1)*mr*k], w, k, ip*mr, min(mr, m-ip*mr), mr, k)
		}
	})
	pad := func(xp []float32, rs, ps, r0, rows int) { padRows(xp, x, d, rs, ps, r0, rows) }
	directDriver(dk.mr, dk.nr, dk.run, pl, threads, d, d.InC, ap, pad, getBuf, putBuf, y, bias)
}

// directDriver runs a direct kernel over the output of d, walked as pl says, for kernels over
// float32 values or over words of two bf16 values (pairs of input channels). planes is the
// number of input planes the kernel sums over (channels, or channel pairs), pl.channels the
// planes of one kernel call; ap holds the weights as mp panels of planes·9·mr elements; pad
// writes padded input rows [r0, r0+rows) of every plane into a band buffer (row stride rs,
// plane stride ps). get and put are the buffer pool of E.
func directDriver[E float32 | uint32](mr, nr int, run func(cn int, a, x []E, c []float32, ldc, rs, ps int),
	pl directPlan, threads int, d ConvDims, planes int, ap []E, pad func(xp []E, rs, ps, r0, rows int),
	get func(int) *[]E, put func(*[]E), y, bias []float32) {
	m := d.OutC
	oh, ow := d.Out()
	n := oh * ow
	mp := (m + mr - 1) / mr
	kp := planes * 9 * mr // a panel's elements
	tiles := (ow + nr - 1) / nr
	tw := tiles * nr
	rs := tw + d.KW - 1 // a padded row: the input at column PadL, zeros around it
	ps := (pl.band + d.KH - 1) * rs
	ldb := directStride(tw)
	ldg := pl.group * ldb // the buffer's stride from one output channel to the next
	cn := pl.channels
	// Bands go to the threads as they ask for them (not in fixed shares): on a shared machine
	// one thread may lose its core for a while, and the others take over its bands. Each
	// band's rows come out the same whoever computes them.
	nb := (oh + pl.band - 1) / pl.band
	workers := threads
	if w := float64(oh) * float64(m) * float64(planes*9) * float64(tw) * 0.02 / minWork; w < float64(workers) {
		workers = max(1, int(w))
	}
	workers = min(workers, nb)
	var next atomic.Int64
	parallel(workers, workers, func(_, _ int) {
		xbuf := get(planes * ps)
		defer put(xbuf)
		xp := *xbuf
		cbuf := getBuf(mp * mr * ldg)
		defer putBuf(cbuf)
		cb := *cbuf
		for {
			bi := int(next.Add(1)) - 1
			if bi >= nb {
				return
			}
			b0 := bi * pl.band
			bh := min(pl.band, oh-b0)
			pad(xp, rs, ps, b0, bh+d.KH-1)
			for g0 := b0; g0 < b0+bh; g0 += pl.group {
				gh := min(pl.group, b0+bh-g0)
				if bias == nil {
					clear(cb)
				} else {
					for i := 0; i < m; i++ {
						fill(cb[i*ldg:(i+1)*ldg], bias[i])
					}
					clear(cb[m*ldg:])
				}
				for c0 := 0; c0 < planes; c0 += cn {
					cc := min(cn, planes-c0)
					xg := xp[c0*ps+(g0-b0)*rs:]
					for ip := 0; ip < mp; ip++ {
						apan := ap[ip*kp+c0*9*mr : ip*kp+(c0+cc)*9*mr]
						for gy := 0; gy < gh; gy++ {
							ct := cb[ip*mr*ldg+gy*ldb:]
							for jt := 0; jt < tiles; jt++ {
								run(cc, apan, xg[gy*rs+jt*nr:], ct[jt*nr:], ldg, rs, ps)
							}
						}
					}
				}
				for i := 0; i < m; i++ {
					for gy := 0; gy < gh; gy++ {
						o := i*n + (g0+gy)*ow
						copy(y[o:o+ow], cb[i*ldg+gy*ldb:i*ldg+gy*ldb+ow])
					}
				}
			}
		}
	})
}

// padRows writes rows [r0, r0+rows) of the zero-padded input (padded row r is input row
// r−PadT, padded column c is input column c−PadL, zero outside the input) of every channel
// into xp: channel c's rows at xp[c*ps:], rs values each.
func padRows(xp, x []float32, d ConvDims, rs, ps, r0, rows int) {
	hw := d.InH * d.InW
	padBand(xp, d.InC, d, rs, ps, r0, rows, func(dst []float32, c, off int) {
		copy(dst, x[c*hw+off:c*hw+off+len(dst)])
	})
}

// padBand is the walk of padRows over planes planes of any element type: for each padded
// row of the band it clears the padding and the rows outside the input, and put fills the
// len(dst) input columns of plane p that reach an output, starting at offset off of the
// plane's input (iy·InW).
func padBand[T any](xp []T, planes int, d ConvDims, rs, ps, r0, rows int, put func(dst []T, p, off int)) {
	n := min(d.InW, rs-d.PadL) // input columns that reach an output
	for p := 0; p < planes; p++ {
		for r := 0; r < rows; r++ {
			row := xp[p*ps+r*rs : p*ps+(r+1)*rs]
			iy := r0 + r - d.PadT
			if iy < 0 || iy >= d.InH {
				clear(row)
				continue
			}
			clear(row[:d.PadL])
			put(row[d.PadL:d.PadL+n], p, iy*d.InW)
			clear(row[d.PadL+n:])
		}
	}
}

// fill sets every element of s to v (by doubling copies, which run as vector moves).
func fill(s []float32, v float32) {
	if len(s) == 0 {
		return
	}
	s[0] = v
	for n := 1; n < len(s); n *= 2 {
		copy(s[n:], s[:n])
	}
}
