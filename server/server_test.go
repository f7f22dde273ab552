package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"

	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

var (
	engOnce sync.Once
	eng     *engine.Engine
	engErr  error
)

func testEngine(t testing.TB) *engine.Engine {
	engOnce.Do(func() { eng, engErr = models.LoadDefault(engine.DefaultOptions()) })
	if engErr != nil {
		t.Fatal(engErr)
	}
	return eng
}

func newTest(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Models == nil {
		e := testEngine(t)
		cfg.Models = []Model{{Name: "default", Exec: e, AR: testAR(t)}, {Name: "second", Exec: e}}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func samplePNG(t testing.TB) []byte {
	b, err := os.ReadFile("../testdata/heldout/000_cross.png")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bombPNG is a valid PNG header (and one tiny IDAT) declaring w×h pixels: the issue's
// 6 KB file that declares 8000×6000.
func bombPNG(w, h uint32) []byte {
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.Gray{Y: 200})
	png.Encode(&buf, img)
	b := buf.Bytes()
	// IHDR data starts at 16: width, height; its CRC covers the type and the data (12..29).
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return append(b, make([]byte, 6000)...)
}

func samplePayload(t testing.TB) []byte {
	e := testEngine(t)
	s := newTest(t, Config{Models: []Model{{Name: "m", Exec: e}}})
	rec := do(s, "POST", "/v1/encode", "image/png", samplePNG(t), nil)
	if rec.Code != 200 {
		t.Fatalf("encode: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

func do(s *Server, method, target, ct string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func multipartBody(t testing.TB, fields map[string]string, img []byte) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if img != nil {
		fw, _ := mw.CreateFormFile("image", "x.png")
		fw.Write(img)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

type apiErrorBody struct {
	Error struct {
		Code, Message, Field, Limit string
	}
}

func TestEncodeDecode(t *testing.T) {
	s := newTest(t, Config{})
	img := samplePNG(t)
	rec := do(s, "POST", "/v1/encode?k=8", "image/png", img, map[string]string{"X-Request-Id": "abc-1"})
	if rec.Code != 200 || rec.Header().Get("Content-Type") != MsgpackType || rec.Header().Get("X-Request-Id") != "abc-1" {
		t.Fatalf("encode: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	var p payload.Payload
	if err := payload.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.IDs) != 8 {
		t.Fatalf("payload: %v, %d ids", err, len(p.IDs))
	}
	// The same through multipart, as curl -F sends it, with the JSON view.
	ct, body := multipartBody(t, map[string]string{"k": "8"}, img)
	rec = do(s, "POST", "/v1/encode", ct, body, map[string]string{"Accept": "application/json"})
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("multipart encode: %d %s", rec.Code, rec.Body)
	}
	want, _ := p.JSON()
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatalf("JSON view differs:\n%s\n%s", rec.Body, want)
	}
	b, _ := p.MarshalBinary()
	rec = do(s, "POST", "/v1/decode?model=second&steps=2&seed=3", MsgpackType, b, nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/png" {
		t.Fatalf("decode: %d %s", rec.Code, rec.Body)
	}
	got, err := png.Decode(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := testEngine(t).DecodeImage(context.Background(), &p, engine.DecodeOptions{Steps: 2, Seed: 3, Guidance: testEngine(t).DefaultDecodeOptions(&p).Guidance, APG: testEngine(t).DefaultDecodeOptions(&p).APG})
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != ref.Bounds() {
		t.Fatalf("bounds %v, want %v", got.Bounds(), ref.Bounds())
	}
	for y := ref.Rect.Min.Y; y < ref.Rect.Max.Y; y++ {
		for x := ref.Rect.Min.X; x < ref.Rect.Max.X; x++ {
			if color.NRGBAModel.Convert(got.At(x, y)) != ref.NRGBAAt(x, y) {
				t.Fatalf("pixel (%d, %d): the served PNG differs from the engine's decode", x, y)
			}
		}
	}
}

func TestModels(t *testing.T) {
	s := newTest(t, Config{})
	rec := do(s, "GET", "/v1/models", "", nil, nil)
	var out struct {
		Models []modelInfo `json:"models"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	if len(out.Models) != 2 || out.Models[0].Name != "default" || !out.Models[0].Default || out.Models[1].Default {
		t.Fatalf("%+v", out.Models)
	}
	m := out.Models[0]
	id := testEngine(t).Identity()
	if m.MaxTokens != 32 || m.Identity.MaxTokens != 32 || len(m.Identity.Digest) != 64 || m.Identity.CodebookSize != id.CodebookSize() || m.ImageSize != [2]int{32, 32} {
		t.Fatalf("%+v", m)
	}
}

func TestConfigErrors(t *testing.T) {
	e := testEngine(t)
	for _, c := range []Config{{}, {Models: []Model{{Name: "a b", Exec: e}}}, {Models: []Model{{Name: "a", Exec: e}, {Name: "a", Exec: e}}}, {Models: []Model{{Name: "a"}}}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

func TestCORSAndHeaders(t *testing.T) {
	s := newTest(t, Config{CORSOrigins: []string{"https://app.example"}, COOP: "same-origin", COEP: "require-corp"})
	rec := do(s, "OPTIONS", "/v1/encode", "", nil, map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
	h := rec.Header()
	if rec.Code != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", rec.Code, h)
	}
	rec = do(s, "GET", "/healthz", "", nil, map[string]string{"Origin": "https://evil.example"})
	if rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Header().Get("Cross-Origin-Embedder-Policy") != "require-corp" || rec.Header().Get("Cross-Origin-Opener-Policy") != "same-origin" {
		t.Fatalf("headers: %v", rec.Header())
	}
	if id := rec.Header().Get("X-Request-Id"); len(id) != 16 {
		t.Fatalf("request id %q", id)
	}
}

func TestMetrics(t *testing.T) {
	s := newTest(t, Config{})
	do(s, "POST", "/v1/encode", "image/png", samplePNG(t), nil)
	do(s, "POST", "/v1/encode", "text/plain", []byte("x"), nil)
	rec := do(s, "GET", "/metrics", "", nil, nil)
	body := rec.Body.String()
	for _, want := range []string{
		`flextok_http_requests_total{code="200",route="/v1/encode"} 1`,
		`flextok_http_requests_total{code="415",route="/v1/encode"} 1`,
		`flextok_images_total{model="default",op="encode"} 1`,
		`flextok_tokens_total{model="default",op="encode"} 32`,
		`flextok_http_request_duration_seconds_bucket{route="/v1/encode"`,
		"flextok_queue_depth 0", "flextok_http_in_flight_requests 1", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestDrain(t *testing.T) {
	s := newTest(t, Config{})
	if rec := do(s, "GET", "/readyz", "", nil, nil); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	s.Drain()
	if rec := do(s, "GET", "/readyz", "", nil, nil); rec.Code != 503 {
		t.Fatal(rec.Code)
	}
	if rec := do(s, "GET", "/healthz", "", nil, nil); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	if rec := do(s, "POST", "/v1/encode", "image/png", samplePNG(t), nil); rec.Code != 503 {
		t.Fatal(rec.Code)
	}
}

// TestGracefulShutdown: a request in flight when the server drains finishes; a new one is
// refused.
func TestGracefulShutdown(t *testing.T) {
	s := newTest(t, Config{MaxConcurrent: 1})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	// Hold the only work slot so the first request waits in the queue.
	s.adm.enter()
	if err := s.adm.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := make(chan int, 1)
	go func() {
		r, err := http.Post(ts.URL+"/v1/encode", "image/png", bytes.NewReader(samplePNG(t)))
		if err != nil {
			res <- -1
			return
		}
		r.Body.Close()
		res <- r.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.adm.waiting.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s.Drain()
	r, err := http.Post(ts.URL+"/v1/encode", "image/png", bytes.NewReader(samplePNG(t)))
	if err != nil || r.StatusCode != 503 {
		t.Fatalf("new request while draining: %v %v", r, err)
	}
	r.Body.Close()
	s.adm.release()
	s.adm.leave()
	if got := <-res; got != 200 {
		t.Fatalf("in-flight request: %d", got)
	}
}

// otherModelPayload is the sample payload with another model's digest.
func otherModelPayload(t testing.TB) []byte {
	var p payload.Payload
	if err := payload.Unmarshal(samplePayload(t), &p); err != nil {
		t.Fatal(err)
	}
	p.Model.Digest[0] ^= 0xff
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shortPayload is the sample payload cut to 4 tokens.
func shortPayload(t testing.TB) []byte {
	var p payload.Payload
	if err := payload.Unmarshal(samplePayload(t), &p); err != nil {
		t.Fatal(err)
	}
	p.IDs = p.IDs[:4]
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
