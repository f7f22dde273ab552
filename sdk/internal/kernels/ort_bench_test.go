//go:build ortbench

package kernels_test

// The decoder's matrix products, pure-Go fast path against ONNX Runtime (CPU), side by side in
// one run (issue 6). Built only with -tags ortbench, so GOOS=js test runs and CI never compile
// it (it needs cgo and the ONNX Runtime library):
//
//	FLEXTOK_ORT_LIB=$PWD/.deps/ort/libonnxruntime.so \
//	  go test -tags ortbench ./sdk/internal/kernels -run '^$' -bench DecoderMatmul -benchtime 20x
//
// Shapes: one guided decoder step at 256 px, 256 patch tokens + 256 registers per image, the
// conditional and unconditional passes batched: M = 1024 rows through qkv (W→3W), proj (W→W),
// fc1 and fc3 (W→Hd, the same shape, run once here) and fc2 (Hd→W), with Hd = int(2·int(4W)/3)
// (model.TrunkConfig.MLPHidden of the gated MLP). The decoder's linears have no bias (the
// FlexTok defaults qkv_bias, proj_bias, mlp_bias = False), so neither side adds one.
//
// Go: kernels.PackWeights once, then kernels.LinearPacked (the engine's DefaultOptions path)
// into a reused output. ORT: a one-MatMul graph (the weight an initializer, so ORT prepacks it)
// through native.Session.Run, which also allocates and copies the output into a Go slice.
// Both sides get the same thread count (Opts.Threads, IntraOpThreads): 1 and 2.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/native/onnx"
	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
)

// ortOptions loads ONNX Runtime ($FLEXTOK_ORT_LIB, else make setup's .deps/ort) or skips.
func ortOptions(b *testing.B, threads int) native.Options {
	b.Helper()
	lib := os.Getenv("FLEXTOK_ORT_LIB")
	if lib == "" {
		lib, _ = filepath.Abs(filepath.Join("..", "..", "..", ".deps", "ort", "libonnxruntime.so"))
	}
	if err := native.Init(native.Options{LibraryPath: lib}); err != nil {
		b.Skipf("no ONNX Runtime library (make setup installs it, or set FLEXTOK_ORT_LIB): %v", err)
	}
	return native.Options{LibraryPath: lib, Provider: native.ProviderCPU, IntraOpThreads: threads, InterOpThreads: 1}
}

func benchRand(seed uint64, n int, scale float32) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64()) * scale
	}
	return s
}

// matmulSession builds y[M,N] = x[M,K]·wᵀ for w in the [out, in] layout as a one-MatMul graph.
func matmulSession(b *testing.B, w []float32, m, n, k int, o native.Options) *native.Session {
	b.Helper()
	g := onnx.NewGraph("matmul")
	x := g.Input("x", onnx.Float, m, k)
	y := g.Linear(x, "linear", w, n, k, nil)
	g.Output(y, "y", onnx.Float, m, n)
	data, err := onnx.Marshal(g.Model("decoder matmul benchmark"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := native.NewSessionFromBytes(data, []string{"x"}, []string{"y"}, o)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkDecoderMatmul(b *testing.B) {
	const rows = 2 * (256 + 256) // cond + uncond, 256 patches + 256 registers each
	models := []struct {
		name string
		w    int
	}{{"d12", 768}, {"d18", 1152}}
	b.Logf("fast path %q, M = %d rows", kernels.FastPath(), rows)
	ctx := context.Background()
	for _, threads := range []int{2, 1} {
		o := ortOptions(b, threads)
		ko := kernels.Opts{Threads: threads, Fast: true}
		for _, md := range models {
			W := md.w
			Hd := int(2 * float64(int(float64(W)*4)) / 3)
			shapes := []struct {
				name string
				n, k int
			}{{"qkv", 3 * W, W}, {"proj", W, W}, {"fc1", Hd, W}, {"fc2", W, Hd}}
			for si, sh := range shapes {
				m, n, k := rows, sh.n, sh.k
				flops := 2 * float64(m) * float64(n) * float64(k)
				w := benchRand(uint64(10+si), n*k, float32(1/math.Sqrt(float64(k))))
				x := benchRand(uint64(20+si), m*k, 1)
				pw := kernels.PackWeights(ko, w, n, k)
				y := make([]float32, m*n)
				sess := matmulSession(b, w, m, n, k, o)
				in := []native.Tensor{{Shape: []int64{int64(m), int64(k)}, F32: x}}

				// Same product on both sides: check once, untimed (also the warm-up).
				kernels.LinearPacked(ko, y, x, pw, nil, m)
				out, err := sess.Run(ctx, in)
				if err != nil {
					b.Fatal(err)
				}
				var maxErr, maxAbs float64
				for i, v := range out[0].F32 {
					maxErr = max(maxErr, math.Abs(float64(v-y[i])))
					maxAbs = max(maxAbs, math.Abs(float64(v)))
				}
				if maxErr > 1e-4*maxAbs {
					b.Fatalf("%s %s: Go and ORT differ by %g (max |y| %g)", md.name, sh.name, maxErr, maxAbs)
				}

				prefix := fmt.Sprintf("threads=%d/%s/%s", threads, md.name, sh.name)
				b.Run(prefix+"/go", func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						kernels.LinearPacked(ko, y, x, pw, nil, m)
					}
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
				b.Run(prefix+"/ort", func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						if _, err := sess.Run(ctx, in); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
				sess.Close()
			}
		}
	}
}
