package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/web"
)

const refModel = "../../conformance/testdata/official/c1_w32_zero_e2"

// fakeStatic stands for web/static after `make demo`, so the tests do not depend on it.
func fakeStatic() fstest.MapFS {
	return fstest.MapFS{
		"index.html":             {Data: []byte("<!doctype html><title>t</title>")},
		"demo.js":                {Data: []byte("export {};")},
		"demo.css":               {Data: []byte("body{}")},
		"dist/browser.js":        {Data: []byte("export {};")},
		"dist/msgpack/index.mjs": {Data: []byte("export {};")},
		"dist/flextok.wasm":      {Data: []byte("\x00asm\x01\x00\x00\x00")},
		"dist/wasm_exec.js":      {Data: []byte("globalThis.Go = class {};")},
		"dist/worker.js":         {Data: []byte("export {};")},
	}
}

// newTestServer serves the reference model with two samples.
func newTestServer(t *testing.T) (*httptest.Server, *engine.Engine) {
	t.Helper()
	e, err := engine.Load(refModel, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"000_cross.png", "003_circle.png"} {
		b, err := os.ReadFile("../../testdata/heldout/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(dir+"/notes.txt", []byte("not an image"), 0o644)
	samples, err := encodeSamples(context.Background(), e, os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newServer(serveConfig{
		engine: e, modelName: e.Identity().Name, files: modelFilePaths(refModel),
		samples: samples, maxUpload: 64 << 10, static: fakeStatic(),
	}))
	t.Cleanup(srv.Close)
	return srv, e
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestServeContentTypes(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, c := range []struct{ path, ctype string }{
		{"/", "text/html; charset=utf-8"},
		{"/index.html", "text/html; charset=utf-8"},
		{"/demo.js", "text/javascript; charset=utf-8"},
		{"/demo.css", "text/css; charset=utf-8"},
		{"/dist/flextok.wasm", "application/wasm"},
		{"/dist/wasm_exec.js", "text/javascript; charset=utf-8"},
		{"/dist/worker.js", "text/javascript; charset=utf-8"},
		{"/dist/msgpack/index.mjs", "text/javascript; charset=utf-8"},
		{"/healthz", "application/json"},
		{"/demo.json", "application/json"},
		{"/samples/", "application/json"},
		{"/samples/000_cross.msgpack", "application/vnd.msgpack"},
		{"/samples/000_cross", "application/vnd.msgpack"},
		{"/model/model.safetensors", "application/octet-stream"},
		{"/model/config.json", "application/json"},
		{"/model/vae/config.json", "application/json"},
	} {
		resp, _ := get(t, srv.URL+c.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("GET %s: %d %q, want 200 %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "'wasm-unsafe-eval'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q", c.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", c.path)
		}
	}
}

func TestServeHealthzAndDemo(t *testing.T) {
	srv, e := newTestServer(t)
	_, b := get(t, srv.URL+"/healthz")
	var h struct {
		Status  string
		Model   string
		Samples int
		Assets  bool
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Model != e.Identity().Name || h.Samples != 2 {
		t.Errorf("/healthz = %s", b)
	}
	_, b = get(t, srv.URL+"/demo.json")
	var d demoInfo
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Model == nil || d.Model.Name != e.Identity().Name || d.Model.MaxTokens != 32 || d.Model.Height != 32 ||
		!strings.HasPrefix(d.Model.Weights, "/model/model.safetensors?v=") || !strings.HasPrefix(d.Model.VAEConfig, "/model/vae/config.json?v=") || !d.Encode {
		t.Errorf("/demo.json = %s", b)
	}
	// The URLs the page gets work as they are (the query is only a cache key).
	resp, w := get(t, srv.URL+d.Model.Weights)
	want, _ := os.ReadFile(refModel + "/model.safetensors")
	if resp.StatusCode != 200 || !bytes.Equal(w, want) {
		t.Errorf("GET %s: %d, %d bytes, want the weights", d.Model.Weights, resp.StatusCode, len(w))
	}
}

func TestServeSamples(t *testing.T) {
	srv, e := newTestServer(t)
	_, b := get(t, srv.URL+"/samples/")
	var list []sample
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "000_cross" || list[1].Name != "003_circle" || list[0].URL != "/samples/000_cross.msgpack" {
		t.Fatalf("/samples/ = %s", b)
	}
	_, pb := get(t, srv.URL+list[1].URL)
	if len(pb) != list[1].Bytes {
		t.Errorf("%s: %d bytes, listed %d", list[1].URL, len(pb), list[1].Bytes)
	}
	var p payload.Payload
	if err := payload.Unmarshal(pb, &p); err != nil {
		t.Fatal(err)
	}
	id := e.Identity()
	if !p.Model.Equal(&id) || len(p.IDs) != 32 {
		t.Errorf("sample payload: model %+v, %d ids", p.Model, len(p.IDs))
	}
	// The page shows each sample's image beside its reconstructions: the file as it was.
	if list[0].Image != "/samples/000_cross.png" {
		t.Fatalf("image URL %q", list[0].Image)
	}
	resp, img := get(t, srv.URL+list[0].Image)
	want, _ := os.ReadFile("../../testdata/heldout/000_cross.png")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !bytes.Equal(img, want) {
		t.Errorf("GET %s: %d %s, %d bytes", list[0].Image, resp.StatusCode, resp.Header.Get("Content-Type"), len(img))
	}
	if resp, _ := get(t, srv.URL+"/samples/000_cross.jpg"); resp.StatusCode != 404 {
		t.Errorf("GET /samples/000_cross.jpg: %d, want 404", resp.StatusCode)
	}
}

func TestServeNotFound(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, c := range []struct{ path, msg string }{
		{"/nope.html", "no such file"},
		{"/dist/", "no such file"},
		{"/samples/999_none.msgpack", `no sample "999_none"`},
		{"/model/other.bin", "has no file"},
		{"/model/../serve.go", ""},
	} {
		resp, b := get(t, srv.URL+c.path)
		if resp.StatusCode != 404 || !strings.Contains(string(b), c.msg) {
			t.Errorf("GET %s: %d %q, want 404 with %q", c.path, resp.StatusCode, b, c.msg)
		}
	}
	// Wrong method.
	resp, err := http.Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", resp.StatusCode)
	}
}

func TestServeWithoutModel(t *testing.T) {
	static := fakeStatic()
	delete(static, "dist/flextok.wasm")
	srv := httptest.NewServer(newServer(serveConfig{static: static, missing: []string{"dist/flextok.wasm"}}))
	defer srv.Close()
	for _, c := range []struct {
		path string
		code int
		msg  string
	}{
		{"/model/model.safetensors", 404, "flextok serve -m MODEL"},
		{"/samples/000_cross.msgpack", 404, "no samples"},
		{"/samples/", 200, "[]"},
		{"/dist/flextok.wasm", 404, "make demo"},
		{"/demo.json", 200, `"model": null`},
		{"/healthz", 200, `"assets": false`},
	} {
		resp, b := get(t, srv.URL+c.path)
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.msg) {
			t.Errorf("GET %s: %d %q, want %d with %q", c.path, resp.StatusCode, b, c.code, c.msg)
		}
	}
	resp, err := http.Post(srv.URL+"/encode", "image/png", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /encode without a model: %d", resp.StatusCode)
	}
}

func TestServeEncode(t *testing.T) {
	srv, _ := newTestServer(t)
	img, err := os.ReadFile("../../testdata/heldout/002_triangle.png")
	if err != nil {
		t.Fatal(err)
	}
	post := func(q string, body []byte) (*http.Response, []byte) {
		resp, err := http.Post(srv.URL+"/encode"+q, "image/png", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := post("?k=8", img)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != msgpackType {
		t.Fatalf("POST /encode: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var p payload.Payload
	if err := payload.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.IDs) != 8 {
		t.Errorf("k=8 gave %d ids", len(p.IDs))
	}
	// Over the upload limit (64 KiB here): 413, before decoding anything.
	big := append(append([]byte{}, img...), make([]byte, 65<<10)...)
	if resp, b := post("", big); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "over 65536 bytes") {
		t.Errorf("a large upload: %d %s", resp.StatusCode, b)
	}
	if resp, b := post("", []byte("not an image")); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("a bad image: %d %s", resp.StatusCode, b)
	}
	if resp, b := post("?k=99", img); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("k=99: %d %s", resp.StatusCode, b)
	}
}

// The embedded page exists, and Missing names exactly the dist files that are absent (all
// of them in a checkout without `make demo`).
func TestEmbeddedPage(t *testing.T) {
	for _, name := range []string{"index.html", "demo.js", "demo.css"} {
		f, err := web.Static().Open(name)
		if err != nil {
			t.Fatalf("web/static/%s not embedded: %v", name, err)
		}
		f.Close()
	}
	for _, m := range web.Missing() {
		if !strings.HasPrefix(m, "dist/") {
			t.Errorf("Missing lists %q", m)
		}
	}
}

// serve's -m is repeatable, each [NAME=]PATH; a path with '=' in a directory is a bare path.
func TestServeModelFlag(t *testing.T) {
	cmd, args, err := newRoot().Find([]string{"serve", "-m", "d18=/models/d18", "--model", "/data/a=b/model", "-m", "models/default"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	l, ok := cmd.Flags().Lookup("model").Value.(*modelList)
	if !ok {
		t.Fatalf("-m is a %T", cmd.Flags().Lookup("model").Value)
	}
	want := []modelEntry{{name: "d18", path: "/models/d18"}, {path: "/data/a=b/model"}, {path: "models/default"}}
	if len(l.entries) != len(want) {
		t.Fatalf("entries %v", l.entries)
	}
	for i := range want {
		if l.entries[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, l.entries[i], want[i])
		}
	}
	if err := l.Set("x="); err == nil {
		t.Error("an empty path was accepted")
	}
}

// TestServeDefaultAR: demo.json names the embedded default AR model, and its files are served
// under /dist/ar/ (where @flextok/sdk's openAR() looks) byte for byte, with an ETag.
func TestServeDefaultAR(t *testing.T) {
	srv, _ := newTestServer(t)
	_, b := get(t, srv.URL+"/demo.json")
	var d demoInfo
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	a := models.DefaultAR()
	if d.AR == nil || len(d.AR.Classes) != 8 || d.AR.MaxTokens != 32 || !d.AR.CFG ||
		!strings.HasPrefix(d.AR.Weights, "/dist/ar/model.safetensors?v=") || !strings.HasPrefix(d.AR.Config, "/dist/ar/config.json?v=") {
		t.Fatalf("/demo.json ar = %+v", d.AR)
	}
	for url, want := range map[string][]byte{d.AR.Weights: a.Weights, d.AR.Config: a.Config, "/dist/ar/model.safetensors": a.Weights} {
		resp, got := get(t, srv.URL+url)
		if resp.StatusCode != 200 || !bytes.Equal(got, want) || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: %d, %d bytes (want %d), ETag %q", url, resp.StatusCode, len(got), len(want), resp.Header.Get("ETag"))
		}
	}
	if resp, _ := get(t, srv.URL+"/dist/ar/other.bin"); resp.StatusCode != 404 {
		t.Errorf("GET /dist/ar/other.bin: %d", resp.StatusCode)
	}
}
