//go:build amd64 && !purego

#include "textflag.h"

// Vector float32 exponential for the fast path (AVX-512F), Cephes' expf: clamp x to
// [-87.34, 88.38], k = round(x·log2e), r = x − k·ln2 (two-part ln2), e^r by a degree-7
// polynomial (1 + r + r²·p(r)), then ·2^k with VSCALEFPS. Relative error about 1e-7 (a couple
// of float32 ulps); exp_amd64_test.go checks it.

DATA expc<>+0(SB)/4, $0x42b0c0a5  // 88.3762626647949: upper clamp
DATA expc<>+4(SB)/4, $0xc2aeac50  // -87.3365447505531: lower clamp
DATA expc<>+8(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expc<>+12(SB)/4, $0x3f318000 // C1 = 0.693359375 (ln2 high part)
DATA expc<>+16(SB)/4, $0xb95e8083 // C2 = -2.12194440e-4 (ln2 low part)
DATA expc<>+20(SB)/4, $0x39506967 // p0 1.9875691500e-4
DATA expc<>+24(SB)/4, $0x3ab743ce // p1 1.3981999507e-3
DATA expc<>+28(SB)/4, $0x3c088908 // p2 8.3334519073e-3
DATA expc<>+32(SB)/4, $0x3d2aa9c1 // p3 4.1665795894e-2
DATA expc<>+36(SB)/4, $0x3e2aaaaa // p4 1.6666665459e-1
DATA expc<>+40(SB)/4, $0x3f000000 // p5 5.0000001201e-1
DATA expc<>+44(SB)/4, $0x3f800000 // 1
DATA expc<>+48(SB)/4, $0xbf800000 // -1
GLOBL expc<>(SB), RODATA|NOPTR, $52

// LOADC broadcasts the constants into Z19-Z31.
#define LOADC \
	VBROADCASTSS expc<>+0(SB), Z19 \
	VBROADCASTSS expc<>+4(SB), Z20 \
	VBROADCASTSS expc<>+8(SB), Z21 \
	VBROADCASTSS expc<>+12(SB), Z22 \
	VBROADCASTSS expc<>+16(SB), Z23 \
	VBROADCASTSS expc<>+20(SB), Z24 \
	VBROADCASTSS expc<>+24(SB), Z25 \
	VBROADCASTSS expc<>+28(SB), Z26 \
	VBROADCASTSS expc<>+32(SB), Z27 \
	VBROADCASTSS expc<>+36(SB), Z28 \
	VBROADCASTSS expc<>+40(SB), Z29 \
	VBROADCASTSS expc<>+44(SB), Z30 \
	VBROADCASTSS expc<>+48(SB), Z31

// EXPF sets R = e^X (X is clobbered; T and U are scratch).
#define EXPF(X, R, T, U) \
	VMINPS Z19, X, X \
	VMAXPS Z20, X, X \
	VMULPS Z21, X, T \
	VRNDSCALEPS $0, T, T \
	VFNMADD231PS Z22, T, X \
	VFNMADD231PS Z23, T, X \
	VMOVAPS Z24, R \
	VFMADD213PS Z25, X, R \
	VFMADD213PS Z26, X, R \
	VFMADD213PS Z27, X, R \
	VFMADD213PS Z28, X, R \
	VFMADD213PS Z29, X, R \
	VMULPS X, X, U \
	VFMADD213PS X, U, R \
	VADDPS Z30, R, R \
	VSCALEFPS T, R, R

// func expShiftAVX512(dst, src *float32, n int, shift float32)
// dst[i] = e^(src[i] − shift), n a multiple of 16.
TEXT ·expShiftAVX512(SB), NOSPLIT, $0-28
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS shift+24(FP), Z18
	LOADC
	SHRQ $4, CX
	JZ expdone
exploop:
	VMOVUPS (SI), Z0
	VSUBPS Z18, Z0, Z0
	EXPF(Z0, Z1, Z2, Z3)
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ exploop
expdone:
	VZEROUPPER
	RET

// func siluAVX512(dst, src *float32, n int)
// dst[i] = src[i] / (1 + e^(−src[i])), n a multiple of 16.
TEXT ·siluAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADC
	SHRQ $4, CX
	JZ siludone
siluloop:
	VMOVUPS (SI), Z4
	VMULPS Z31, Z4, Z0
	EXPF(Z0, Z1, Z2, Z3)
	VADDPS Z30, Z1, Z1
	VDIVPS Z1, Z4, Z5
	VMOVUPS Z5, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ siluloop
siludone:
	VZEROUPPER
	RET

// func swigluAVX512(dst, a, b *float32, n int)
// dst[i] = a[i] / (1 + e^(−a[i])) · b[i], n a multiple of 16.
TEXT ·swigluAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	LOADC
	SHRQ $4, CX
	JZ swidone
swiloop:
	VMOVUPS (SI), Z4
	VMULPS Z31, Z4, Z0
	EXPF(Z0, Z1, Z2, Z3)
	VADDPS Z30, Z1, Z1
	VDIVPS Z1, Z4, Z5
	VMULPS (DX), Z5, Z5
	VMOVUPS Z5, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ swiloop
swidone:
	VZEROUPPER
	RET

// func softmaxAVX512(row *float32, n int, scale float32)
// row[i] = e^(s_i − max s) / Σ_j e^(s_j − max s) with s_i = row[i]·scale, in three passes:
// scale and maximum; exponentials, summed in float64 in 16 lanes; division by the float32 sum.
// n a multiple of 16, at least 16.
TEXT ·softmaxAVX512(SB), NOSPLIT, $0-20
	MOVQ row+0(FP), DI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	JZ smdone
	VBROADCASTSS scale+16(FP), Z18
	LOADC

	// Pass 1: s = row·scale, stored; running maximum in Z4.
	MOVQ DI, SI
	MOVQ CX, DX
	VMULPS (SI), Z18, Z4
	VMOVUPS Z4, (SI)
	ADDQ $64, SI
	DECQ DX
	JZ smmaxdone
smmaxloop:
	VMULPS (SI), Z18, Z0
	VMOVUPS Z0, (SI)
	VMAXPS Z0, Z4, Z4
	ADDQ $64, SI
	DECQ DX
	JNZ smmaxloop
smmaxdone:
	VEXTRACTF64X4 $1, Z4, Y5
	VMAXPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0x4e, X4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0xb1, X4, X5
	VMAXPS X5, X4, X4
	VBROADCASTSS X4, Z16

	// Pass 2: e = e^(s − max), stored; float64 sums of the low and high halves in Z6, Z7.
	VXORPD Z6, Z6, Z6
	VXORPD Z7, Z7, Z7
	MOVQ DI, SI
	MOVQ CX, DX
smexploop:
	VMOVUPS (SI), Z0
	VSUBPS Z16, Z0, Z0
	EXPF(Z0, Z1, Z2, Z3)
	VMOVUPS Z1, (SI)
	VCVTPS2PD Y1, Z2
	VADDPD Z2, Z6, Z6
	VEXTRACTF64X4 $1, Z1, Y3
	VCVTPS2PD Y3, Z3
	VADDPD Z3, Z7, Z7
	ADDQ $64, SI
	DECQ DX
	JNZ smexploop
	VADDPD Z7, Z6, Z6
	VEXTRACTF64X4 $1, Z6, Y7
	VADDPD Y7, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPD X7, X6, X6
	VPERMILPD $1, X6, X7
	VADDSD X7, X6, X6
	VCVTSD2SS X6, X6, X6
	VBROADCASTSS X6, Z6

	// Pass 3: row = e / float32(sum).
	MOVQ DI, SI
	MOVQ CX, DX
smdivloop:
	VMOVUPS (SI), Z0
	VDIVPS Z6, Z0, Z0
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	DECQ DX
	JNZ smdivloop
smdone:
	VZEROUPPER
	RET
