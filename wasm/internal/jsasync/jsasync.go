//go:build js && wasm

package jsasync

import (
	"context"
	"errors"
	"fmt"
	"syscall/js"
)

// Promise returns a JavaScript Promise and runs f on a new goroutine: the Promise resolves
// with f's value (converted by js.ValueOf) or rejects with its error: a *RejectError's reason
// or a js.Error's value as it is, else a JavaScript Error with the error's message. A panic in f rejects the Promise
// with an Error naming the panic instead of ending the Go program.
//
// The goroutine starts at once; the caller gets the Promise when every goroutine is blocked
// (see the package documentation): already settled when f never waits for JavaScript.
func Promise(f func() (any, error)) js.Value {
	var resolve, reject js.Value
	executor := js.FuncOf(func(_ js.Value, args []js.Value) any {
		resolve, reject = args[0], args[1]
		return nil
	})
	p := js.Global().Get("Promise").New(executor) // runs executor before it returns
	executor.Release()
	go func() {
		v, err := call(f)
		if err != nil {
			reject.Invoke(errorValue(err))
			return
		}
		resolve.Invoke(v)
	}()
	return p
}

func call(f func() (any, error)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("flextok/wasm: panic: %v", r)
		}
	}()
	return f()
}

func errorValue(err error) js.Value {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	var je js.Error
	if errors.As(err, &je) {
		return je.Value
	}
	return js.Global().Get("Error").New(err.Error())
}

// RejectError is Await's error for a rejected promise.
type RejectError struct {
	Reason js.Value // what the promise was rejected with, usually an Error
}

func (e *RejectError) Error() string {
	msg := ""
	if e.Reason.Type() == js.TypeObject {
		if m := e.Reason.Get("message"); m.Type() == js.TypeString {
			msg = m.String()
		}
	}
	if msg == "" {
		msg = js.Global().Call("String", e.Reason).String()
	}
	return "flextok/wasm: a JavaScript promise rejected: " + msg
}

// Await waits for p to settle, as JavaScript's await does: a Promise or any thenable is
// waited for, another value is returned as it is. A rejection gives a *RejectError holding
// the reason. If ctx ends first, Await returns ctx.Err() and leaves p to settle unobserved.
//
// Call it from a goroutine started by Go (a Promise function, or one of its own), never on
// the goroutine of a js.FuncOf callback, which would deadlock (package documentation).
func Await(ctx context.Context, p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	done := make(chan result, 1) // never blocks a callback, even after Await returned
	var onResolve, onReject js.Func
	settle := func(r result) {
		done <- r
		onResolve.Release()
		onReject.Release()
	}
	onResolve = js.FuncOf(func(_ js.Value, args []js.Value) any {
		settle(result{v: arg0(args)})
		return nil
	})
	onReject = js.FuncOf(func(_ js.Value, args []js.Value) any {
		settle(result{err: &RejectError{Reason: arg0(args)}})
		return nil
	})
	// Promise.resolve adopts a thenable and wraps any other value, as await does.
	js.Global().Get("Promise").Call("resolve", p).Call("then", onResolve, onReject)
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return js.Undefined(), ctx.Err()
	}
}

func arg0(args []js.Value) js.Value {
	if len(args) == 0 {
		return js.Undefined()
	}
	return args[0]
}
