package native

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// BenchmarkVersusEngine runs the pure-Go engine's fast path (engine.DefaultOptions) and this
// backend on ONNX Runtime's CPU provider side by side in one run, on checkpoints with random
// weights and the real shapes made by tools/mkcheckpoint (issue 6):
//
//	go run ./tools/mkcheckpoint -size d12 -o /tmp/d12
//	go run ./tools/mkcheckpoint -size d18 -o /tmp/d18
//	FLEXTOK_ORT_LIB=$PWD/.deps/ort/libonnxruntime.so FLEXTOK_D12=/tmp/d12 FLEXTOK_D18=/tmp/d18 \
//	  go test ./native -run '^$' -bench VersusEngine -benchtime 1x -timeout 60m
//
// (make bench-native does all of this.) A size whose variable is unset is skipped, so CI never
// runs it. Each checkpoint is read once; the engine parts and the backend are built from that
// model. Sub-benchmarks, each after one untimed warm-up call:
//
//   - SIZE/step/{go,ort}: one guided decoder step at 256 px, the velocity network on the
//     conditional and unconditional items of one image (2 × (256 patches + 256 registers)
//     tokens), a new t each call; GFLOP/s from engine.Decoder.Flops for both.
//   - d12/encode/batch=B/{go,ort}: tokenize (Engine.EncodeTensor, Backend.EncodeTensor) B
//     preprocessed 256-px images; images/s.
//
// Both sides use GOMAXPROCS threads (engine Options.Threads, ORT IntraOpThreads).
func BenchmarkVersusEngine(b *testing.B) {
	sizes := []struct{ name, env string }{{"d12", "FLEXTOK_D12"}, {"d18", "FLEXTOK_D18"}}
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			dir := os.Getenv(sz.env)
			if dir == "" {
				b.Skipf("%s (a %s checkpoint directory, see tools/mkcheckpoint) is not set", sz.env, sz.name)
			}
			benchVersusEngine(b, dir, sz.name == "d12")
		})
		runtime.GC() // drop one size's models before loading the next
	}
}

func benchVersusEngine(b *testing.B, dir string, encode bool) {
	o := needORT(b)
	threads := runtime.GOMAXPROCS(0)
	o.IntraOpThreads = threads
	eo := engine.DefaultOptions()
	b.Logf("threads %d (engine %+v, ORT IntraOpThreads %d)", threads, eo, o.IntraOpThreads)
	ctx := context.Background()

	m, err := model.LoadFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	cfg := m.Config
	dec, err := engine.NewDecoder(m, eo)
	if err != nil {
		b.Fatal(err)
	}
	var e *engine.Engine
	if encode {
		if e, err = engine.New(m, eo); err != nil {
			b.Fatal(err)
		}
	}
	be, err := New(m, o)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	m.Close()
	runtime.GC()

	// One decoder step: cond + uncond of one image, the same inputs on both sides.
	R := dec.Registers()
	ids := [][]uint32{benchIDs(R, cfg.CodebookSize(), 1)}
	// The native size (256 px at d12 and d18): the encoder's patch grid, as engine.New.
	ps, grid := cfg.Encoder.PatchSize, cfg.Encoder.PosembMaxSizes
	C, h, w := cfg.VAE.LatentChannels, grid[0]*ps[0], grid[1]*ps[1]
	x := benchTensor(3, C, h, w)
	flops := dec.Flops(2, h, w)
	goCond, err := dec.Bind(ids, nil)
	if err != nil {
		b.Fatal(err)
	}
	ortCond, err := be.Bind(ids, nil)
	if err != nil {
		b.Fatal(err)
	}
	items := func() []flow.Item {
		v := func() tensor.Tensor { return tensor.Tensor{Shape: []int{C, h, w}, Data: make([]float32, C*h*w)} }
		return []flow.Item{{Image: 0, X: x, V: v()}, {Image: 0, Uncond: true, X: x, V: v()}}
	}
	dens := []struct {
		name string
		d    flow.Denoiser
	}{{"go", goCond}, {"ort", ortCond}}
	var first [2][]flow.Item
	for i, d := range dens { // warm-up, untimed; compare the two
		first[i] = items()
		if err := d.d.Velocity(ctx, 0.999, first[i]); err != nil {
			b.Fatal(err)
		}
	}
	for j := range first[0] {
		b.Logf("step: ORT against Go, item %d: relative RMS difference %.2g", j, tensor.RelErr(first[1][j].V.Data, first[0][j].V.Data))
	}
	for _, d := range dens {
		b.Run("step/"+d.name, func(b *testing.B) {
			batch := items()
			for i := 0; i < b.N; i++ {
				t := 1 - float32(i+1)/float32(b.N+2) // a new t each call, as in sampling
				if err := d.d.Velocity(ctx, t, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/step")
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
	if !encode {
		return
	}

	// Tokenize throughput.
	H, W := e.ImageSize()
	encs := []struct {
		name string
		fn   func(context.Context, tensor.Tensor) ([][]uint32, error)
	}{{"go", e.EncodeTensor}, {"ort", be.EncodeTensor}}
	for _, batch := range []int{1, 4} {
		img := benchTensor(4, batch, 3, H, W)
		for i := range img.Data {
			img.Data[i] = max(-1, min(1, img.Data[i]*0.5))
		}
		var tok [2][][]uint32
		for i, enc := range encs { // warm-up, untimed; compare the two
			if tok[i], err = enc.fn(ctx, img); err != nil {
				b.Fatal(err)
			}
		}
		same, all := 0, 0
		for i := range tok[0] {
			for j := range tok[0][i] {
				all++
				if tok[0][i][j] == tok[1][i][j] {
					same++
				}
			}
		}
		b.Logf("encode batch %d: ORT and Go give the same id for %d of %d tokens", batch, same, all)
		for _, enc := range encs {
			b.Run("encode/batch="+strconv.Itoa(batch)+"/"+enc.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := enc.fn(ctx, img); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "images/s")
			})
		}
	}
}

func benchIDs(n, codebook int, seed uint64) []uint32 {
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(r.IntN(codebook))
	}
	return ids
}

func benchTensor(seed uint64, shape ...int) tensor.Tensor {
	t, _ := tensor.New(shape...)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range t.Data {
		t.Data[i] = float32(r.NormFloat64())
	}
	return t
}
