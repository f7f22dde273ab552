//go:build ignore

// gen_amd64 writes gemm_amd64.s: go run gen_amd64.go > gemm_amd64.s
//
// Two register-blocked micro-kernels with the same contract,
//
//	c[r*ldc+j] += Σ_{p<kc} a[p*mr+r] * b[p*nr+j]   for r < mr, j < nr, kc >= 1,
//
// over packed panels: each step loads one nr-wide row of b, broadcasts the mr values of a
// and issues 2·mr VFMADD231PS into 2·mr accumulators; at the end the accumulators are added
// to c.
//   - AVX-512: mr=12, nr=32: Z0-Z23 accumulators, Z24-Z25 b, Z26-Z31 broadcasts.
//   - AVX2+FMA: mr=6, nr=16: Y0-Y11 accumulators, Y12-Y13 b, Y14-Y15 broadcasts.
//
// and one bf16 kernel, kernel12x32BF16, with the AVX-512 kernel's registers and loop, over
// panels of uint32 words that each hold two bf16 values (K index 2q in the low half, 2q+1 in
// the high half): each step broadcasts a word of a and issues VDPBF16PS, which adds both
// products of a pair to a float32 lane, so kc counts pairs. Go's assembler does not know
// VDPBF16PS (AVX512_BF16): it is written as its EVEX bytes (vdpbf16ps below). cvtBF16x32
// rounds float32 rows to bf16 words with VCVTNE2PS2BF16 (also written as bytes) for packing.
package main

import "fmt"

func p(f string, a ...any) { fmt.Printf(f+"\n", a...) }

// vdpbf16ps returns the bytes of VDPBF16PS zmm(dst) += zmm(v) · zmm(rm), register form:
// EVEX.512.F3.0F38.W0 52 /r (Intel SDM vol. 2, VDPBF16PS). The EVEX payload inverts R, X,
// B, R' and vvvv/V'; X extends the rm register (bit 4) in the register form.
func vdpbf16ps(dst, v, rm int) string {
	inv := func(r, bit int) int { return ^(r >> bit) & 1 }
	p0 := inv(dst, 3)<<7 | inv(rm, 4)<<6 | inv(rm, 3)<<5 | inv(dst, 4)<<4 | 0b10
	p1 := (^v&0xf)<<3 | 1<<2 | 0b10
	p2 := 0b10<<5 | inv(v, 4)<<3
	modrm := 0xc0 | (dst&7)<<3 | rm&7
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x52; BYTE $0x%02x // VDPBF16PS Z%d, Z%d, Z%d",
		p0, p1, p2, modrm, rm, v, dst)
}

// vcvtne2ps2bf16 returns the bytes of VCVTNE2PS2BF16 zmm(dst) = [bf16(zmm(rm)) | bf16(zmm(v))]
// (the low 16 words from rm, the high 16 from v), register form: EVEX.512.F2.0F38.W0 72 /r.
func vcvtne2ps2bf16(dst, v, rm int) string {
	inv := func(r, bit int) int { return ^(r >> bit) & 1 }
	p0 := inv(dst, 3)<<7 | inv(rm, 4)<<6 | inv(rm, 3)<<5 | inv(dst, 4)<<4 | 0b10
	p1 := (^v&0xf)<<3 | 1<<2 | 0b11
	p2 := 0b10<<5 | inv(v, 4)<<3
	modrm := 0xc0 | (dst&7)<<3 | rm&7
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x72; BYTE $0x%02x // VCVTNE2PS2BF16 Z%d, Z%d, Z%d",
		p0, p1, p2, modrm, rm, v, dst)
}

