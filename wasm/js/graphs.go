//go:build js && wasm

package main

import (
	"context"
	"fmt"
	"syscall/js"
	"unsafe"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/sdk/tensor"
	"github.com/flextok-sdk/flextok/wasm/internal/jsasync"
)

// The graph host: "open_graphs" asks JavaScript (the bindings' ortweb.ts, which sets
// globalThis.flextok.graphHost in the thread that runs this module) to open a web model
// package's graphs in onnxruntime-web, and every sampler step is then ONE awaited call of the
// runner's velocity with the whole batch (conditional and unconditional items) in one buffer.
//
//	graphHost.open(files: string, manifest: Uint8Array, {provider, precision}) → Promise<runner>
//	runner = {provider, precision, fallback: string,
//	          velocity(buf: Uint8Array, {n, x, t, ids, k}) → Promise<Float32Array>,
//	          vae(buf: Uint8Array, {n, latents}) → Promise<Float32Array>,
//	          release()}
//
// buf is a Uint8Array this side owns and reuses between calls (grown when a batch needs
// more); the layout object gives the byte offset of each input in it (x float32 [n, C, H, W],
// t float32 [n], ids int64 [n, R], k int64 [n]; latents float32 [n, C, H, W]), each aligned to
// 8 bytes, so the runner makes typed-array views on buf.buffer without copying. The Go values
// are copied into buf once (js.CopyBytesToJS) and the output once back (js.CopyBytesToGo): the
// minimum syscall/js allows. A rejection whose reason has a string "code" of
// service.CodeOutOfMemory, CodeGraphMismatch, CodeNoWebGPU, CodeBadPackage or CodeBadModel
// keeps that code.

// hostCodes are the codes a graph host's rejection may carry through.
var hostCodes = map[string]bool{
	service.CodeOutOfMemory: true, service.CodeGraphMismatch: true, service.CodeNoWebGPU: true,
	service.CodeBadPackage: true, service.CodeBadModel: true, service.CodeUnsupported: true,
}

// hostError turns an error of an awaited graph host call into a service error with the
// host's code, when it gave one of hostCodes.
func hostError(what string, err error) error {
	re, ok := err.(*jsasync.RejectError)
	if !ok {
		return err
	}
	code := service.CodeBadModel
	if re.Reason.Type() == js.TypeObject {
		if c := re.Reason.Get("code"); c.Type() == js.TypeString && hostCodes[c.String()] {
			code = c.String()
		}
	}
	msg := fmt.Sprintf("flextok/wasm/js: %s: %v", what, err)
	return &service.Error{Code: code, Message: msg, Detail: msg}
}

// openGraphs is the module's service.GraphHost.
func openGraphs(ctx context.Context, r service.GraphRequest) (*service.OpenedGraphs, error) {
	host := js.Global().Get("flextok").Get("graphHost")
	if host.Type() != js.TypeObject {
		return nil, &service.Error{Code: service.CodeUnsupported,
			Message: "flextok/wasm/js: no graph host: open web models through @flextok/sdk's openWebModel (it installs onnxruntime-web in the module's worker)",
			Detail:  "no graph host (globalThis.flextok.graphHost is not set)"}
	}
	man := js.Global().Get("Uint8Array").New(len(r.ManifestJSON))
	js.CopyBytesToJS(man, r.ManifestJSON)
	opts := js.ValueOf(map[string]any{"provider": r.Provider, "precision": r.Precision})
	runner, err := jsasync.Await(ctx, host.Call("open", r.Files, man, opts))
	if err != nil {
		return nil, hostError("opening the graphs", err)
	}
	if runner.Type() != js.TypeObject || runner.Get("velocity").Type() != js.TypeFunction || runner.Get("vae").Type() != js.TypeFunction {
		return nil, fmt.Errorf("flextok/wasm/js: the graph host's runner has no velocity and vae functions")
	}
	z := r.Manifest.Sizes
	g := &jsGraphs{runner: runner, c: z.C, h: z.H, w: z.W, r: z.R, height: z.Height, width: z.Width}
	str := func(k string) string {
		if v := runner.Get(k); v.Type() == js.TypeString {
			return v.String()
		}
		return ""
	}
	return &service.OpenedGraphs{Graphs: g, Close: g.release, Provider: str("provider"), Precision: str("precision"), Fallback: str("fallback")}, nil
}

