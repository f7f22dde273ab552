package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/vmihailenco/msgpack/v5"
)

const c1Dir = "../../conformance/testdata/official/c1_w32_zero_e2/"

type ckpt struct{ weights, config, vae []byte }

var (
	c1Once sync.Once
	c1     ckpt
	c1Err  error
)

func loadC1(t testing.TB) ckpt {
	t.Helper()
	c1Once.Do(func() {
		if c1.weights, c1Err = os.ReadFile(c1Dir + "model.safetensors"); c1Err != nil {
			return
		}
		if c1.config, c1Err = os.ReadFile(c1Dir + "config.json"); c1Err != nil {
			return
		}
		c1.vae, c1Err = os.ReadFile(c1Dir + "vae/config.json")
	})
	if c1Err != nil {
		t.Skipf("no reference checkpoint: %v", c1Err)
	}
	return c1
}

// M is a request or a response.
type M = map[string]any

func enc(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dec(t testing.TB, b []byte) M {
	t.Helper()
	var m M
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatalf("response is not a msgpack map: %v (%x)", err, b)
	}
	return m
}

func num(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return -1 << 62
}

// call sends a request and fails the test unless it succeeds.
func call(t testing.TB, s *Service, req M) M {
	t.Helper()
	r := dec(t, s.Handle(enc(t, req)))
	if r["ok"] != true {
		t.Fatalf("%v: %v", req["op"], r["error"])
	}
	return r
}

// fail sends a request and checks that it fails with code.
func fail(t testing.TB, s *Service, req any, code string) M {
	t.Helper()
	var b []byte
	if raw, ok := req.([]byte); ok {
		b = raw
	} else {
		b = enc(t, req)
	}
	r := dec(t, s.Handle(b))
	e, _ := r["error"].(M)
	if r["ok"] != false || e == nil {
		t.Fatalf("request succeeded, want %q", code)
	}
	if e["code"] != code {
		t.Fatalf("code %v (%v), want %q", e["code"], e["message"], code)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("error without a message: %v", e)
	}
	return e
}

func openC1(t testing.TB, s *Service) int64 {
	c := loadC1(t)
	r := call(t, s, M{"op": "open", "name": "c1", "weights": c.weights, "config": c.config, "vae_config": c.vae})
	return num(r["handle"])
}

func testImage(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 5), uint8(y * 3), uint8((x + y) * 2), 255})
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

func TestVersion(t *testing.T) {
	r := call(t, New(Options{}), M{"op": "version", "id": 7})
	if num(r["protocol"]) != Protocol || num(r["id"]) != 7 {
		t.Fatalf("version: %v", r)
	}
	if p := r["payload"].([]any); num(p[0]) != payload.Major || num(p[1]) != payload.Minor {
		t.Fatalf("payload version %v", p)
	}
}

