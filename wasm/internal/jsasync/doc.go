// Package jsasync joins Go and JavaScript promises in the GOOS=js module (wasm/js):
//
//   - Promise runs a Go function on a goroutine of its own and returns a JavaScript Promise
//     of its result. wasm/js's handle is built on it, so a request can wait for JavaScript
//     while it runs.
//   - Await waits, on a goroutine, for a JavaScript Promise (or any thenable) to settle. The
//     browser's onnxruntime-web executor is meant to use it: the Go side calls into
//     JavaScript for a session run and waits for the result, as it would for a fetch.
//
// Why it works: the Go program in a GOOS=js module runs on the JavaScript thread, and the Go
// scheduler hands that thread back to JavaScript only when every goroutine is blocked. A
// goroutine blocked in Await is blocked on a channel, so the event loop runs (timers,
// messages, the promise's own work) until the promise settles and its callback wakes the
// goroutine. A goroutine that computes never blocks and holds the thread until it ends:
// Promise makes a request asynchronous, not the arithmetic.
//
// Await must not be called on the goroutine of a js.FuncOf callback (the callback would hold
// the event loop while waiting for it: a deadlock). Promise's function runs on its own
// goroutine, so anything it calls may Await.
//
// Everything but this comment is built only for GOOS=js.
package jsasync
