package native_test

import (
	"context"
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
