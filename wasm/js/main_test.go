//go:build js && wasm

package main

import (
	"bytes"
	"context"
	"syscall/js"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/wasm/internal/jsasync"
	"github.com/vmihailenco/msgpack/v5"
)

func jsEval(src string) js.Value {
	return js.Global().Get("Function").New("return (" + src + ")").Invoke()
}

func u8(b []byte) js.Value {
	a := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(a, b)
	return a
}

func goBytes(v js.Value) []byte {
	b := make([]byte, v.Get("length").Int())
	js.CopyBytesToGo(b, v)
	return b
}

// call runs handle(arg) and waits for its Promise.
func call(t *testing.T, h js.Func, arg any) map[string]any {
	t.Helper()
	p := js.Value(h.Value).Invoke(arg)
	if !p.InstanceOf(js.Global().Get("Promise")) {
		t.Fatalf("handle returned %v, not a Promise", p.Type())
	}
	v, err := jsasync.Await(context.Background(), p)
	if err != nil {
		t.Fatalf("handle's Promise rejected: %v", err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(goBytes(v), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHandleServesTheService(t *testing.T) {
	h := newHandle(service.New(service.Options{}).Handle)
	defer h.Release()
	req, _ := msgpack.Marshal(map[string]any{"op": "version", "id": 9})
	if r := call(t, h, u8(req)); r["ok"] != true || r["protocol"] != int8(1) || r["id"] != int8(9) {
		t.Errorf("version: %v", r)
	}
	for _, arg := range []any{"not bytes", js.Undefined(), js.Global().Get("Array").New(1, 2)} {
		r := call(t, h, arg)
		if e, _ := r["error"].(map[string]any); r["ok"] != false || e["code"] != service.CodeBadRequest {
			t.Errorf("handle(%v): %v; want bad_request", arg, r)
		}
	}
}

// A request that waits for JavaScript: handle returns its Promise still pending (the event
// loop is free while the request waits), a later request that waits less settles first, and
// each request got the bytes it was called with, copied before handle returned.
func TestHandleAwaitsJavaScript(t *testing.T) {
	ctx := context.Background()
	h := newHandle(func(req []byte) []byte {
		ms := int(req[0])
		_, err := jsasync.Await(ctx, jsEval(`(ms) => new Promise((res) => setTimeout(res, ms))`).Invoke(ms))
		if err != nil {
			return []byte(err.Error())
		}
		return append([]byte("served "), req...)
	})
	defer h.Release()
	order := js.Global().Get("Array").New()
	settle := jsEval(`(order) => (p) => p.then((r) => (order.push(r[7]), r))`).Invoke(order)
	slowReq, fastReq := u8([]byte{60, 'a'}), u8([]byte{5, 'b'})
	slow := js.Value(h.Value).Invoke(slowReq)
	fast := js.Value(h.Value).Invoke(fastReq)
	slowReq.Call("fill", 0) // the caller reuses its arrays at once
	fastReq.Call("fill", 0)
	state, err := jsasync.Await(ctx, jsEval(`(p) => Promise.race([p.then(() => "settled"), new Promise((r) => setTimeout(r, 0, "pending"))])`).Invoke(slow))
	if err != nil || state.String() != "pending" {
		t.Errorf("a request waiting for a 60 ms timer: %v (%v); want pending", state, err)
	}
	all, err := jsasync.Await(ctx, js.Global().Get("Promise").Call("all", []any{settle.Invoke(slow), settle.Invoke(fast)}))
	if err != nil {
		t.Fatal(err)
	}
	if got := goBytes(all.Index(0)); !bytes.Equal(got, []byte("served \x3ca")) {
		t.Errorf("slow: %q", got)
	}
	if got := goBytes(all.Index(1)); !bytes.Equal(got, []byte("served \x05b")) {
		t.Errorf("fast: %q", got)
	}
	if got := order.Call("join", ",").String(); got != "5,60" { // r[7]: the request's wait in ms
		t.Errorf("settled in the order %s; want the 5 ms request first", got)
	}
}
