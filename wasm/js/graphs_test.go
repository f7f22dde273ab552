//go:build js && wasm

package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"syscall/js"
	"testing"

	"github.com/flextok-sdk/flextok/internal/webpkgtest"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/sdk/tensor"
	"github.com/flextok-sdk/flextok/wasm/internal/defaultmodel"
	"github.com/vmihailenco/msgpack/v5"
)

// f32 copies a Float32Array into Go.
func f32(v js.Value) []float32 {
	out := make([]float32, v.Get("length").Int())
	js.CopyBytesToGo(bytesOf(out), js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), v.Get("byteLength")))
	return out
}

// i64 copies a BigInt64Array into Go.
func i64(v js.Value) []int64 {
	out := make([]int64, v.Get("length").Int())
	js.CopyBytesToGo(bytesOf(out), js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), v.Get("byteLength")))
	return out
}

func toJS(v []float32) js.Value {
	a := js.Global().Get("Float32Array").New(len(v))
	js.CopyBytesToJS(js.Global().Get("Uint8Array").New(a.Get("buffer")), bytesOf(v))
	return a
}

// TestGraphHost: a model opened with "open_graphs" through a JavaScript graph host decodes
// as the embedded engine does, bit for bit, when the host's runner runs the engine's
// networks: the feed crosses the boundary in one buffer per sampler step, read by the runner
// as typed-array views at the offsets it is given, and host errors keep their codes.
func TestGraphHost(t *testing.T) {
	c := defaultmodel.Checkpoint()
	if c == nil {
		t.Skip("built without the embedded default model")
	}
	e, err := engine.LoadBytes(c.Weights, c.Config, c.VAEConfig, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gm, g, err := e.Graphs()
	if err != nil {
		t.Fatal(err)
	}
	z := gm.Sizes
	calls := 0
	// The Go half of the test runner: the engine's networks on typed arrays.
	goVel := js.FuncOf(func(_ js.Value, a []js.Value) any {
		calls++
		f := &engine.VelocityFeed{N: a[0].Int(), X: f32(a[1]), T: f32(a[2]), IDs: i64(a[3]), K: i64(a[4])}
		v, err := g.Velocity(context.Background(), f)
		if err != nil {
			return js.Global().Get("Error").New(err.Error())
		}
		return toJS(v)
	})
	defer goVel.Release()
	goVAE := js.FuncOf(func(_ js.Value, a []js.Value) any {
		n := a[0].Int()
		l := engineTensor(f32(a[1]), n, z.C, z.H, z.W)
		img, err := g.DecodeLatents(context.Background(), l)
		if err != nil {
			return js.Global().Get("Error").New(err.Error())
		}
		return toJS(img.Data)
	})
	defer goVAE.Release()
	// The JavaScript half: views on the buffer at the given offsets, no copies, as ortweb.ts.
	host := jsEval(`(s, goVel, goVAE) => { const host = {
		opened: [],
		async open(files, manifest, opts) {
			if (files === "oom") throw Object.assign(new Error("no memory for the session"), { code: "out_of_memory" });
			if (files === "plain") throw new Error("something else");
			this.opened.push([files, JSON.parse(new TextDecoder().decode(manifest)).model.name, opts.provider, opts.precision]);
			const per = s.C * s.H * s.W;
			return {
				provider: "wasm", precision: "fp32", fallback: "no WebGPU adapter", released: 0,
				async velocity(buf, l) {
					const x = new Float32Array(buf.buffer, buf.byteOffset + l.x, l.n * per);
					const t = new Float32Array(buf.buffer, buf.byteOffset + l.t, l.n);
					const ids = new BigInt64Array(buf.buffer, buf.byteOffset + l.ids, l.n * s.R);
					const k = new BigInt64Array(buf.buffer, buf.byteOffset + l.k, l.n);
					const v = goVel(l.n, x, t, ids, k);
					if (v instanceof Error) throw v;
					return v;
				},
				async vae(buf, l) {
					return goVAE(l.n, new Float32Array(buf.buffer, buf.byteOffset + l.latents, l.n * per));
				},
				release() { host.released++; },
			};
		},
		released: 0,
	}; return host; }`).Invoke(js.ValueOf(map[string]any{"C": z.C, "H": z.H, "W": z.W, "R": z.R}), goVel, goVAE)
	ft := js.Global().Get("Object").New()
	ft.Set("graphHost", host)
	js.Global().Set("flextok", ft)
	defer js.Global().Set("flextok", js.Undefined())

	svc := service.New(service.Options{Default: c, Graphs: openGraphs})
	h := newHandle(svc.Handle)
	defer h.Release()
	req := func(m map[string]any) js.Value {
		b, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return u8(b)
	}
	man := webpkgtest.Manifest(t, e, false)
	r := call(t, h, req(map[string]any{"op": "open_graphs", "manifest": man, "files": "pkg", "provider": "wasm"}))
	if r["ok"] != true || r["provider"] != "wasm" || r["fallback"] != "no WebGPU adapter" {
		t.Fatalf("open_graphs: %v", r)
	}
	if got := js.Global().Get("JSON").Call("stringify", host.Get("opened")).String(); got != `[["pkg","`+gm.Identity.Name+`","wasm","auto"]]` {
		t.Errorf("the host opened %s", got)
	}
	web := r["handle"]
	def := call(t, h, req(map[string]any{"op": "open"}))["handle"]
	// A payload of the default model.
	enc := call(t, h, req(map[string]any{"op": "encode", "handle": def, "image": pngOf(t, 32, 32)}))
	if enc["ok"] != true {
		t.Fatalf("encode: %v", enc)
	}
	for _, steps := range []int{1, 3} {
		got := call(t, h, req(map[string]any{"op": "decode", "handle": web, "payload": enc["payload"], "steps": steps, "output": []string{"tensor"}}))
		want := call(t, h, req(map[string]any{"op": "decode", "handle": def, "payload": enc["payload"], "steps": steps, "output": []string{"tensor"}}))
		if got["ok"] != true || want["ok"] != true || !bytes.Equal(got["tensor"].([]byte), want["tensor"].([]byte)) {
			t.Fatalf("steps %d: the hybrid decode differs from the engine's (%v / %v)", steps, got["error"], want["error"])
		}
	}
	if calls != 1+3 {
		t.Errorf("%d velocity calls out for 1 + 3 steps, want one per step", calls)
	}
	if r := call(t, h, req(map[string]any{"op": "close", "handle": web})); r["ok"] != true || host.Get("released").Int() != 1 {
		t.Errorf("close: %v, released %d", r, host.Get("released").Int())
	}
	for files, code := range map[string]string{"oom": service.CodeOutOfMemory, "plain": service.CodeBadModel} {
		r := call(t, h, req(map[string]any{"op": "open_graphs", "manifest": man, "files": files}))
		if e, _ := r["error"].(map[string]any); r["ok"] != false || e["code"] != code {
			t.Errorf("host failing with %q: %v, want %s", files, r, code)
		}
	}
	js.Global().Get("flextok").Delete("graphHost")
	r = call(t, h, req(map[string]any{"op": "open_graphs", "manifest": man, "files": "pkg"}))
	if e, _ := r["error"].(map[string]any); r["ok"] != false || e["code"] != service.CodeUnsupported {
		t.Errorf("no graph host: %v, want unsupported", r)
	}
}

func engineTensor(d []float32, shape ...int) tensor.Tensor {
	return tensor.Tensor{Shape: shape, Data: d}
}

// pngOf is a PNG of a w×h gradient.
func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(8 * x), uint8(8 * y), uint8(4 * (x + y)), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
