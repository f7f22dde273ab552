package service

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// counted is an executor that counts its Close calls and can hold a decode until released.
type counted struct {
	engine.Executor
	closes atomic.Int32
	hold   chan struct{} // nil: decode at once; else a decode waits for it to close
	inside chan struct{} // receives once a held decode has started
}

func (c *counted) Close() error {
	c.closes.Add(1)
	return c.Executor.Close()
}

func (c *counted) Decode(ctx context.Context, p *payload.Payload, o engine.DecodeOptions) (tensor.Tensor, error) {
	if c.hold != nil {
		c.inside <- struct{}{}
		<-c.hold
	}
	return c.Executor.Decode(ctx, p, o)
}

func c1Engine(t testing.TB) *engine.Engine {
	t.Helper()
	c := loadC1(t)
	e, err := engine.LoadBytes(c.weights, c.config, c.vae, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestAdd: an executor registered with Add serves requests as one from "open" does, counts
// towards MaxModels, and is never closed by the service (its caller owns it).
func TestAdd(t *testing.T) {
	x := &counted{Executor: c1Engine(t)}
	s := New(Options{MaxModels: 2})
	h, err := s.Add(x)
	if err != nil || h != 1 {
		t.Fatalf("Add: handle %d, %v", h, err)
	}
	ref := New(Options{})
	rh := openC1(t, ref)
	// The same requests give the same payloads (names aside: "open" named it c1, Add keeps
	// the model's own) and images.
	pb := c1Payload(t, s, int64(h))
	var p, q payload.Payload
	if err := payload.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	if err := payload.Unmarshal(c1Payload(t, ref, rh), &q); err != nil {
		t.Fatal(err)
	}
	q.Model.Name = p.Model.Name
	if !p.Model.Equal(&q.Model) || !slices.Equal(p.IDs, q.IDs) || p.Image != q.Image {
		t.Fatalf("the payload of an added executor differs from open's:\n%+v\n%+v", p, q)
	}
	got := call(t, s, M{"op": "decode", "handle": h, "payload": pb, "steps": 2, "output": []string{"tensor"}})
	want := call(t, ref, M{"op": "decode", "handle": rh, "payload": pb, "steps": 2, "output": []string{"tensor"}})
	if !bytes.Equal(got["tensor"].([]byte), want["tensor"].([]byte)) {
		t.Fatal("decode on an added executor differs from open's")
	}
	if _, err := s.Add(x); err != nil { // the same executor twice: two handles
		t.Fatal(err)
	}
	var se *Error
	if _, err := s.Add(x); !errors.As(err, &se) || se.Code != CodeTooManyHandles {
		t.Fatalf("Add beyond MaxModels: %v", err)
	}
	if _, err := s.Add(nil); !errors.As(err, &se) || se.Code != CodeBadRequest {
		t.Fatalf("Add(nil): %v", err)
	}
	call(t, s, M{"op": "close", "handle": h})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := x.closes.Load(); n != 0 {
		t.Fatalf("the service closed an executor it does not own %d times", n)
	}
	fail(t, s, M{"op": "info", "handle": 2}, CodeUnknownHandle)
}

// TestLoad: Options.Load builds the executors of "open" (with the request's name), the
// service closes them on "close" and Close, and never under a running request.
func TestLoad(t *testing.T) {
	c := loadC1(t)
	var (
		mu    sync.Mutex
		made  []*counted
		names []string
	)
	load := func(ck Checkpoint, name string) (engine.Executor, error) {
		if !bytes.Equal(ck.Weights, c.weights) || !bytes.Equal(ck.Config, c.config) || !bytes.Equal(ck.VAEConfig, c.vae) {
			return nil, errors.New("not the request's checkpoint")
		}
		e, err := engine.LoadBytes(ck.Weights, ck.Config, ck.VAEConfig, engine.Options{Name: name})
		if err != nil {
			return nil, err
		}
		x := &counted{Executor: e, hold: make(chan struct{}), inside: make(chan struct{}, 1)}
		mu.Lock()
		made, names = append(made, x), append(names, name)
		mu.Unlock()
		return x, nil
	}
	s := New(Options{Load: load})
	h := openC1(t, s)
	if len(made) != 1 || names[0] != "c1" {
		t.Fatalf("Load called %d times, names %q", len(made), names)
	}
	x := made[0]
	pb := c1Payload(t, s, h)

	// A decode is running when its model is closed: the executor is closed when it ends.
	done := make(chan []byte)
	req := enc(t, M{"op": "decode", "handle": h, "payload": pb, "steps": 1})
	go func() { done <- s.Handle(req) }()
	<-x.inside
	call(t, s, M{"op": "close", "handle": h})
	time.Sleep(10 * time.Millisecond)
	if n := x.closes.Load(); n != 0 {
		t.Fatal("the executor was closed under a running decode")
	}
	close(x.hold)
	if r := dec(t, <-done); r["ok"] != true {
		t.Fatalf("the running decode failed: %v", r["error"])
	}
	if n := x.closes.Load(); n != 1 {
		t.Fatalf("closed %d times after the decode, want 1", n)
	}

	// Close closes every model the service opened; errors of Load keep their codes.
	openC1(t, s)
	openC1(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i, x := range made {
		if n := x.closes.Load(); n != 1 {
			t.Errorf("executor %d closed %d times", i, n)
		}
	}
	fail(t, s, M{"op": "open", "weights": []byte("x"), "name": "n"}, CodeBadModel)
}

// TestLoadErrors: the codes of a loader's errors.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{errors.New("no library"), CodeBadModel},
		{engine.ErrUnsupported, CodeUnsupported},
		{engine.ErrArgument, CodeBadRequest},
	} {
		s := New(Options{Load: func(Checkpoint, string) (engine.Executor, error) { return nil, tc.err }})
		fail(t, s, M{"op": "open", "weights": []byte("x")}, tc.code)
	}
}
