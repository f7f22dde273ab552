package server

import (
	"context"
	"fmt"
	"image"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/nn"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
)

// BenchmarkBatching measures what batching requests together would win: B images encoded
// (decoded) one call each, against one EncodeBatch (DecodeBatch) call, per image, on the
// Go engine and, with the library, ONNX Runtime (docs/server.md, "Batching").
func BenchmarkBatching(b *testing.B) {
	ctx := context.Background()
	execs := map[string]engine.Executor{"go": testEngine(b)}
	lib := os.Getenv("FLEXTOK_ORT_LIB")
	if lib == "" {
		lib, _ = filepath.Abs("../.deps/ort/libonnxruntime.so")
	}
	d := models.Default()
	if nb, err := native.LoadBytes(d.Weights, d.Config, d.VAEConfig, native.Options{LibraryPath: lib, Provider: native.ProviderCPU}); err == nil {
		defer nb.Close()
		execs["ort"] = nb
	}
	img, _, err := ftimage.DecodeBytes(samplePNG(b), ftimage.DecodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	const B = 8
	imgs := make([]image.Image, B)
	for i := range imgs {
		imgs[i] = img
	}
	for name, e := range execs {
		ps, err := e.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		o := e.DefaultDecodeOptions(ps[0])
		b.Run(name+"/encode/single", func(b *testing.B) {
			for b.Loop() {
				for _, im := range imgs {
					if _, err := e.Encode(ctx, im, engine.EncodeOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*B)/1000, "ms/image")
		})
		b.Run(name+"/encode/batch8", func(b *testing.B) {
			for b.Loop() {
				if _, err := e.EncodeBatch(ctx, imgs, engine.EncodeOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*B)/1000, "ms/image")
		})
		b.Run(name+"/decode/single", func(b *testing.B) {
			for b.Loop() {
				for _, p := range ps {
					if _, err := e.Decode(ctx, p, o); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*B)/1000, "ms/image")
		})
		b.Run(name+"/decode/batch8", func(b *testing.B) {
			for b.Loop() {
				if _, err := e.DecodeBatch(ctx, ps, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*B)/1000, "ms/image")
		})
	}
}

// firstFlush records when the first token round was flushed (time to first token).
type firstFlush struct {
	*httptest.ResponseRecorder
	t0    time.Time
	first time.Duration
}

func (f *firstFlush) Flush() {
	if f.first == 0 {
		f.first = time.Since(f.t0)
	}
	f.ResponseRecorder.Flush()
}

// BenchmarkGenerateBatching measures continuous batching (docs/server.md, "Continuous
// batching"): each iteration sends 8 concurrent POST /v1/generate requests (k 32, CFG 2; n 1
// and n 4) to a server with --ar-batching off (one request per work slot: --max-concurrent 1,
// the default on 2 CPUs, and 2) and on, side by side, on the default tokenizer with a random AR
// model from conformance/arfixture (width 64, 2 layers) on the Go executor's fast path, as
// `flextok serve` runs it. It reports generated tokens/s, the process's CPU time per token
// (less disturbed than wall time by other load on a shared machine), the p50/p95 latency of a
// request and the p95 time to its first token round.
func BenchmarkGenerateBatching(b *testing.B) {
	e := testEngine(b)
	m, err := arfixture.RandomForDefault(arfixture.Shape{Dim: 64, Layers: 2, Heads: 4, KVHeads: 2, MultipleOf: 32}, []string{"a", "b", "c"}, 5)
	if err != nil {
		b.Fatal(err)
	}
	o := ar.Options{Exec: nn.Options{Fast: true, Threads: runtime.GOMAXPROCS(0)}}
	const clients, k = 8, 32
	for _, n := range []int{1, 4} {
		for _, mode := range []struct {
			name, batching string
			work           int
		}{{"off-c1", "off", 1}, {"off-c2", "off", 2}, {"on", "on", 1}} {
			s, err := New(Config{Models: []Model{{Name: "m", Exec: e, AR: m, AROptions: o}}, ARBatching: mode.batching, MaxConcurrent: mode.work, MaxQueue: 16})
			if err != nil {
				b.Fatal(err)
			}
			h := s.Handler()
			b.Run(fmt.Sprintf("n%d/%s", n, mode.name), func(b *testing.B) {
				var lat, first []time.Duration
				var mu sync.Mutex
				var ru0, ru1 syscall.Rusage
				syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
				for b.Loop() {
					var wg sync.WaitGroup
					for c := range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							body := fmt.Sprintf(`{"class": %d, "n": %d, "k": %d, "cfg": 2, "seed": %d}`, c%3, n, k, c)
							t0 := time.Now()
							rec := &firstFlush{ResponseRecorder: httptest.NewRecorder(), t0: t0}
							h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/generate", strings.NewReader(body)))
							d := time.Since(t0)
							if rec.Code != 200 || rec.Body.Bytes()[rec.Body.Len()-1] == '}' {
								b.Errorf("%d %q", rec.Code, rec.Body.Bytes()[max(0, rec.Body.Len()-100):])
							}
							mu.Lock()
							lat, first = append(lat, d), append(first, rec.first)
							mu.Unlock()
						}()
					}
					wg.Wait()
				}
				syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
				cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
				slices.Sort(lat)
				slices.Sort(first)
				tokens := float64(b.N * clients * n * k)
				b.ReportMetric(tokens/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(float64(cpu.Microseconds())/tokens, "cpu-µs/token")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[(len(lat)*95+99)/100-1].Microseconds())/1000, "p95-ms")
				b.ReportMetric(float64(first[(len(first)*95+99)/100-1].Microseconds())/1000, "first-p95-ms")
			})
		}
	}
}
