// Package fsq implements finite scalar quantisation (FSQ, Mentzer et al. 2023) exactly as the
// official FlexTok code does (flextok/regularizers/quantize_fsq.py).
//
// # Overview
//
// A latent vector z of D dimensions is bounded per dimension with a shifted tanh, rounded to one
// of L_d levels, and rescaled to codes in [-1, 1]. The D digits form one integer index in a mixed
// radix: index = c_0 + L_0·c_1 + L_0·L_1·c_2 + ..., so dimension 0 is the least significant
// digit. The default levels [8, 8, 8, 5, 5, 5] give a codebook of 64,000 entries, so every
// FlexTok token id fits in 16 bits. The codebook is implicit: Code computes any entry.
//
// # Determinism
//
// Every step is rounded to float32 in the order PyTorch evaluates it in float32, and tanh and
// atanh come from sdk/internal/fmath, so Quantize gives the same bits on every platform. Against
// the official PyTorch FSQ, ids could only differ where a bounded value lies within an ulp of a
// rounding boundary (x.5) and PyTorch's float32 tanh rounds differently from ours; on 2,609
// latents placed within 8 ulps of every boundary (conformance/testdata/fsq) none differed.
// ids <-> codes conversions are exact integer arithmetic.
package fsq
