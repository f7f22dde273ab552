//go:build wasip1

// Command wasip1 is the GOOS=wasip1 front end of sdk/service, a reactor module for wazero and
// other WASI hosts (conformance/wasmhost is one):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o dist/flextok-wasip1.wasm ./wasm/wasip1
//
// The host calls "_initialize" once, then for each request:
//
//	ptr := alloc(len)            // a buffer in the module's memory; 0 when len is 0
//	write the request at ptr
//	res := handle(ptr, len)      // the response: pointer in the high 32 bits, length in the low
//	read the response; free(res >> 32); free(ptr)
//
// Requests and responses are msgpack, as sdk/service documents; handle never traps on a bad
// request (errors are responses with "ok": false). Buffers stay valid until freed.
package main

import (
	"unsafe"

	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/wasm/internal/defaultmodel"
)

var (
	svc = service.New(service.Options{Default: defaultmodel.Checkpoint(), DefaultAR: defaultmodel.AR()})
	// live keeps every buffer handed to the host reachable (Go's collector does not move
	// objects, so a pointer stays valid while its slice is here).
	live = map[uint32][]byte{}
)

func keep(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	p := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	live[p] = b
	return p
}

//go:wasmexport alloc
func alloc(size uint32) uint32 { return keep(make([]byte, size)) }

//go:wasmexport free
func free(ptr uint32) { delete(live, ptr) }

//go:wasmexport handle
func handle(ptr, size uint32) uint64 {
	var req []byte // stays nil (Handle answers "bad_request") unless ptr came from alloc
	if b, ok := live[ptr]; ok && int(size) <= len(b) {
		req = b[:size]
	}
	resp := svc.Handle(req)
	return uint64(keep(resp))<<32 | uint64(len(resp))
}

func main() {}