// jsGraphs is engine.Graphs over a JavaScript runner.
type jsGraphs struct {
	runner        js.Value
	c, h, w, r    int
	height, width int
	buf           js.Value // Uint8Array reused between calls
	bufLen        int
	out           []float32 // velocity output, reused (GraphDenoiser copies it out)
	released      bool
}

var _ engine.Graphs = (*jsGraphs)(nil)

// align8 rounds n up to a multiple of 8.
func align8(n int) int { return (n + 7) &^ 7 }

// buffer returns the reused Uint8Array, grown to at least n bytes.
func (g *jsGraphs) buffer(n int) js.Value {
	if g.bufLen < n {
		size := max(n, 2*g.bufLen)
		g.buf = js.Global().Get("Uint8Array").New(size)
		g.bufLen = size
	}
	return g.buf
}

// bytesOf is the memory of s as bytes (wasm is little-endian, as the graphs' tensors).
func bytesOf[T float32 | int64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// put copies b into buf at byte offset off.
func put(buf js.Value, off int, b []byte) {
	if len(b) > 0 {
		js.CopyBytesToJS(buf.Call("subarray", off, off+len(b)), b)
	}
}

// call runs one runner method and copies its Float32Array result into dst (grown as needed).
func (g *jsGraphs) call(ctx context.Context, method string, layout map[string]any, dst []float32) ([]float32, error) {
	if g.released {
		return nil, fmt.Errorf("flextok/wasm/js: the graphs were released")
	}
	v, err := jsasync.Await(ctx, g.runner.Call(method, g.buf, js.ValueOf(layout)))
	if err != nil {
		return nil, hostError(method, err)
	}
	if !v.InstanceOf(js.Global().Get("Float32Array")) {
		return nil, fmt.Errorf("flextok/wasm/js: %w: the runner's %s gave %s, not a Float32Array", engine.ErrGraphMismatch, method, js.Global().Call("String", v).String())
	}
	n := v.Get("length").Int()
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	view := js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), v.Get("byteLength"))
	js.CopyBytesToGo(bytesOf(dst), view)
	return dst, nil
}

// Velocity implements engine.Graphs: one call of the runner's velocity.
func (g *jsGraphs) Velocity(ctx context.Context, f *engine.VelocityFeed) ([]float32, error) {
	xb, tb, ib, kb := bytesOf(f.X), bytesOf(f.T), bytesOf(f.IDs), bytesOf(f.K)
	ox := 0
	ot := align8(ox + len(xb))
	oi := align8(ot + len(tb))
	ok := align8(oi + len(ib))
	buf := g.buffer(ok + len(kb))
	put(buf, ox, xb)
	put(buf, ot, tb)
	put(buf, oi, ib)
	put(buf, ok, kb)
	out, err := g.call(ctx, "velocity", map[string]any{"n": f.N, "x": ox, "t": ot, "ids": oi, "k": ok}, g.out)
	if err != nil {
		return nil, err
	}
	g.out = out
	return out, nil
}

// DecodeLatents implements engine.Graphs: one call of the runner's vae.
func (g *jsGraphs) DecodeLatents(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
	if len(latents.Shape) != 4 {
		return tensor.Tensor{}, fmt.Errorf("flextok/wasm/js: %w: latents of shape %v", engine.ErrArgument, latents.Shape)
	}
	lb := bytesOf(latents.Data)
	buf := g.buffer(len(lb))
	put(buf, 0, lb)
	n := latents.Shape[0]
	out, err := g.call(ctx, "vae", map[string]any{"n": n, "latents": 0}, nil)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if len(out) != n*3*g.height*g.width {
		return tensor.Tensor{Shape: []int{len(out)}, Data: out}, nil // GraphExecutor names the mismatch
	}
	return tensor.Tensor{Shape: []int{n, 3, g.height, g.width}, Data: out}, nil
}

// release lets the runner free its sessions.
func (g *jsGraphs) release() error {
	if g.released {
		return nil
	}
	g.released = true
	if r := g.runner.Get("release"); r.Type() == js.TypeFunction {
		g.runner.Call("release")
	}
	return nil
}
