package native_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/engine"
)

// Encode a batch of images and decode one of them from its first 8 tokens with ONNX Runtime
// (CUDA when the library and a GPU are there, the CPU otherwise). The library comes from
// $FLEXTOK_ORT_LIB (make setup installs one at .deps/ort/libonnxruntime.so).
func ExampleLoadBytes() {
	d := models.Default() // or native.Load("/path/to/flextok_d18_d18_in1k", ...)
	b, err := native.LoadBytes(d.Weights, d.Config, d.VAEConfig, native.Options{Provider: native.ProviderAuto})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	red := image.NewRGBA(image.Rect(0, 0, 48, 32))
	for i := range red.Pix {
		red.Pix[i] = []uint8{255, 0, 0, 255}[i%4]
	}
	ctx := context.Background()
	ps, err := b.EncodeBatch(ctx, []image.Image{img, red}, engine.EncodeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	o := engine.DefaultDecodeOptions(ps[0])
	o.K = 8
	out, err := b.DecodeImage(ctx, ps[0], o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(ps[0].IDs), "tokens;", out.Bounds().Dx(), "x", out.Bounds().Dy(), "image on", b.Provider())
}

// Choose the executor at run time: code written against engine.Executor runs on the Go
// engine and on ONNX Runtime alike, and their payloads are interchangeable. Here ONNX Runtime
// is asked for and the Go engine is the fallback where the library (or cgo) is missing.
func Example_chooseExecutor() {
	x, err := openExecutor("ort")
	if err != nil {
		log.Fatal(err)
	}
	defer x.Close()

	img := image.NewRGBA(image.Rect(0, 0, 48, 32))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	ctx := context.Background()
	p, err := x.Encode(ctx, img, engine.EncodeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	out, err := x.DecodeImage(ctx, p, engine.DecodeOptions{K: 8}) // zero fields: the model's hints
	if err != nil {
		log.Fatal(err)
	}
	h, w := x.ImageSize()
	fmt.Printf("%s: %d of %d tokens, %dx%d model, decoded %v\n", p.Model.Name, len(p.IDs), x.MaxTokens(), h, w, out.Bounds().Size())
	// Output:
	// flextok-sdk-shapes32: 32 of 32 tokens, 32x32 model, decoded (32,32)
}

// openExecutor opens the embedded default model in the executor named by backend: "ort"
// (ONNX Runtime, falling back to the Go engine when ONNX Runtime is unavailable) or "go".
func openExecutor(backend string) (engine.Executor, error) {
	d := models.Default()
	if backend == "ort" {
		b, err := native.LoadBytes(d.Weights, d.Config, d.VAEConfig, native.Options{Provider: native.ProviderAuto})
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, native.ErrNoCgo) && !errors.Is(err, native.ErrLibrary) {
			return nil, err
		}
		// No ONNX Runtime here: the Go engine makes payloads of the same model.
	}
	return models.LoadDefault(engine.DefaultOptions())
}
