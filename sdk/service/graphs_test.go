package service

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/flextok-sdk/flextok/internal/webpkgtest"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// engineHost is a GraphHost that runs e's networks, recording its requests and closes.
type engineHost struct {
	e      *engine.Engine
	reqs   []GraphRequest
	closes int
	err    error
	graphs engine.Graphs // overrides e's when set
}

func (h *engineHost) open(_ context.Context, r GraphRequest) (*OpenedGraphs, error) {
	h.reqs = append(h.reqs, r)
	if h.err != nil {
		return nil, h.err
	}
	_, g, err := h.e.Graphs()
	if err != nil {
		return nil, err
	}
	if h.graphs != nil {
		g = h.graphs
	}
	return &OpenedGraphs{Graphs: g, Close: func() error { h.closes++; return nil }, Provider: "wasm", Precision: webpkg.FP32, Fallback: "no WebGPU adapter"}, nil
}

// TestOpenGraphs: a web model opened with "open_graphs" decodes and streams as the same
// model opened with "open", bit for bit (its GraphHost runs the engine's networks), and says
// which provider runs.
func TestOpenGraphs(t *testing.T) {
	e := c1Engine(t)
	host := &engineHost{e: e}
	s := New(Options{Graphs: host.open})
	man := webpkgtest.Manifest(t, e, false)
	r := call(t, s, M{"op": "open_graphs", "manifest": man, "files": "pkg1", "name": "c1"})
	h := num(r["handle"])
	if r["provider"] != "wasm" || r["precision"] != "fp32" || r["fallback"] != "no WebGPU adapter" {
		t.Errorf("open_graphs response %v", r)
	}
	if m := r["model"].(M); m["name"] != "c1" {
		t.Errorf("model %v, want the name asked for", m)
	}
	if len(host.reqs) != 1 || host.reqs[0].Files != "pkg1" || host.reqs[0].Provider != ProviderAuto || host.reqs[0].Precision != PrecisionAuto ||
		!bytes.Equal(host.reqs[0].ManifestJSON, man) || host.reqs[0].Manifest.Model.Name != e.Identity().Name {
		t.Errorf("the host got %+v", host.reqs)
	}
	ref := New(Options{})
	rh := openC1(t, ref)
	pb := c1Payload(t, ref, rh)
	for _, o := range []M{{"steps": 2}, {"steps": 3, "guidance": 2.5, "apg": true, "seed": 9, "k": 3}} {
		req := func(h int64) M {
			m := M{"op": "decode", "handle": h, "payload": pb, "output": []string{"tensor", "rgba"}}
			for k, v := range o {
				m[k] = v
			}
			return m
		}
		got, want := call(t, s, req(h)), call(t, ref, req(rh))
		if num(got["velocity_calls"]) != int64(o["steps"].(int)) || got["vae_ms"] == nil || got["velocity_ms"] == nil {
			t.Errorf("%v: graph timings %v %v %v, want one velocity call per step", o, got["velocity_calls"], got["velocity_ms"], got["vae_ms"])
		}
		if _, ok := want["velocity_ms"]; ok {
			t.Errorf("an engine's decode reports graph timings")
		}
		if !bytes.Equal(got["tensor"].([]byte), want["tensor"].([]byte)) || !bytes.Equal(got["rgba"].([]byte), want["rgba"].([]byte)) {
			t.Fatalf("%v: the web model's image differs from the engine's", o)
		}
	}
	// Streams work unchanged on it: each prefix as the engine's decode of it.
	var p payload.Payload
	if err := payload.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	st, err := payload.Split(&p, []int{4, 8})
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := st.Header.AppendBinary(nil)
	sh := num(call(t, s, M{"op": "stream_open", "handle": h, "header": hb, "steps": 2, "seed": 5, "output": []string{"tensor"}})["stream"])
	received := 0
	for i, c := range st.Chunks {
		cb, _ := c.AppendBinary(nil, &st.Header)
		received += len(c.IDs)
		got := call(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": cb})
		want := call(t, ref, M{"op": "decode", "handle": rh, "payload": pb, "k": received, "steps": 2, "seed": 5, "output": []string{"tensor"}})
		if !bytes.Equal(got["tensor"].([]byte), want["tensor"].([]byte)) {
			t.Fatalf("chunk %d: the web model's stream decode differs from the engine's decode with k=%d", i, received)
		}
	}
	fail(t, s, M{"op": "encode", "handle": h, "image": testImage(8, 8)}, CodeUnsupported)
	call(t, s, M{"op": "close", "handle": h})
	if host.closes != 1 {
		t.Errorf("close: the host's sessions were released %d times, want 1", host.closes)
	}
}

// TestOpenGraphsErrors: every refusal has its code, and a failed open leaves no handle.
func TestOpenGraphsErrors(t *testing.T) {
	e := c1Engine(t)
	man := webpkgtest.Manifest(t, e, false)
	fail(t, New(Options{}), M{"op": "open_graphs", "manifest": man, "files": "k"}, CodeUnsupported)
	host := &engineHost{e: e}
	s := New(Options{Graphs: host.open, MaxModels: 1})
	fail(t, s, M{"op": "open_graphs", "files": "k"}, CodeBadRequest)
	fail(t, s, M{"op": "open_graphs", "manifest": man}, CodeBadRequest)
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k", "provider": "cuda"}, CodeBadRequest)
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k", "precision": "int8"}, CodeBadRequest)
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k", "precision": "fp16"}, CodeBadRequest)
	fail(t, s, M{"op": "open_graphs", "manifest": []byte(`{"format":"flextok-web","version":2}`), "files": "k"}, CodeBadPackage)
	fail(t, s, M{"op": "open_graphs", "manifest": []byte(`{`), "files": "k"}, CodeBadPackage)
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k", "weights": []byte{1}}, CodeBadRequest)
	if len(host.reqs) != 0 {
		t.Fatalf("the host was asked %d times for refused requests", len(host.reqs))
	}
	host.err = &Error{Code: CodeOutOfMemory, Message: "flextok/wasm/js: out of memory", Detail: "out of memory"}
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k"}, CodeOutOfMemory)
	host.err = errors.New("the session failed")
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k"}, CodeBadModel)
	host.err = nil
	// A graph answering with another model's shapes: graph_mismatch on decode.
	host.graphs = shortGraphs{}
	h := num(call(t, s, M{"op": "open_graphs", "manifest": man, "files": "k", "precision": "fp32", "provider": "wasm"})["handle"])
	ref := New(Options{})
	pb := c1Payload(t, ref, openC1(t, ref))
	fail(t, s, M{"op": "decode", "handle": h, "payload": pb, "steps": 1}, CodeGraphMismatch)
	fail(t, s, M{"op": "open_graphs", "manifest": man, "files": "k"}, CodeTooManyHandles)
}

// shortGraphs gives too few values.
type shortGraphs struct{}

func (shortGraphs) Velocity(context.Context, *engine.VelocityFeed) ([]float32, error) {
	return make([]float32, 1), nil
}
func (shortGraphs) DecodeLatents(context.Context, tensor.Tensor) (tensor.Tensor, error) {
	return tensor.Tensor{}, nil
}
