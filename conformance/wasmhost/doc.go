// Package wasmhost runs the GOOS=wasip1 build of sdk/service (wasm/wasip1) under wazero: a
// sandboxed decoder that a server can use, and the wasip1 executor of the conformance suite.
//
// The module is compiled once (New, with a CompilationCache, optionally on disk) and
// instantiated per use (Host.Instantiate): each Instance has its own memory and its own
// service state (open models and streams), and dies without harming the host if the guest
// traps or runs out of memory.
//
//	h, err := wasmhost.New(ctx, wasmBytes, wasmhost.Options{})
//	defer h.Close(ctx)
//	inst, err := h.Instantiate(ctx)
//	defer inst.Close(ctx)
//	resp, err := inst.Handle(req) // msgpack in, msgpack out, as sdk/service documents
//
// Handle's error is for failures of the host or the module (a trap, an exit); errors of the
// request itself come back inside the response, as data.
package wasmhost
