package engine

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Benchmarks at the d12-d12 shapes (issue 3) on a checkpoint with random weights made by
// tools/mkcheckpoint:
//
//	go run ./tools/mkcheckpoint -size d12 -o /tmp/d12
//	FLEXTOK_D12=/tmp/d12 go test ./sdk/engine -run '^$' -bench BenchmarkD12 -benchtime 1x -timeout 30m
//
// Without FLEXTOK_D12 they skip, so CI never runs them. op=load reports the memory a load
// needs relative to the weights (f32 in memory): run it first in its process (the benchmark
// order does that) since it resets and reads the process's peak RSS. Every other op makes one
// untimed call first, so -benchtime 1x times a warm call.

func d12Dir(b *testing.B) string {
	dir := os.Getenv("FLEXTOK_D12")
	if dir == "" {
		b.Skip("FLEXTOK_D12 (a d12 checkpoint directory, see tools/mkcheckpoint) is not set")
	}
	return dir
}

// procStatus reads a kB field of /proc/self/status (VmHWM, VmRSS) in bytes; -1 if unknown.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return n << 10
		}
	}
	return -1
}

// resetPeakRSS makes VmHWM restart from the current RSS (Linux: "5" to clear_refs).
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// vaeFlops counts the VAE's convolutions, attention and linears (2 per multiply-add) for an
// image of H×W, from the weight table: encode (VAE encoder + quant_conv) and decode
// (post_quant_conv + VAE decoder). Norms and activations are left out.
func vaeFlops(cfg *model.Config, H, W int) (enc, dec float64) {
	f := cfg.VAE.DownsampleFactor()
	lat := float64(H/f) * float64(W/f)
	for _, t := range cfg.ExpectedTensors() {
		if t.Part != "vae" || !strings.HasSuffix(t.Name, ".weight") || len(t.Shape) < 2 {
			continue
		}
		name := strings.TrimPrefix(t.Name, model.VAEPrefix)
		macs := float64(t.Shape[0] * t.Shape[1])
		if len(t.Shape) == 4 {
			macs *= float64(t.Shape[2] * t.Shape[3])
		}
		// Output pixels of this layer.
		px := lat
		var blk int
		switch {
		case strings.HasPrefix(name, "encoder.down_blocks."):
			fmt.Sscanf(strings.TrimPrefix(name, "encoder.down_blocks."), "%d", &blk)
			px = float64(H*W) / float64(int(1)<<(2*blk))
			if strings.Contains(name, "downsamplers") {
				px /= 4
			}
		case strings.HasPrefix(name, "encoder.conv_in"):
			px = float64(H * W)
		case strings.HasPrefix(name, "decoder.up_blocks."):
			fmt.Sscanf(strings.TrimPrefix(name, "decoder.up_blocks."), "%d", &blk)
			px = lat * float64(int(1)<<(2*blk))
			if strings.Contains(name, "upsamplers") {
				px *= 4
			}
		case strings.HasPrefix(name, "decoder.conv_out"):
			px = float64(H * W)
		}
		fl := 2 * macs * px
		if strings.Contains(name, "attentions.0.to_q") { // scores and AV: 2 · (2·N²·c)
			fl += 4 * px * px * float64(t.Shape[0])
		}
		if strings.HasPrefix(name, "encoder.") || strings.HasPrefix(name, "quant_conv") {
			enc += fl
		} else {
			dec += fl
		}
	}
	return enc, dec
}

func gflops(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func randomIDs(n, codebook int, seed uint64) []uint32 {
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(r.IntN(codebook))
	}
	return ids
}

func randomTensor(seed uint64, shape ...int) tensor.Tensor {
	t, _ := tensor.New(shape...)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range t.Data {
		t.Data[i] = float32(r.NormFloat64())
	}
	return t
}

func BenchmarkD12(b *testing.B) {
	dir := d12Dir(b)
	ctx := context.Background()
	threads := runtime.GOMAXPROCS(0)
	paths := []struct {
		name string
		o    Options
	}{
		{"portable", Options{Threads: threads}},
		{"fast", Options{Threads: threads, Fast: true}},
		{"bf16", Options{Threads: threads, Fast: true, Precision: BF16}},
	}
	b.Logf("GOMAXPROCS %d, fast path %q, bf16 path %q", threads, kernels.FastPath(), kernels.BF16Path())

	// op=load: peak and retained memory of Load relative to the f32 weights (every weight of
	// the file, encoder included), fp32 and bf16, with every part and DecodeOnly (path
	// fast-decode, bf16-decode). Run each alone in its process
	// (-bench 'D12/op=load/path=bf16$'): peak RSS is per process.
	for _, p := range paths[1:] {
		benchD12Load(b, dir, p.name, p.o)
	}
	for _, p := range paths[1:] {
		o := p.o
		o.Parts = DecodeOnly
		benchD12Load(b, dir, p.name+"-decode", o)
	}
	benchD12Rest(b, dir, ctx, paths)
}

