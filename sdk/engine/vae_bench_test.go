//go:build linux || darwin

package engine

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// BenchmarkVAEDecodeConv decodes a 256 px image (32x32 latent) with the d12 VAE's widths
// ([128,256,512,512], 2 layers per block, 32 groups, C=16) and random weights on the fast path
// (2 threads), its 3x3 stride-1 convolutions on the fast path's two algorithms side by side:
// conv=im2col (the im2col product) and conv=direct (the direct kernel, the default). GFLOP/s
// counts the convolutions' and linears' multiply-adds as two; cpu-ns/op is the process's CPU
// time per decode (on a shared machine it varies less than wall time). Run the test binary
// several times to alternate the two (-count repeats each one in a row).
func BenchmarkVAEDecodeConv(b *testing.B) {
	ctx := context.Background()
	cfg := model.VAEConfig{
		InChannels: 3, OutChannels: 3, LatentChannels: 16,
		BlockOutChannels: []int{128, 256, 512, 512}, LayersPerBlock: 2, NormGroups: 32, NormEps: 1e-6,
		MidBlockAttention: true, UseQuantConv: true, UsePostQuantConv: true, ScalingFactor: 0.18215,
	}
	lat := vaeTensor(b, 1, 16, 32, 32)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range lat.Data {
		lat.Data[i] = float32(r.NormFloat64())
	}
	v := vaeRandom(b, cfg, Options{Fast: true, Threads: 2})
	_, flops := vaeFlops(&model.Config{VAE: cfg}, 256, 256)
	for _, direct := range []bool{false, true} {
		name := map[bool]string{false: "im2col", true: "direct"}[direct]
		b.Run("conv="+name, func(b *testing.B) {
			saved := kernels.DirectConv
			kernels.DirectConv = direct
			defer func() { kernels.DirectConv = saved }()
			if _, err := v.Decode(ctx, lat); err != nil { // untimed first call
				b.Fatal(err)
			}
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := v.Decode(ctx, lat); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			gflops(b, flops)
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}