// cvt writes cvtBF16x32: n blocks of 32 float32 at src to 32 bf16 (16 words) each at dst.
func cvt() {
	p("")
	p("// func cvtBF16x32(dst *uint32, src *float32, n int)")
	p("TEXT ·cvtBF16x32(SB), NOSPLIT, $0-24")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("cvtBF16x32_loop:")
	p("\tVMOVUPS (SI), Z0")
	p("\tVMOVUPS 64(SI), Z1")
	p("\t%s", vcvtne2ps2bf16(2, 1, 0))
	p("\tVMOVDQU32 Z2, (DI)")
	p("\tADDQ $128, SI")
	p("\tADDQ $64, DI")
	p("\tDECQ CX")
	p("\tJNZ cvtBF16x32_loop")
	p("\tVZEROUPPER")
	p("\tRET")
}

// pair writes pairRowsBF16x32: for q < kq, the 32 words dst[q*32+j] = bf16(src[2q*32+j]) |
// bf16(src[(2q+1)*32+j])<<16 of a 32-wide float32 panel, rounded to nearest even in integer
// arithmetic (x + 0x7fff + bit 16 of x, then the high half), as RoundBF16 does for every value
// but a signalling NaN.
func pair() {
	p("")
	p("// func pairRowsBF16x32(dst *uint32, src *float32, kq int)")
	p("TEXT ·pairRowsBF16x32(SB), NOSPLIT, $0-24")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ kq+16(FP), CX")
	p("\tMOVL $0x7fff, AX")
	p("\tVPBROADCASTD AX, Z30")
	p("\tMOVL $1, AX")
	p("\tVPBROADCASTD AX, Z31")
	p("\tMOVL $0xffff0000, AX")
	p("\tVPBROADCASTD AX, Z29")
	p("pairRowsBF16x32_loop:")
	for h := 0; h < 2; h++ {
		lo, hi := 0, 1
		p("\tVMOVDQU32 %d(SI), Z%d", 64*h, lo)
		p("\tVMOVDQU32 %d(SI), Z%d", 128+64*h, hi)
		for _, r := range []int{lo, hi} {
			t := r + 2
			p("\tVPSRLD $16, Z%d, Z%d", r, t)
			p("\tVPANDD Z31, Z%d, Z%d", t, t)
			p("\tVPADDD Z30, Z%d, Z%d", r, r)
			p("\tVPADDD Z%d, Z%d, Z%d", t, r, r)
		}
		p("\tVPSRLD $16, Z%d, Z%d", lo, lo)
		p("\tVPANDD Z29, Z%d, Z%d", hi, hi)
		p("\tVPORD Z%d, Z%d, Z%d", hi, lo, lo)
		p("\tVMOVDQU32 Z%d, %d(DI)", lo, 64*h)
	}
	p("\tADDQ $256, SI")
	p("\tADDQ $128, DI")
	p("\tDECQ CX")
	p("\tJNZ pairRowsBF16x32_loop")
	p("\tVZEROUPPER")
	p("\tRET")
}

// pair16 writes pairBF16x16: for j < 16n, dst[j] = bf16(lo[j]) | bf16(hi[j])<<16, two float32
// rows (two input channels) interleaved into words, with pair's rounding.
func pair16() {
	p("")
	p("// func pairBF16x16(dst *uint32, lo, hi *float32, n int)")
	p("TEXT ·pairBF16x16(SB), NOSPLIT, $0-32")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ lo+8(FP), SI")
	p("\tMOVQ hi+16(FP), DX")
	p("\tMOVQ n+24(FP), CX")
	p("\tMOVL $0x7fff, AX")
	p("\tVPBROADCASTD AX, Z30")
	p("\tMOVL $1, AX")
	p("\tVPBROADCASTD AX, Z31")
	p("\tMOVL $0xffff0000, AX")
	p("\tVPBROADCASTD AX, Z29")
	p("pairBF16x16_loop:")
	p("\tVMOVDQU32 (SI), Z0")
	p("\tVMOVDQU32 (DX), Z1")
	for _, r := range []int{0, 1} {
		t := r + 2
		p("\tVPSRLD $16, Z%d, Z%d", r, t)
		p("\tVPANDD Z31, Z%d, Z%d", t, t)
		p("\tVPADDD Z30, Z%d, Z%d", r, r)
		p("\tVPADDD Z%d, Z%d, Z%d", t, r, r)
	}
	p("\tVPSRLD $16, Z0, Z0")
	p("\tVPANDD Z29, Z1, Z1")
	p("\tVPORD Z1, Z0, Z0")
	p("\tVMOVDQU32 Z0, (DI)")
	p("\tADDQ $64, SI")
	p("\tADDQ $64, DX")
	p("\tADDQ $64, DI")
	p("\tDECQ CX")
	p("\tJNZ pairBF16x16_loop")
	p("\tVZEROUPPER")
	p("\tRET")
}

