// Package flow is FlexTok's rectified-flow sampler: the loop of the official MinRFPipeline
// (apple/ml-flextok, flextok/flow_matching/pipelines.py), its classifier-free and adaptive
// projected guidance, and the project's seeded noise. The velocity model is plugged in as a
// [Denoiser], so the pure-Go engine and ONNX Runtime share this code bit for bit.
//
// # Overview
//
// [Sample] starts from noise x_1 (drawn by [Noise] or injected through Options.Noise) and, for
// i = T, T-1, ..., 1 with t = i/T, calls the Denoiser once with every evaluation the step needs
// (conditional, and unconditional when guidance is on), combines them, and takes the Euler step
//
//	x <- x - dt*v,   dt = 1/T,
//
// so the model is never evaluated at t = 0. The convention is the official one: x_t =
// t*noise + (1-t)*x0 and v = noise - x0, so x_t - t*v estimates x0; [Step.X0] carries that
// estimate to Options.OnStep for progressive previews.
//
// Guidance is on when Options.GuidanceFunc is set or Options.Guidance is neither 0 (meaning 1)
// nor 1. Plain CFG gives u + s*(c - u). With Options.APG, the official
// normalized_guidance(momentum -0.5, eta 0, norm_threshold 2.5) is applied per image: the
// difference c - u goes through a momentum buffer that persists across steps, is rescaled to an
// L2 norm of at most 2.5, loses its component parallel to c (projection in float64), and
// out = c + (s-1)*orth.
//
// # Determinism
//
// Everything here is exact: the same inputs give the same bits on amd64, arm64, GOOS=js and
// GOOS=wasip1, because every float32 product is rounded explicitly before it is added (the Go
// compiler may not fuse a rounded product into an FMA), reductions run serially in index order,
// and only sdk/internal/fmath.Log and math.Sqrt (correctly rounded everywhere) are used.
//
// Time grid: t = float32(float64(i)/float64(T)) (the division is done in float64 and rounded
// once, like torch's t*ones(B) of a Python float); dt = float32(1/float64(T)); the Euler update
// is x[j] = x[j] - float32(dt*v[j]). CFG: out[j] = u[j] + float32(float32(s)*float32(c[j]-u[j])).
// The APG order and precisions are documented on the unexported apg.apply; the one place that
// is not bit-identical to torch is the float32 L2 norm used for clipping, which this package
// computes more accurately than torch (see norm32), within torch's own reduction error.
//
// Noise: a stream of standard normals defined by (seed, stream), specified so that a port
// (the TypeScript bindings) reproduces it bit for bit:
//
//  1. Uniform bits: Go's math/rand/v2 PCG (PCG-DXSM, 128-bit state). The state is
//     S = seed<<64 | stream. Each draw sets S = S*M + I mod 2^128 with
//     M = 0x2360ed051fc65da44385df649fccf645 and I = 0x5851f42d4c957f2d14057b7ef767814f, then,
//     with hi and lo the halves of the new S, outputs (all mod 2^64):
//     h = hi; h ^= h>>32; h *= 0xda942042e4dd58b5; h ^= h>>48; h *= lo|1.
//  2. Uniform in [-1, 1): u = (x>>11) * 2^-52 - 1, exact in float64.
//  3. Marsaglia's polar method in float64 with each operation rounded (JavaScript semantics):
//     draw u then v (two 64-bit outputs); s = u*u + v*v (each square rounded, then the sum);
//     if s >= 1 or s == 0, discard both and draw again (otherwise s >= 2^-104, never
//     subnormal); then
//     f = sqrt((-2*log(s)) / s) with log = fmath.Log (ported as is; Math.log is not portable)
//     and a correctly rounded sqrt; the pair of normals is (u*f, v*f), delivered in that order.
//  4. Each value is rounded from float64 to float32 (round to nearest even, Math.fround).
//
// The values form one sequence: image 0 takes the first C*h*w values in row-major order,
// image 1 the next ones, and so on; an unpaired second value of a pair carries over to the
// next image. Golden hashes of the first values are in noise_test.go. This generator does not
// reproduce torch.randn (CPU MT19937 and CUDA Philox differ from each other anyway): to compare
// with PyTorch, inject the same noise on both sides.
package flow
