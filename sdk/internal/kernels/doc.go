// Package kernels holds the compute kernels of the pure-Go FlexTok engine: matrix products
// (Linear, Gemm), LayerNorm (also per head, for QK-norm), GroupNorm, adaLN modulation and the
// gated residual add, SiLU and the SwiGLU combine, multi-head attention with masks, Conv2d and
// nearest 2x upsampling.
//
// # Overview
//
// All tensors are dense float32 slices in row-major order with explicit dimensions; weights
// keep the PyTorch layouts ([out, in] for Linear, [out, in, kh, kw] for Conv2d), so a
// checkpoint's tensors are used as they are. Kernels panic with a "flextok/kernels:" message on
// a shape mismatch, which is a programmer error.
//
// Every kernel takes an Opts: Threads (how many goroutines it may use) and Fast (whether the
// matrix products may use the platform fast path). The zero Opts is the deterministic
// reference: portable Go on the calling goroutine.
//
// Gemm is the one matrix product. Its portable path packs A into 4-row and B into 4-column
// panels and runs a scalar 4x4 register-blocked kernel; it builds everywhere, including
// GOOS=js and GOOS=wasip1 GOARCH=wasm. On amd64 (unless built with -tags purego) Opts.Fast
// selects an assembly micro-kernel over the same packing scheme, chosen at run time with
// golang.org/x/sys/cpu: 12x32 with 24 ZMM accumulators on AVX-512F, else 6x16 with 12 YMM
// accumulators on AVX2+FMA, else the portable kernel; both use VFMADD231PS over K blocks of
// 256. FastPath names the path in use; gen_amd64.go generates gemm_amd64.s. Threads split the
// output by row panels (and by column panels when there are fewer row panels than threads).
// PackWeights and LinearPacked pack a weight matrix once for repeated products.
//
// Conv2d's portable path is the im2col product (per panel of output pixels) on the portable
// kernel. Its fast path runs 3x3 stride-1 convolutions, the bulk of the VAE, on a direct
// kernel instead (conv_direct.go): the same register tile as the matrix kernel, reading the
// input rows in place from a zero-padded copy of a band of rows, shifted by each tap, so no
// im2col matrix is built; other convolutions stay im2col products on the fast kernel.
// Conv2dPacked with weights from PackConvWeightsFor does the same on the bf16 path.
//
// With Opts.BF16, PackWeights stores the weights as bfloat16 (half the memory) and
// LinearPacked rounds the activations to bf16 as it packs each panel, with float32 products
// and sums: VDPBF16PS (12x32, AVX512_BF16, chosen at run time; Go's assembler does not know
// the instruction, so gen_amd64.go writes its EVEX bytes) or, on other CPUs and builds, the
// same operands widened to float32 block by block and run on the float32 kernel Opts.Fast
// selects. bf16.go gives the error bound; BF16Path names the path. AMX tiles are not used.
//
// # Determinism
//
// The portable path gives the same bits on every platform (amd64, arm64, wasm) and for every
// thread count; TestGolden pins a sha256 of all kernels' outputs that passes natively, under
// GOOS=js and with -tags purego. The rules that make it so:
//
//   - Every product that is added to something is rounded explicitly, acc += float32(a*b);
//     the Go spec lets a compiler fuse x*y+z into an FMA (gc does on arm64) but never across
//     an explicit conversion.
//   - Every reduction has one fixed order: a matrix-product element sums over K in index
//     order from zero, then adds the bias; normalisation statistics (mean, then the variance
//     about it) and softmax denominators accumulate in float64 in index order and are
//     rounded to float32 once.
//   - Work is split across goroutines only by output rows, columns, heads or groups, never
//     along a reduction axis, so Opts.Threads changes when an element is computed, not how.
//   - exp comes from sdk/internal/fmath (pure Go everywhere), never math.Exp, which is
//     assembly on amd64; sqrt is correctly rounded by IEEE 754 on every platform.
//
// The fast path (Opts.Fast) fuses multiply-adds and sums in K blocks, so it is not
// bit-identical to the portable path; each element is within (K+2)·2^-24·Σ|a·b| of the exact
// value, as the portable one is, and the tests check the two paths against each other within
// twice that bound. Use it where a bounded result is acceptable, never for exact conformance.
package kernels
