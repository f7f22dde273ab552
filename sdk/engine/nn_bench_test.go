//go:build linux || darwin

package engine

import (
	"context"
	"image"
	"math"
	"syscall"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// BenchmarkNNDefaultDecode times one Decode of the default model (its own steps and guidance,
// 32 tokens, fast path, 2 threads), and BenchmarkNND12Step one velocity call of a d12
// decoder (cond + uncond items of one 256 px image, fast path, 2 threads). Issue 11 compares
// them side by side before and after the trunk moved to sdk/nn (docs/benchmarks.md): build
// both test binaries and alternate their runs.
func BenchmarkNNDefaultDecode(b *testing.B) {
	d := defaultFiles(b)
	e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, Options{Threads: 2, Fast: true})
	if err != nil {
		b.Fatal(err)
	}
	H, W := e.ImageSize()
	img := image.NewNRGBA(image.Rect(0, 0, W, H))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	ctx := context.Background()
	p, err := e.Encode(ctx, img, EncodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Decode(ctx, p, DecodeOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := e.Decode(ctx, p, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkNND12Step(b *testing.B) {
	dec := d12Decoder(b, Options{Threads: 2, Fast: true})
	ids := make([]uint32, 256)
	for i := range ids {
		ids[i] = uint32(i * 250)
	}
	den, err := dec.Bind([][]uint32{ids}, []int{32})
	if err != nil {
		b.Fatal(err)
	}
	x := tensor.Tensor{Shape: []int{16, 32, 32}, Data: make([]float32, 16*32*32)}
	for i := range x.Data {
		x.Data[i] = float32(math.Sin(float64(i)))
	}
	items := []flow.Item{{Image: 0, X: x}, {Image: 0, Uncond: true, X: x}}
	ctx := context.Background()
	if err := den.Velocity(ctx, 0.5, items); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if err := den.Velocity(ctx, 0.5, items); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user + system CPU time in nanoseconds (on a shared machine it
// varies less than wall time: other processes' load does not count).
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
