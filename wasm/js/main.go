//go:build js && wasm

// Command js is the GOOS=js front end of sdk/service, for browsers and Node:
//
//	GOOS=js GOARCH=wasm go build -o dist/flextok.wasm ./wasm/js
//
// Run it with the wasm_exec.js of the same Go release ($(go env GOROOT)/lib/wasm). It sets
//
//	globalThis.flextok = { handle(Uint8Array) → Promise<Uint8Array>, version: string }
//
// and then waits for calls. handle takes a request and returns a Promise of the response,
// both msgpack (the format is in the sdk/service documentation). The Promise resolves even
// for a failed request (errors are responses with "ok": false); it rejects only if serving
// the request panicked outside the service, and never settles if the Go program exits.
//
// Each request is served on a goroutine of its own (wasm/internal/jsasync), so a request may
// wait for JavaScript (a fetch, an onnxruntime-web session) and requests may be in flight
// together; the service is safe for concurrent use. The module still runs on the thread that
// calls it and computes without yielding: run it in a Worker. The request's bytes are copied
// before handle returns, so the caller may reuse its array at once.
package main

import (
	"syscall/js"

	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/wasm/internal/defaultmodel"
	"github.com/flextok-sdk/flextok/wasm/internal/jsasync"
)

func main() {
	svc := service.New(service.Options{Default: defaultmodel.Checkpoint(), DefaultAR: defaultmodel.AR(), Graphs: openGraphs})
	js.Global().Set("flextok", js.ValueOf(map[string]any{
		"handle":  newHandle(svc.Handle),
		"version": "protocol 1",
	}))
	select {} // main never returns: a returned main ends the program, and handle with it
}

// newHandle returns flextok.handle over serve (the service's Handle: request bytes →
// response bytes).
func newHandle(serve func([]byte) []byte) js.Func {
	uint8Array := js.Global().Get("Uint8Array")
	return js.FuncOf(func(this js.Value, args []js.Value) any {
		var req []byte
		ok := len(args) == 1 && args[0].InstanceOf(uint8Array)
		if ok {
			req = make([]byte, args[0].Get("length").Int())
			js.CopyBytesToGo(req, args[0])
		}
		return jsasync.Promise(func() (any, error) {
			var resp []byte
			if ok {
				resp = serve(req)
			} else {
				resp = service.ErrorResponse(service.CodeBadRequest, "flextok/wasm/js: handle takes one Uint8Array")
			}
			out := uint8Array.New(len(resp))
			js.CopyBytesToJS(out, resp)
			return out, nil
		})
	})
}