func kernel(name, reg string, mr, lanes, tmp0, ntmp int) {
	kernelOp(name, reg, mr, lanes, tmp0, ntmp, false)
}

func kernelOp(name, reg string, mr, lanes, tmp0, ntmp int, bf16 bool) {
	nr := 2 * lanes
	vb := 4 * lanes // bytes per vector
	b0, b1 := 2*mr, 2*mr+1
	p("")
	p("// func %s(kc int, a, b, c *float32, ldc int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-40", name)
	p("\tMOVQ kc+0(FP), CX")
	p("\tMOVQ a+8(FP), SI")
	p("\tMOVQ b+16(FP), DI")
	p("\tMOVQ c+24(FP), DX")
	p("\tMOVQ ldc+32(FP), R8")
	p("\tSHLQ $2, R8")
	zeroTile(reg, mr)
	p("%s_loop:", name)
	p("\tVMOVUPS (DI), %s%d", reg, b0)
	p("\tVMOVUPS %d(DI), %s%d", vb, reg, b1)
	for r := 0; r < mr; r++ {
		t := tmp0 + r%ntmp
		p("\tVBROADCASTSS %d(SI), %s%d", 4*r, reg, t)
		madd(reg, r, b0, b1, t, bf16)
	}
	p("\tADDQ $%d, SI", 4*mr)
	p("\tADDQ $%d, DI", 4*nr)
	p("\tDECQ CX")
	p("\tJNZ %s_loop", name)
	addStoreTile(reg, mr, vb)
}

// convKernel writes a direct 3x3 stride-1 convolution kernel with kernelOp's registers:
//
//	c[r*ldc+j] += Σ_{ci<cn} Σ_{dy,dx<3} a[(ci*9+dy*3+dx)*mr+r] * x[ci*ps+dy*rs+dx+j]
//
// for r < mr, j < nr, cn >= 1: a holds the packed weights of cn input channels (packA's
// layout over K in PyTorch's (ci, dy, dx) order) and x points at the top-left input value of
// nr consecutive output pixels of one row in a zero-padded copy of the input (row stride rs,
// plane stride ps, in elements). Each tap loads the nr input values of one shifted input row
// in place of a packed im2col row. With bf16 the elements are uint32 words of two bf16 values
// of consecutive input channels (a pair of channels per "ci") and the product is VDPBF16PS.
func convKernel(name, reg string, mr, lanes, tmp0, ntmp int, bf16 bool) {
	vb := 4 * lanes
	b0, b1 := 2*mr, 2*mr+1
	p("")
	if bf16 {
		p("// func %s(cn int, a, x *uint32, c *float32, ldc, rs, ps int)", name)
	} else {
		p("// func %s(cn int, a, x, c *float32, ldc, rs, ps int)", name)
	}
	p("TEXT ·%s(SB), NOSPLIT, $0-56", name)
	p("\tMOVQ cn+0(FP), CX")
	p("\tMOVQ a+8(FP), SI")
	p("\tMOVQ x+16(FP), DI")
	p("\tMOVQ c+24(FP), DX")
	p("\tMOVQ ldc+32(FP), R8")
	p("\tSHLQ $2, R8")
	p("\tMOVQ rs+40(FP), R9")
	p("\tSHLQ $2, R9")
	p("\tMOVQ ps+48(FP), R11")
	p("\tSHLQ $2, R11")
	p("\tLEAQ (R9)(R9*1), R10")
	zeroTile(reg, mr)
	p("%s_loop:", name)
	for dy := 0; dy < 3; dy++ {
		row := [3]string{"(DI)", "(DI)(R9*1)", "(DI)(R10*1)"}[dy]
		for dx := 0; dx < 3; dx++ {
			t := dy*3 + dx
			p("\tVMOVUPS %d%s, %s%d", 4*dx, row, reg, b0)
			p("\tVMOVUPS %d%s, %s%d", 4*dx+vb, row, reg, b1)
			for r := 0; r < mr; r++ {
				tr := tmp0 + r%ntmp
				p("\tVBROADCASTSS %d(SI), %s%d", 4*(t*mr+r), reg, tr)
				madd(reg, r, b0, b1, tr, bf16)
			}
		}
	}
	p("\tADDQ $%d, SI", 4*9*mr)
	p("\tADDQ R11, DI")
	p("\tDECQ CX")
	p("\tJNZ %s_loop", name)
	addStoreTile(reg, mr, vb)
}

