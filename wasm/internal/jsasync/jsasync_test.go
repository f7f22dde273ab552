//go:build js && wasm

package jsasync

import (
	"context"
	"errors"
	"strings"
	"syscall/js"
	"testing"
	"time"
)

// after returns a Promise that the JavaScript event loop resolves with v after ms
// milliseconds (setTimeout): it settles only if the loop runs while Go waits.
func after(ms int, v any) js.Value {
	return js.Global().Get("Function").New("ms", "v", "return new Promise((res) => setTimeout(() => res(v), ms))").Invoke(ms, v)
}

func jsEval(src string) js.Value {
	return js.Global().Get("Function").New("return (" + src + ")").Invoke()
}

func TestAwaitWaitsForTheEventLoop(t *testing.T) {
	// The promise settles on the third tick of a JavaScript interval: the thread is
	// JavaScript's while the goroutine waits.
	ticks := jsEval(`new Promise((res) => { let n = 0; const id = setInterval(() => { if (++n === 3) (clearInterval(id), res(n)); }, 1); })`)
	if v, err := Await(context.Background(), ticks); err != nil || v.Int() != 3 {
		t.Fatalf("Await = %v, %v; want 3", v, err)
	}
	if v, err := Await(context.Background(), after(20, "done")); err != nil || v.String() != "done" {
		t.Fatalf("Await = %v, %v; want done", v, err)
	}
}

func TestAwaitRejections(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`Promise.reject(new TypeError("boom"))`, "boom"},
		{`Promise.reject("a string")`, "a string"},
		{`Promise.reject(undefined)`, "undefined"},
		{`new Promise(() => { throw new Error("thrown") })`, "thrown"},
	} {
		_, err := Await(context.Background(), jsEval(c.src))
		var re *RejectError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v; want a *RejectError naming %q", c.src, err, c.want)
		}
	}
	_, err := Await(context.Background(), jsEval(`Promise.reject(new RangeError("r"))`))
	if re := err.(*RejectError); re.Reason.Get("name").String() != "RangeError" {
		t.Errorf("the reason is not kept: %v", re.Reason)
	}
}

func TestAwaitValuesAndThenables(t *testing.T) {
	ctx := context.Background()
	if v, err := Await(ctx, js.ValueOf(42)); err != nil || v.Int() != 42 {
		t.Errorf("a plain value: %v, %v", v, err)
	}
	if v, err := Await(ctx, jsEval(`{ then(res) { setTimeout(() => res(7), 1) } }`)); err != nil || v.Int() != 7 {
		t.Errorf("a thenable: %v, %v", v, err)
	}
	if v, err := Await(ctx, jsEval(`Promise.resolve(new Uint8Array([1, 2, 3]))`)); err != nil || v.Get("length").Int() != 3 {
		t.Errorf("a Uint8Array: %v, %v", v, err)
	}
}

func TestAwaitContext(t *testing.T) {
	never := jsEval(`new Promise(() => {})`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := Await(ctx, never); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v; want the context's deadline", err)
	}
	// A promise that settles after Await gave up: its callbacks still run (and release themselves).
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := Await(ctx2, after(5, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v; want canceled", err)
	}
	if _, err := Await(context.Background(), after(20, 0)); err != nil {
		t.Fatal(err)
	}
}

func TestPromiseSettles(t *testing.T) {
	ctx := context.Background()
	p := Promise(func() (any, error) { return "value", nil })
	if !p.InstanceOf(js.Global().Get("Promise")) {
		t.Fatalf("Promise returned %v, not a Promise", p.Type())
	}
	if v, err := Await(ctx, p); err != nil || v.String() != "value" {
		t.Errorf("resolve: %v, %v", v, err)
	}
	_, err := Await(ctx, Promise(func() (any, error) { return nil, errors.New("went wrong") }))
	var re *RejectError
	if !errors.As(err, &re) || !re.Reason.InstanceOf(js.Global().Get("Error")) || re.Reason.Get("message").String() != "went wrong" {
		t.Errorf("reject: %v; want an Error with the message", err)
	}
	_, err = Await(ctx, Promise(func() (any, error) { panic("bad index") }))
	if err == nil || !strings.Contains(err.Error(), "panic: bad index") {
		t.Errorf("panic: %v; want a rejection naming it", err)
	}
	// A rejection reason from Await goes back to JavaScript as it was.
	reason := jsEval(`new SyntaxError("kept")`)
	_, err = Await(ctx, Promise(func() (any, error) {
		_, err := Await(ctx, js.Global().Get("Promise").Call("reject", reason))
		return nil, err
	}))
	if !errors.As(err, &re) || !re.Reason.Equal(reason) {
		t.Errorf("the reason did not pass through: %v", err)
	}
}

// Two promises whose functions wait for JavaScript run side by side: the one that waits less
// settles first, and each function sees the event loop run.
func TestPromisesInFlight(t *testing.T) {
	order := js.Global().Get("Array").New()
	record := jsEval(`(order) => (p, name) => p.then(() => order.push(name))`).Invoke(order)
	slow := Promise(func() (any, error) { return Await(context.Background(), after(60, "slow")) })
	fast := Promise(func() (any, error) { return Await(context.Background(), after(5, "fast")) })
	all := js.Global().Get("Promise").Call("all", []any{record.Invoke(slow, "slow"), record.Invoke(fast, "fast")})
	if _, err := Await(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	if got := order.Call("join", ",").String(); got != "fast,slow" {
		t.Errorf("settled in the order %s; want fast,slow", got)
	}
}
