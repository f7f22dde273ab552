package engine_test

import (
	"context"
	"fmt"
	"image"
	_ "image/png"
	"os"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/metrics"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Encode an image with the SDK's embedded default model, send the payload as bytes, and decode
// coarse (4 tokens) and fine (all 32) reconstructions. The zero Options run the portable
// kernels, which give these bits on every platform; engine.DefaultOptions() runs the fast ones.
func Example() {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := os.Open("../../testdata/heldout/002_triangle.png")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	p, err := e.Encode(ctx, img, engine.EncodeOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	wire, _ := p.MarshalBinary() // what a server sends to a browser
	fmt.Printf("%d tokens, first %v, %d bytes\n", p.Count(), p.IDs[:4], len(wire))

	var got payload.Payload
	if err := got.UnmarshalBinary(wire); err != nil {
		fmt.Println(err)
		return
	}
	for _, k := range []int{4, 32} {
		// Zero fields take the payload's hints: the default model's 10 steps of CFG 1.5.
		out, err := e.DecodeImage(ctx, &got, engine.DecodeOptions{K: k})
		if err != nil {
			fmt.Println(err)
			return
		}
		psnr, _ := metrics.PSNR(img, out)
		fmt.Printf("k=%d: %v image, PSNR %.0f dB\n", k, out.Bounds().Size(), psnr)
	}
	// Output:
	// 32 tokens, first [34861 41390 28398 40998], 296 bytes
	// k=4: (32,32) image, PSNR 17 dB
	// k=32: (32,32) image, PSNR 25 dB
}