// zeroTile clears the 2·mr accumulators.
func zeroTile(reg string, mr int) {
	for r := 0; r < 2*mr; r++ {
		if reg == "Z" {
			p("\tVPXORD Z%d, Z%d, Z%d", r, r, r)
		} else {
			p("\tVXORPS Y%d, Y%d, Y%d", r, r, r)
		}
	}
}

// madd accumulates row r's two vectors: (2r, 2r+1) += (b0, b1) · broadcast t, as FMAs or, for
// bf16, VDPBF16PS.
func madd(reg string, r, b0, b1, t int, bf16 bool) {
	if bf16 {
		p("\t%s", vdpbf16ps(2*r, b0, t))
		p("\t%s", vdpbf16ps(2*r+1, b1, t))
		return
	}
	p("\tVFMADD231PS %s%d, %s%d, %s%d", reg, b0, reg, t, reg, 2*r)
	p("\tVFMADD231PS %s%d, %s%d, %s%d", reg, b1, reg, t, reg, 2*r+1)
}

// addStoreTile adds the accumulators to the mr rows of c at DX (row stride R8 bytes) and
// stores them back, then returns.
func addStoreTile(reg string, mr, vb int) {
	for r := 0; r < mr; r++ {
		p("\tVADDPS (DX), %s%d, %s%d", reg, 2*r, reg, 2*r)
		p("\tVADDPS %d(DX), %s%d, %s%d", vb, reg, 2*r+1, reg, 2*r+1)
		p("\tVMOVUPS %s%d, (DX)", reg, 2*r)
		p("\tVMOVUPS %s%d, %d(DX)", reg, 2*r+1, vb)
		if r < mr-1 {
			p("\tADDQ R8, DX")
		}
	}
	p("\tVZEROUPPER")
	p("\tRET")
}

func main() {
	p("// Code generated by gen_amd64.go; DO NOT EDIT.")
	p("")
	p("//go:build amd64 && !purego")
	p("")
	p("#include \"textflag.h\"")
	p("")
	p("// Registers: CX=kc, SI=a, DI=b, DX=c, R8=ldc in bytes; see gen_amd64.go for the layout.")
	kernel("kernel12x32AVX512", "Z", 12, 16, 26, 6)
	kernel("kernel6x16AVX2", "Y", 6, 8, 14, 2)
	kernelOp("kernel12x32BF16", "Z", 12, 16, 26, 6, true)
	cvt()
	pair()
	convKernel("conv3x3x12x32AVX512", "Z", 12, 16, 26, 6, false)
	convKernel("conv3x3x6x16AVX2", "Y", 6, 8, 14, 2, false)
	convKernel("conv3x3x12x32BF16", "Z", 12, 16, 26, 6, true)
	pair16()
}
