package server

import (
	"context"
	"image"
	"os"
	"path/filepath"
	"testing"

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