// benchD12Load is op=load for one path.
func benchD12Load(b *testing.B, dir, name string, o Options) {
	b.Run("op=load/path="+name, func(b *testing.B) {
		var weights int64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			runtime.GC()
			base := procStatus("VmRSS")
			reset := resetPeakRSS()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap0 := int64(ms.HeapInuse)
			var peakHeap atomic.Int64
			done := make(chan struct{})
			go func() { // sample the live heap while loading
				t := time.NewTicker(2 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						var m runtime.MemStats
						runtime.ReadMemStats(&m)
						if h := int64(m.HeapInuse); h > peakHeap.Load() {
							peakHeap.Store(h)
						}
					}
				}
			}()
			b.StartTimer()
			e, err := Load(dir, o)
			b.StopTimer()
			close(done)
			if err != nil {
				b.Fatal(err)
			}
			peak := procStatus("VmHWM")
			runtime.GC()
			runtime.ReadMemStats(&ms)
			retained := int64(ms.HeapInuse) - heap0
			rss := procStatus("VmRSS")
			m, err := model.LoadFile(dir)
			if err != nil {
				b.Fatal(err)
			}
			weights = 0
			for _, t := range m.Config.ExpectedTensors() {
				n := int64(4)
				for _, d := range t.Shape {
					n *= int64(d)
				}
				weights += n
			}
			m.Weights.Close()
			w := float64(weights)
			b.ReportMetric(w/1e6, "weights-MB")
			b.ReportMetric(float64(retained)/w, "retained-heap/weights")
			b.ReportMetric(float64(peakHeap.Load()-heap0)/w, "peak-heap/weights")
			if reset && peak > 0 && base > 0 {
				b.ReportMetric(float64(peak-base)/w, "peak-RSS/weights")
				b.ReportMetric(float64(rss-base)/w, "RSS-after-GC/weights")
			}
			runtime.KeepAlive(e)
			b.StartTimer()
		}
	})
}

// benchD12Rest is every op but load.
func benchD12Rest(b *testing.B, dir string, ctx context.Context, paths []struct {
	name string
	o    Options
}) {
	for _, p := range paths {
		b.Run("op=decoder-step/path="+p.name, func(b *testing.B) {
			m, err := model.LoadFile(dir)
			if err != nil {
				b.Fatal(err)
			}
			dec, err := NewDecoder(m, p.o)
			m.Weights.Close()
			if err != nil {
				b.Fatal(err)
			}
			cfg := m.Config
			R := dec.Registers()
			cond, err := dec.Bind([][]uint32{randomIDs(R, cfg.CodebookSize(), 1)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			f := cfg.VAE.DownsampleFactor()
			C, h, w := cfg.VAE.LatentChannels, 256/f, 256/f
			x := randomTensor(3, C, h, w)
			flops := dec.Flops(2, h, w)
			// One untimed call first (at another t): buffers are allocated on first use.
			if err := cond.Velocity(ctx, 0.999, []flow.Item{{Image: 0, X: x}, {Image: 0, Uncond: true, X: x}}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := 1 - float32(i)/float32(b.N+1) // a new t each call, as in sampling
				batch := []flow.Item{{Image: 0, X: x}, {Image: 0, Uncond: true, X: x}}
				if err := cond.Velocity(ctx, t, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			gflops(b, flops)
		})
	}

	e, err := Load(dir, paths[1].o)
	if err != nil {
		b.Fatal(err)
	}
	H, W := e.ImageSize()
	vaeEnc, vaeDec := vaeFlops(e.cfg, H, W)
	lat := e.geo.Latent(e.ImageSize())
	C, h, w := lat[0], lat[1], lat[2]
	b.Logf("FLOPs at %dx%d: VAE encode %.1f G, VAE decode %.1f G, encoder %.1f G, decoder step (2 passes) %.1f G",
		H, W, vaeEnc/1e9, vaeDec/1e9, e.enc.Flops(1, h, w)/1e9, e.dec.Flops(2, h, w)/1e9)

	b.Run("op=encode/path=fast", func(b *testing.B) {
		img := randomTensor(4, 1, 3, H, W)
		for i := range img.Data {
			img.Data[i] = max(-1, min(1, img.Data[i]*0.5))
		}
		if _, err := e.EncodeTensor(ctx, img); err != nil { // untimed first call
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.EncodeTensor(ctx, img); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		gflops(b, vaeEnc+e.enc.Flops(1, h, w))
	})

	b.Run("op=vae-decode/path=fast", func(b *testing.B) {
		lat := randomTensor(5, 1, C, h, w)
		if _, err := e.vae.Decode(ctx, lat); err != nil { // untimed first call
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.vae.Decode(ctx, lat); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		gflops(b, vaeDec)
	})

	b.Run("op=decode-2steps/path=fast", func(b *testing.B) {
		p := &payload.Payload{Model: e.Identity(), Image: payload.Image{Height: H, Width: W},
			IDs: randomIDs(e.MaxTokens(), e.cfg.CodebookSize(), 6)}
		o := DecodeOptions{Steps: 2, Guidance: 7.5, APG: true}
		if _, err := e.Decode(ctx, p, DecodeOptions{Steps: 1, Guidance: 7.5, APG: true}); err != nil { // untimed first call
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			o.Seed = uint64(i)
			if _, err := e.Decode(ctx, p, o); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		gflops(b, 2*e.dec.Flops(2, h, w)+vaeDec)
	})
}