func TestOpenInfoClose(t *testing.T) {
	s := New(Options{})
	c := loadC1(t)
	r := call(t, s, M{"op": "open", "name": "c1", "weights": c.weights, "config": c.config, "vae_config": c.vae})
	h := num(r["handle"])
	if h != 1 {
		t.Fatalf("first handle %d, want 1", h)
	}
	eng, err := engine.LoadBytes(c.weights, c.config, c.vae, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	digest := eng.Identity().Digest // the content digest, not the file's SHA-256
	if digest == sha256.Sum256(c.weights) {
		t.Fatal("the model digest is the file's SHA-256")
	}
	info := call(t, s, M{"op": "info", "handle": h})
	delete(r, "handle")
	if !reflect.DeepEqual(r, info) {
		t.Fatalf("open and info differ:\n%v\n%v", r, info)
	}
	m := info["model"].(M)
	if m["name"] != "c1" || !bytes.Equal(m["digest"].([]byte), digest[:]) || num(m["max_tokens"]) != 32 ||
		num(info["height"]) != 32 || num(info["width"]) != 32 || num(info["codebook"]) != 64000 {
		t.Fatalf("info: %v", info)
	}
	// The config is optional: the safetensors header carries it, and gives the same digest.
	// Without a name, the name comes from the digest. The VAE's config is not optional: its
	// layout is not in the weights.
	if e := fail(t, s, M{"op": "open", "weights": c.weights}, CodeBadModel); !strings.Contains(e["message"].(string), "vae/config.json") {
		t.Fatalf("open without the VAE config: %v", e)
	}
	r2 := call(t, s, M{"op": "open", "weights": c.weights, "vae_config": c.vae})
	m2 := r2["model"].(M)
	if h2 := num(r2["handle"]); h2 != 2 || m2["name"] != fmt.Sprintf("flextok-%x", digest[:6]) || !bytes.Equal(m2["digest"].([]byte), digest[:]) {
		t.Fatalf("second open: %v", r2)
	}
	call(t, s, M{"op": "close", "handle": h})
	fail(t, s, M{"op": "info", "handle": h}, CodeUnknownHandle)
	fail(t, s, M{"op": "close", "handle": h}, CodeUnknownHandle)
	// Handles are never reused.
	if h3 := openC1(t, s); h3 != 3 {
		t.Fatalf("handle after a close: %d, want 3", h3)
	}
}

// c1Payload encodes the test image with c1 through the service.
func c1Payload(t testing.TB, s *Service, h int64) []byte {
	r := call(t, s, M{"op": "encode", "handle": h, "image": testImage(40, 36)})
	if num(r["count"]) != 32 {
		t.Fatalf("encode count %v", r["count"])
	}
	return r["payload"].([]byte)
}

func TestEncodeDecode(t *testing.T) {
	s := New(Options{})
	h := openC1(t, s)
	pb := c1Payload(t, s, h)
	var p payload.Payload
	if err := payload.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	if p.Image.SourceWidth != 40 || p.Image.SourceHeight != 36 || p.Model.Name != "c1" {
		t.Fatalf("payload: %+v", p)
	}
	r8 := call(t, s, M{"op": "encode", "handle": h, "image": testImage(40, 36), "k": 8, "filter": "catmull-rom"})
	if num(r8["count"]) != 8 {
		t.Fatalf("k=8 count %v", r8["count"])
	}

	req := M{"op": "decode", "handle": h, "payload": pb, "k": 5, "steps": 2, "guidance": 3.0, "apg": true, "seed": 11,
		"output": []string{"rgba", "png", "tensor"}}
	r := call(t, s, req)
	if num(r["k"]) != 5 || num(r["steps"]) != 2 || r["guidance"] != 3.0 || r["apg"] != true || num(r["seed"]) != 11 ||
		num(r["width"]) != 32 || num(r["height"]) != 32 {
		t.Fatalf("decode: %v", r)
	}
	rgba, pngb, tb := r["rgba"].([]byte), r["png"].([]byte), r["tensor"].([]byte)
	if len(rgba) != 32*32*4 || len(tb) != 3*32*32*4 {
		t.Fatalf("sizes rgba %d tensor %d", len(rgba), len(tb))
	}
	img, err := png.Decode(bytes.NewReader(pngb))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 32*32; i++ {
		r, g, b, a := img.At(i%32, i/32).RGBA()
		if [4]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8), byte(a >> 8)} != [4]byte(rgba[4*i:]) {
			t.Fatalf("png and rgba differ at pixel %d", i)
		}
	}
	// Deterministic, and equal to the engine called directly.
	again := call(t, s, req)
	for _, k := range []string{"rgba", "png", "tensor"} {
		if !bytes.Equal(again[k].([]byte), r[k].([]byte)) {
			t.Fatalf("second decode: %s differs", k)
		}
	}
	c := loadC1(t)
	eng, err := engine.LoadBytes(c.weights, c.config, c.vae, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := eng.Decode(context.Background(), &p, engine.DecodeOptions{K: 5, Steps: 2, Guidance: 3, APG: true, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range x.Data {
		if math.Float32bits(v) != binary.LittleEndian.Uint32(tb[4*i:]) {
			t.Fatalf("tensor[%d] differs from the engine's", i)
		}
	}
	want, _ := ftimage.FromTensor(x)
	if !bytes.Equal(want.Pix, rgba) {
		t.Fatal("rgba differs from the engine's")
	}
	// Defaults: rgba only, all tokens, the payload's hints.
	p.Hints = &payload.Hints{Steps: 1, Seed: ptr(uint64(3))}
	pb2, _ := p.MarshalBinary()
	d := call(t, s, M{"op": "decode", "handle": h, "payload": pb2})
	if d["png"] != nil || d["tensor"] != nil || len(d["rgba"].([]byte)) != 4096 || num(d["k"]) != 32 ||
		num(d["steps"]) != 1 || num(d["seed"]) != 3 || d["guidance"] != 7.5 || d["apg"] != true {
		t.Fatalf("decode with defaults: %v", d)
	}
	if _, ok := d["decode_ms"].(float64); !ok {
		t.Fatalf("no decode_ms: %v", d)
	}
	// k = 0 means all tokens, as engine's K and the CLI's -k 0: the same as no k.
	d0 := call(t, s, M{"op": "decode", "handle": h, "payload": pb2, "k": 0})
	if num(d0["k"]) != 32 || !bytes.Equal(d0["rgba"].([]byte), d["rgba"].([]byte)) {
		t.Fatalf("decode k=0: k %v, rgba equal to no k: %v", d0["k"], bytes.Equal(d0["rgba"].([]byte), d["rgba"].([]byte)))
	}
	e0 := call(t, s, M{"op": "encode", "handle": h, "image": testImage(40, 36), "k": 0})
	if num(e0["count"]) != 32 || !bytes.Equal(e0["payload"].([]byte), pb) {
		t.Fatalf("encode k=0: count %v, payload equal to no k: %v", e0["count"], bytes.Equal(e0["payload"].([]byte), pb))
	}
}

func ptr[T any](v T) *T { return &v }

func TestStream(t *testing.T) {
	s := New(Options{})
	h := openC1(t, s)
	var p payload.Payload
	if err := payload.Unmarshal(c1Payload(t, s, h), &p); err != nil {
		t.Fatal(err)
	}
	st, err := payload.Split(&p, []int{4, 8})
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := st.Header.AppendBinary(nil)
	pb, _ := p.MarshalBinary()
	r := call(t, s, M{"op": "stream_open", "handle": h, "header": hb, "steps": 2, "seed": 5, "output": []string{"tensor"}})
	sh := num(r["stream"])
	if sh != 2 || num(r["count"]) != 32 {
		t.Fatalf("stream_open: %v", r)
	}
	received := 0
	for i, c := range st.Chunks {
		cb, _ := c.AppendBinary(nil, &st.Header)
		received += len(c.IDs)
		r := call(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": cb, "id": i})
		if num(r["received"]) != int64(received) || r["done"] != (i == len(st.Chunks)-1) || r["decoded"] != true ||
			num(r["k"]) != int64(received) || num(r["id"]) != int64(i) {
			t.Fatalf("chunk %d: %v", i, r)
		}
		// A stream prefix decodes exactly like the whole payload's first k tokens.
		w := call(t, s, M{"op": "decode", "handle": h, "payload": pb, "k": received, "steps": 2, "seed": 5, "output": []string{"tensor"}})
		if !bytes.Equal(w["tensor"].([]byte), r["tensor"].([]byte)) {
			t.Fatalf("chunk %d: stream decode differs from decode with k=%d", i, received)
		}
	}
	// Decode again without a chunk, with a chunk-level option; a chunk after the end is refused.
	r = call(t, s, M{"op": "stream_chunk", "stream": sh, "output": []string{"rgba"}, "steps": 1})
	if r["rgba"] == nil || r["tensor"] != nil || num(r["steps"]) != 1 || num(r["seed"]) != 5 {
		t.Fatalf("re-decode: %v", r)
	}
	last, _ := st.Chunks[len(st.Chunks)-1].AppendBinary(nil, &st.Header)
	fail(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": last}, "stream")
	call(t, s, M{"op": "stream_close", "stream": sh})
	fail(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": last}, CodeUnknownHandle)
	fail(t, s, M{"op": "stream_close", "stream": sh}, CodeUnknownHandle)

	// decode: false only adds; closing the model closes its streams.
	r = call(t, s, M{"op": "stream_open", "handle": h, "header": hb})
	sh = num(r["stream"])
	first, _ := st.Chunks[0].AppendBinary(nil, &st.Header)
	r = call(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": first, "decode": false})
	if r["decoded"] != false || num(r["received"]) != 4 || r["rgba"] != nil {
		t.Fatalf("decode false: %v", r)
	}
	fail(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": first}, "stream") // out of order
	if r := call(t, s, M{"op": "close", "handle": h}); num(r["streams"]) != 1 {
		t.Fatalf("close: %v", r)
	}
	fail(t, s, M{"op": "stream_chunk", "stream": sh}, CodeUnknownHandle)
}

func TestErrors(t *testing.T) {
	s := New(Options{MaxModels: 2, MaxStreams: 1, MaxSteps: 5})
	h := openC1(t, s)
	c := loadC1(t)
	pb := c1Payload(t, s, h)
	var p payload.Payload
	_ = payload.Unmarshal(pb, &p)
	st, _ := payload.Split(&p, []int{4})
	hb, _ := st.Header.AppendBinary(nil)
	other, err := os.ReadFile("../../conformance/testdata/payload/tokens_1.msgpack")
	if err != nil {
		t.Fatal(err)
	}

	raw := []struct {
		name string
		req  []byte
		code string
	}{
		{"empty", nil, CodeBadRequest},
		{"nil", []byte{0xc0}, CodeBadRequest},
		{"array", enc(t, []any{"op"}), CodeBadRequest},
		{"truncated", enc(t, M{"op": "version"})[:4], CodeBadRequest},
		{"trailing", append(enc(t, M{"op": "version"}), 0), CodeBadRequest},
		{"int key", []byte{0x81, 0x01, 0x02}, CodeBadRequest},
		{"duplicate", []byte{0x82, 0xa2, 'o', 'p', 0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xa2, 'o', 'p', 0xa4, 'i', 'n', 'f', 'o'}, CodeBadRequest},
	}
	for _, c := range raw {
		t.Run(c.name, func(t *testing.T) { fail(t, s, c.req, c.code) })
	}

	cases := []struct {
		name string
		req  M
		code string
	}{
		{"no op", M{"handle": h}, CodeBadRequest},
		{"op type", M{"op": 3}, CodeBadRequest},
		{"unknown op", M{"op": "explode"}, CodeUnknownOp},
		{"unknown field", M{"op": "version", "verbose": true}, CodeBadRequest},
		{"field of another op", M{"op": "info", "handle": h, "payload": pb}, CodeBadRequest},
		{"handle type", M{"op": "info", "handle": "1"}, CodeBadRequest},
		{"handle negative", M{"op": "info", "handle": -1}, CodeUnknownHandle},
		{"handle zero", M{"op": "info", "handle": 0}, CodeUnknownHandle},
		{"handle missing", M{"op": "info"}, CodeUnknownHandle},
		{"id negative", M{"op": "version", "id": -1}, CodeBadRequest},
		{"weights as str", M{"op": "open", "weights": "abc"}, CodeBadRequest},
		{"open no weights", M{"op": "open", "name": "x"}, CodeBadRequest},
		{"open garbage", M{"op": "open", "weights": []byte("not a checkpoint")}, CodeBadModel},
		{"open long name", M{"op": "open", "weights": c.weights, "name": string(make([]byte, 300))}, CodeBadRequest},
		{"decode no payload", M{"op": "decode", "handle": h}, CodeBadRequest},
		{"decode unknown handle", M{"op": "decode", "handle": 99, "payload": pb}, CodeUnknownHandle},
		{"decode garbage", M{"op": "decode", "handle": h, "payload": []byte{0x90}}, "format"},
		{"decode truncated", M{"op": "decode", "handle": h, "payload": pb[:len(pb)-3]}, "truncated"},
		{"decode other model", M{"op": "decode", "handle": h, "payload": other}, "model_mismatch"},
		{"decode stream header", M{"op": "decode", "handle": h, "payload": hb}, "format"},
		{"k too large", M{"op": "decode", "handle": h, "payload": pb, "k": 33}, CodeBadRequest},
		{"steps zero", M{"op": "decode", "handle": h, "payload": pb, "steps": 0}, CodeBadRequest},
		{"guidance zero", M{"op": "decode", "handle": h, "payload": pb, "guidance": 0.0}, CodeBadRequest},
		{"steps over the limit", M{"op": "decode", "handle": h, "payload": pb, "steps": 6}, CodeBadRequest},
		{"steps from hints", M{"op": "decode", "handle": h, "payload": pb}, CodeBadRequest}, // default 20 > 5
		{"guidance NaN", M{"op": "decode", "handle": h, "payload": pb, "guidance": math.NaN()}, CodeBadRequest},
		{"guidance type", M{"op": "decode", "handle": h, "payload": pb, "guidance": "high"}, CodeBadRequest},
		{"apg type", M{"op": "decode", "handle": h, "payload": pb, "apg": 1}, CodeBadRequest},
		{"output unknown", M{"op": "decode", "handle": h, "payload": pb, "steps": 1, "output": []string{"jpeg"}}, CodeBadRequest},
		{"output twice", M{"op": "decode", "handle": h, "payload": pb, "steps": 1, "output": []string{"png", "png"}}, CodeBadRequest},
		{"output empty", M{"op": "decode", "handle": h, "payload": pb, "steps": 1, "output": []string{}}, CodeBadRequest},
		{"output type", M{"op": "decode", "handle": h, "payload": pb, "steps": 1, "output": "png"}, CodeBadRequest},
		{"encode no image", M{"op": "encode", "handle": h}, CodeBadRequest},
		{"encode not an image", M{"op": "encode", "handle": h, "image": []byte("GIF89a nope")}, CodeBadImage},
		{"encode k", M{"op": "encode", "handle": h, "image": testImage(8, 8), "k": 33}, CodeBadRequest},
		{"encode filter", M{"op": "encode", "handle": h, "image": testImage(8, 8), "filter": "lanczos"}, CodeBadRequest},
		{"stream_open no header", M{"op": "stream_open", "handle": h}, CodeBadRequest},
		{"stream_open payload", M{"op": "stream_open", "handle": h, "header": pb}, "format"},
		{"stream_open k", M{"op": "stream_open", "handle": h, "header": hb, "k": 3}, CodeBadRequest},
		{"stream_open other model", M{"op": "stream_open", "handle": 77, "header": hb}, CodeUnknownHandle},
		{"stream_chunk unknown", M{"op": "stream_chunk", "stream": 1234}, CodeUnknownHandle},
		{"stream_chunk on a model handle", M{"op": "stream_chunk", "stream": h}, CodeUnknownHandle},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { fail(t, s, c.req, c.code) })
	}

	// The id is echoed in errors too; payload errors name their field.
	r := dec(t, s.Handle(enc(t, M{"op": "decode", "handle": h, "payload": pb[:len(pb)-3], "id": 42})))
	if num(r["id"]) != 42 || r["error"].(M)["field"] != "ids" {
		t.Fatalf("error response: %v", r)
	}

	// Stream errors and limits.
	sr := call(t, s, M{"op": "stream_open", "handle": h, "header": hb, "steps": 1})
	sh := num(sr["stream"])
	fail(t, s, M{"op": "stream_open", "handle": h, "header": hb}, CodeTooManyHandles)
	fail(t, s, M{"op": "stream_chunk", "stream": sh}, "stream") // nothing received yet
	fail(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": []byte{0x80}}, "missing")
	c2, _ := st.Chunks[1].AppendBinary(nil, &st.Header)
	fail(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": c2}, "stream") // gap
	fail(t, s, M{"op": "stream_chunk", "stream": sh, "chunk": c2, "steps": 9}, CodeBadRequest)
	if r := call(t, s, M{"op": "stream_chunk", "stream": sh, "decode": false}); num(r["received"]) != 0 {
		t.Fatalf("refused chunks changed the stream: %v", r)
	}

	// Model limit.
	call(t, s, M{"op": "open", "weights": c.weights, "vae_config": c.vae})
	fail(t, s, M{"op": "open", "weights": c.weights, "vae_config": c.vae}, CodeTooManyHandles)

	// Cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = dec(t, s.HandleContext(ctx, enc(t, M{"op": "decode", "handle": h, "payload": pb, "steps": 2})))
	if r["ok"] != false || r["error"].(M)["code"] != CodeCanceled {
		t.Fatalf("canceled decode: %v", r)
	}
}

// TestPanic checks that a panic inside an op becomes an "internal" error.
func TestPanic(t *testing.T) {
	s := New(Options{})
	testHook = func(r *request) {
		if r.Op == "info" {
			panic("shape mismatch")
		}
	}
	defer func() { testHook = nil }()
	e := fail(t, s, M{"op": "info", "handle": 1, "id": 3}, CodeInternal)
	if msg := e["message"].(string); msg != "flextok/service: internal: panic: shape mismatch" {
		t.Fatalf("message %q", msg)
	}
	call(t, s, M{"op": "version"}) // still serving
}

func TestErrorResponse(t *testing.T) {
	r := dec(t, ErrorResponse(CodeBadRequest, "flextok/wasm: want a Uint8Array"))
	if r["ok"] != false || r["error"].(M)["code"] != CodeBadRequest {
		t.Fatalf("%v", r)
	}
}

func TestConcurrent(t *testing.T) {
	s := New(Options{})
	h := openC1(t, s)
	pb := c1Payload(t, s, h)
	req := M{"op": "decode", "handle": h, "payload": pb, "k": 3, "steps": 1, "output": []string{"tensor"}}
	want := call(t, s, req)["tensor"].([]byte)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := dec(t, s.Handle(enc(t, req)))
			if !bytes.Equal(r["tensor"].([]byte), want) {
				t.Error("concurrent decode differs")
			}
		}()
	}
	wg.Wait()
}

// FuzzHandle: Handle never panics and always answers a decodable map with "ok", and an error
// with a code and a message when not ok.
func FuzzHandle(f *testing.F) {
	c := loadC1(f)
	arFixture(f)
	eng, err := engine.LoadBytes(c.weights, c.config, c.vae, engine.Options{})
	if err != nil {
		f.Fatal(err)
	}
	boot := New(Options{})
	h := openC1(f, boot)
	pb := c1Payload(f, boot, h)
	var p payload.Payload
	_ = payload.Unmarshal(pb, &p)
	st, _ := payload.Split(&p, []int{4})
	hb, _ := st.Header.AppendBinary(nil)
	cb, _ := st.Chunks[0].AppendBinary(nil, &st.Header)
	for _, m := range []M{
		{"op": "version", "id": 1},
		{"op": "info", "handle": 1},
		{"op": "close", "handle": 1},
		{"op": "open", "weights": []byte("x"), "name": "n"},
		{"op": "decode", "handle": 1, "payload": pb, "k": 2, "steps": 1, "output": []string{"png"}},
		{"op": "encode", "handle": 1, "image": testImage(4, 4), "k": 1},
		{"op": "stream_open", "handle": 1, "header": hb, "steps": 1},
		{"op": "stream_chunk", "stream": 2, "chunk": cb},
		{"op": "stream_chunk", "stream": 2, "decode": false},
		{"op": "stream_close", "stream": 2},
		// AR ops: handle 3 is the tiny AR checkpoint (a fictional tokenizer, so ar_open
		// beside c1 is refused), generation handles are given out from 4.
		{"op": "ar_open", "handle": 1, "config": tinyConfig, "weights": tinyW},
		{"op": "ar_open", "handle": 1, "config": tinyConfig, "weights": tinyW[:100]},
		{"op": "generate_open", "ar": 3, "class": "c1", "n": 2, "k": 3, "seed": 1, "cfg": 2.0, "temperature": 0.8, "top_k": 5, "top_p": 0.9},
		{"op": "generate_open", "ar": 3, "class": 4, "k": 16, "greedy": true},
		{"op": "generate_open", "ar": 3, "class": "c9", "k": 17, "top_p": 0.0, "temperature": -1.0},
		{"op": "generate_next", "generation": 4, "max": 2},
		{"op": "generate_close", "generation": 4},
		{"op": "close", "handle": 3},
	} {
		f.Add(enc(f, m))
	}
	f.Add([]byte{0x80})
	tinyM, err := ar.LoadBytes(tinyConfig, tinyW)
	if err != nil {
		f.Fatal(err)
	}
	tinyGen, err := ar.NewGenerator(tinyM, ar.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		s := New(Options{MaxSteps: 2, MaxImagePixels: 1 << 12})
		m := &model{x: eng, id: eng.Identity()}
		s.next++
		s.models[s.next] = m
		s.next++
		s.streams[s.next] = &stream{model: 1, m: m, s: payload.Stream{Header: st.Header}}
		s.next++
		s.ars[s.next] = &arModel{g: tinyGen, cfg: tinyGen.Model().Cfg}
		for _, b := range [][]byte{req, req} { // twice: state left by the first must not break the second
			var r M
			if err := msgpack.Unmarshal(s.Handle(b), &r); err != nil {
				t.Fatalf("undecodable response: %v", err)
			}
			ok, isBool := r["ok"].(bool)
			if !isBool {
				t.Fatalf("no ok: %v", r)
			}
			if !ok {
				e, _ := r["error"].(M)
				if code, _ := e["code"].(string); code == "" || e["message"] == "" {
					t.Fatalf("error without code or message: %v", r)
				}
			}
		}
	})
}

func TestOpenDefault(t *testing.T) {
	c := loadC1(t)
	if r := fail(t, New(Options{}), M{"op": "open"}, CodeBadRequest); r == nil {
		t.Fatal("no error")
	}
	named := bytes.Replace(c.config, []byte("{"), []byte(`{"name": "embedded",`), 1)
	s := New(Options{Default: &Checkpoint{Weights: c.weights, Config: named, VAEConfig: c.vae}})
	r := call(t, s, M{"op": "open"})
	if m, ok := r["model"].(M); !ok || m["name"] != "embedded" {
		t.Fatalf("open default: %v", r)
	}
	fail(t, s, M{"op": "open", "config": c.config}, CodeBadRequest)
}

// The name payloads carry comes from the model (its config, else its digest), never from a
// caller's default; a payload decodes on any handle of the same checkpoint whatever the names
// (the JavaScript openModel once named every model "model" and refused the CLI's payloads).
func TestOpenNameFromModel(t *testing.T) {
	c := loadC1(t)
	s := New(Options{})
	plain := call(t, s, M{"op": "open", "weights": c.weights, "config": c.config, "vae_config": c.vae})
	m := plain["model"].(M)
	digest := m["digest"].([]byte)
	if want := fmt.Sprintf("flextok-%x", digest[:6]); m["name"] != want {
		t.Errorf("name %v, want %s (from the digest)", m["name"], want)
	}
	renamed := call(t, s, M{"op": "open", "weights": c.weights, "config": c.config, "vae_config": c.vae, "name": "mine"})
	if rm := renamed["model"].(M); rm["name"] != "mine" || !bytes.Equal(rm["digest"].([]byte), digest) {
		t.Errorf("open with a name: %v", rm)
	}
	// A payload of the same checkpoint made elsewhere under another name decodes on both.
	eng, err := engine.LoadBytes(c.weights, c.config, c.vae, engine.Options{Name: "c1_w32_zero_e2"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := eng.Encode(context.Background(), image.NewGray(image.Rect(0, 0, 32, 32)), engine.EncodeOptions{K: 2})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.MarshalBinary()
	for _, h := range []any{plain["handle"], renamed["handle"]} {
		call(t, s, M{"op": "decode", "handle": h, "payload": b, "steps": 1})
	}
	p.Model.Digest[0] ^= 1
	b, _ = p.MarshalBinary()
	if r := fail(t, s, M{"op": "decode", "handle": plain["handle"], "payload": b, "steps": 1}, "model_mismatch"); r["field"] != "model" {
		t.Errorf("mismatch error %v, want field model", r)
	}
}

// TestAnnouncedLengths: a string or binary announcing more bytes than the request holds is
// refused as truncated before anything of that size is allocated (a 45-byte request once made
// the service allocate 4 GB, found by FuzzHandle).
func TestAnnouncedLengths(t *testing.T) {
	s := New(Options{})
	for name, req := range map[string][]byte{
		"bin32 payload": append([]byte("\x82\xa2op\xa6decode\xa7payload\xc6\xfa\x86\xa6\x66"), "fo"...),
		"str32 key":     []byte("\x81\xdb\xff\xff\xff\xf0op"),
		"str32 value":   []byte("\x81\xa2op\xdb\xff\xff\xff\xf0decode"),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var r M
		if err := msgpack.Unmarshal(s.Handle(req), &r); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		e, _ := r["error"].(M)
		if r["ok"] != false || e["code"] != CodeBadRequest {
			t.Errorf("%s: %v", name, r)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("%s: %d bytes allocated for a %d-byte request", name, d, len(req))
		}
	}
}

// TestSizes: "size" on encode and decode has the Go API's meaning (EncodeOptions.Size,
// DecodeOptions.Size): the payload records the size it was encoded at and decodes at it; sizes
// the model does not run at are bad requests.
func TestSizes(t *testing.T) {
	s := New(Options{})
	c := loadC1(t)
	h := num(call(t, s, M{"op": "open", "weights": c.weights, "config": c.config, "vae_config": c.vae})["handle"])
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewNRGBA(image.Rect(0, 0, 40, 40))); err != nil {
		t.Fatal(err)
	}
	p := call(t, s, M{"op": "encode", "handle": h, "image": buf.Bytes(), "size": 24})["payload"].([]byte)
	r := call(t, s, M{"op": "decode", "handle": h, "payload": p, "steps": 1})
	if num(r["width"]) != 24 || num(r["height"]) != 24 || len(r["rgba"].([]byte)) != 24*24*4 {
		t.Fatalf("decode of a 24 px payload: %v x %v", r["width"], r["height"])
	}
	r = call(t, s, M{"op": "decode", "handle": h, "payload": p, "steps": 1, "size": 16})
	if num(r["width"]) != 16 {
		t.Fatalf("decode at size 16: width %v", r["width"])
	}
	fail(t, s, M{"op": "encode", "handle": h, "image": buf.Bytes(), "size": 30}, CodeBadRequest)
	fail(t, s, M{"op": "decode", "handle": h, "payload": p, "steps": 1, "size": 64}, CodeBadRequest)
}
