//go:build js && wasm

// Command webbench is the Go wasm side of the web-model speed run (conformance/browser/web.mjs
// --bench, `make bench-web`): one guided decoder step (a conditional and an unconditional item,
// as the sampler batches them) on the pure-Go engine's portable path, compiled to wasm, timed in
// the same browser page as onnxruntime-web's.
//
//	GOOS=js GOARCH=wasm go build -o webbench.wasm ./tools/webbench
//
// It sets globalThis.flextokBench = { step(weights, config, vaeConfig: Uint8Array) →
// Promise<{ms, gflop, error}> } (model.safetensors, config.json and vae/config.json; an empty
// config: the safetensors header's) and waits.
package main

import (
	"context"
	"syscall/js"
	"time"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/model"
)

func main() {
	js.Global().Set("flextokBench", js.ValueOf(map[string]any{
		"step": js.FuncOf(func(_ js.Value, a []js.Value) any {
			bytes := func(v js.Value) []byte {
				b := make([]byte, v.Get("length").Int())
				js.CopyBytesToGo(b, v)
				if len(b) == 0 {
					return nil // absent: the safetensors header's
				}
				return b
			}
			weights, config, vae := bytes(a[0]), bytes(a[1]), bytes(a[2])
			// A Promise settled from a goroutine: the step must not run in this callback,
			// which would hold the event loop's callback stack.
			var executor js.Func
			executor = js.FuncOf(func(_ js.Value, p []js.Value) any {
				resolve := p[0]
				executor.Release()
				go func() {
					ms, gflop, err := step(weights, config, vae)
					if err != nil {
						resolve.Invoke(map[string]any{"error": err.Error()})
						return
					}
					resolve.Invoke(map[string]any{"ms": ms, "gflop": gflop})
				}()
				return nil
			})
			return js.Global().Get("Promise").New(executor)
		}),
	}))
	select {}
}

// step loads the decoder of a checkpoint and times one velocity evaluation of a conditional
// and an unconditional item at the model's size.
func step(weights, config, vae []byte) (float64, float64, error) {
	m, err := model.LoadBytes(weights, config, vae)
	if err != nil {
		return 0, 0, err
	}
	d, err := engine.NewDecoder(m, engine.Options{Threads: 1})
	if err != nil {
		return 0, 0, err
	}
	g := m.Config.Geometry()
	l := g.Latent(g.Default[0], g.Default[1])
	ids := make([]uint32, d.Registers())
	for i := range ids {
		ids[i] = uint32(i * 977 % 64000)
	}
	c, err := d.Bind([][]uint32{ids}, nil)
	if err != nil {
		return 0, 0, err
	}
	noise, err := flow.Noise(1, 0, l, l)
	if err != nil {
		return 0, 0, err
	}
	batch := []flow.Item{{Image: 0, X: noise[0]}, {Image: 0, X: noise[1], Uncond: true}}
	t0 := time.Now()
	if err := c.Velocity(context.Background(), 0.5, batch); err != nil {
		return 0, 0, err
	}
	return float64(time.Since(t0).Microseconds()) / 1000, d.Flops(2, l[1], l[2]) / 1e9, nil
}
