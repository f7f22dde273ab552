//go:build js && wasm

// Command js is the GOOS=js front end of sdk/service, for browsers and Node:
//
//	GOOS=js GOARCH=wasm go build -o dist/flextok.wasm ./wasm/js
//
// Run it with the wasm_exec.js of the same Go release ($(go env GOROOT)/lib/wasm). It sets
//
//	globalThis.flextok = { handle(Uint8Array) → Uint8Array, version: string }
//
// and then waits for calls. handle takes a request and returns a response, both msgpack
// (the format is in the sdk/service documentation); it never throws: errors are responses
// with "ok": false. Calls are synchronous, so run the module in a Worker.
package main

import (
	"syscall/js"

	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/wasm/internal/defaultmodel"
)

func main() {
	svc := service.New(service.Options{Default: defaultmodel.Checkpoint()})
	uint8Array := js.Global().Get("Uint8Array")
	handle := js.FuncOf(func(this js.Value, args []js.Value) any {
		var resp []byte
		if len(args) != 1 || !args[0].InstanceOf(uint8Array) {
			resp = service.ErrorResponse(service.CodeBadRequest, "flextok/wasm/js: handle takes one Uint8Array")
		} else {
			req := make([]byte, args[0].Get("length").Int())
			js.CopyBytesToGo(req, args[0])
			resp = svc.Handle(req)
		}
		out := uint8Array.New(len(resp))
		js.CopyBytesToJS(out, resp)
		return out
	})
	js.Global().Set("flextok", js.ValueOf(map[string]any{
		"handle":  handle,
		"version": "protocol 1",
	}))
	select {}
}
