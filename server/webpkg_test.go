package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// testWebChunkSHA is the SHA-256 of chunk decoder.onnx.data.part001 of testWebPackage.
var testWebChunkSHA = func() string {
	s := sha256.Sum256(testWebData()[webpkg.MinChunkSize : 2*webpkg.MinChunkSize])
	return hex.EncodeToString(s[:])
}()

func testWebData() []byte {
	b := make([]byte, 3*webpkg.MinChunkSize+100)
	for i := range b {
		b[i] = byte(i * 31 >> 3)
	}
	return b
}

var (
	webOnce sync.Once
	webDir  string
)

// writeTestWebPackage writes a small package (bytes standing for the graphs: the server does
// not read them) into dir and returns its manifest.
func writeTestWebPackage(t testing.TB, dir string) *webpkg.Manifest {
	t.Helper()
	m := &webpkg.Manifest{
		Format: webpkg.Format, Version: webpkg.Version, Exporter: "test", Opset: 17,
		Model: webpkg.Model{Name: "tiny", Digest: strings.Repeat("cd", 32), Levels: []int{8, 8, 8, 5, 5, 5}, MaxTokens: 32},
		Sizes: webpkg.Sizes{Height: 32, Width: 32, C: 4, H: 8, W: 8, R: 32, D: 6},
		Graphs: map[string]webpkg.Graph{
			webpkg.RoleDecoder:    {Graph: "decoder.onnx", Data: "decoder.onnx.data", Precision: webpkg.FP32},
			webpkg.RoleVAEDecoder: {Graph: "vae_decoder.onnx", Data: "vae_decoder.onnx.data", Precision: webpkg.FP32},
		},
		Files: map[string]webpkg.File{},
	}
	data := testWebData()
	for name, b := range map[string][]byte{"decoder.onnx": []byte("graph"), "decoder.onnx.data": data, "vae_decoder.onnx": []byte("vae"), "vae_decoder.onnx.data": data[:100]} {
		f, err := webpkg.Split(name, bytes.NewReader(b), int64(len(b)), webpkg.MinChunkSize, func(c string, b []byte) error {
			return os.WriteFile(filepath.Join(dir, c), b, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Files[name] = f
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, webpkg.ManifestName), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func testWebPackage(t testing.TB) *WebPackage {
	t.Helper()
	webOnce.Do(func() {
		d, err := os.MkdirTemp("", "flextok-webpkg-test-")
		if err != nil {
			t.Fatal(err)
		}
		writeTestWebPackage(t, d)
		webDir = d
	})
	p, err := OpenWebPackage(webDir, true)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if webDir != "" {
		os.RemoveAll(webDir)
	}
	os.Exit(code)
}

// TestWebPackage: the manifest and the chunks are served with strong ETags, the caching the
// URL allows (immutable only when ?sha256= names the chunk's hash), ranges and 304s.
func TestWebPackage(t *testing.T) {
	p := testWebPackage(t)
	s := newTest(t, Config{WebPackage: p, CORSOrigins: []string{"*"}})
	rec := do(s, "GET", "/v1/web-package/manifest.json", "", nil, nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("manifest: %d %v", rec.Code, rec.Header())
	}
	man, err := webpkg.Parse(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	etag := rec.Header().Get("ETag")
	if s := sha256.Sum256(rec.Body.Bytes()); etag != `"`+hex.EncodeToString(s[:])+`"` {
		t.Fatalf("manifest ETag %s", etag)
	}
	if rec := do(s, "GET", "/v1/web-package/manifest.json", "", nil, map[string]string{"If-None-Match": etag}); rec.Code != 304 {
		t.Fatalf("manifest If-None-Match: %d", rec.Code)
	}
	data := testWebData()
	for i, c := range man.Files["decoder.onnx.data"].Chunks {
		url := "/v1/web-package/" + c.Name
		rec := do(s, "GET", url+"?sha256="+c.SHA256, "", nil, map[string]string{"Origin": "http://elsewhere"})
		want := data[i*webpkg.MinChunkSize : min(len(data), (i+1)*webpkg.MinChunkSize)]
		h := rec.Header()
		if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), want) {
			t.Fatalf("%s: %d, %d bytes", c.Name, rec.Code, rec.Body.Len())
		}
		if h.Get("ETag") != `"`+c.SHA256+`"` || h.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
			h.Get("Content-Type") != "application/octet-stream" || h.Get("Accept-Ranges") != "bytes" || h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: headers %v", c.Name, h)
		}
		if rec := do(s, "GET", url, "", nil, nil); rec.Code != 200 || rec.Header().Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s without ?sha256: %d %v", c.Name, rec.Code, rec.Header())
		}
		if rec := do(s, "GET", url, "", nil, map[string]string{"If-None-Match": `"` + c.SHA256 + `"`}); rec.Code != 304 {
			t.Fatalf("%s If-None-Match: %d", c.Name, rec.Code)
		}
		rec = do(s, "GET", url, "", nil, map[string]string{"Range": "bytes=10-19"})
		if rec.Code != 206 || !bytes.Equal(rec.Body.Bytes(), want[10:20]) || rec.Header().Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(want)) {
			t.Fatalf("%s range: %d %v %q", c.Name, rec.Code, rec.Header(), rec.Body)
		}
		if rec := do(s, "GET", url, "", nil, map[string]string{"Range": "bytes=999999-"}); rec.Code != 416 {
			t.Fatalf("%s range past the end: %d", c.Name, rec.Code)
		}
		if rec := do(s, "HEAD", url, "", nil, nil); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != fmt.Sprint(len(want)) {
			t.Fatalf("%s HEAD: %d %v", c.Name, rec.Code, rec.Header())
		}
	}
	for _, tc := range []struct {
		method, target string
		status         int
	}{
		{"POST", "/v1/web-package/manifest.json", 405},
		{"GET", "/v1/web-package/decoder.onnx.data", 404}, // the whole file is not served: its chunks are
		{"GET", "/v1/web-package/", 404},
		{"GET", "/v1/web-package/sub/decoder.onnx", 404},
	} {
		rec := do(s, tc.method, tc.target, "", nil, nil)
		var eb apiErrorBody
		if rec.Code != tc.status || json.Unmarshal(rec.Body.Bytes(), &eb) != nil || eb.Error.Message == "" {
			t.Errorf("%s %s: %d %s, want %d with a JSON error", tc.method, tc.target, rec.Code, rec.Body, tc.status)
		}
	}
}

// TestOpenWebPackage: a package with a missing, short or altered chunk or a bad manifest is
// refused with an error naming what is wrong.
func TestOpenWebPackage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		verify bool
		want   string
	}{
		{"missing chunk", func(d string) { os.Remove(filepath.Join(d, "decoder.onnx.data.part002")) }, false, "decoder.onnx.data.part002"},
		{"short chunk", func(d string) { os.WriteFile(filepath.Join(d, "vae_decoder.onnx"), []byte("va"), 0o644) }, false, "vae_decoder.onnx: 2 bytes, the manifest says 3"},
		{"altered chunk", func(d string) { os.WriteFile(filepath.Join(d, "vae_decoder.onnx"), []byte("VAE"), 0o644) }, true, "vae_decoder.onnx: sha256"},
		{"bad manifest", func(d string) { os.WriteFile(filepath.Join(d, "manifest.json"), []byte(`{"format":"x"}`), 0o644) }, false, `invalid web package manifest: format: "x"`},
		{"no manifest", func(d string) { os.Remove(filepath.Join(d, "manifest.json")) }, false, "manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestWebPackage(t, dir)
			if _, err := OpenWebPackage(dir, true); err != nil {
				t.Fatal(err)
			}
			tc.damage(dir)
			if _, err := OpenWebPackage(dir, tc.verify); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestWebPackageSlowClient: a chunk larger than the socket buffers reaches a client that reads
// it more slowly than the http.Server's write timeout allows: its response has its own
// deadline (MinChunkRate).
func TestWebPackageSlowClient(t *testing.T) {
	if testing.Short() {
		t.Skip("writes an 8 MiB chunk and reads it for about a second")
	}
	dir := t.TempDir()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	m := writeTestWebPackage(t, dir)
	f, err := webpkg.Split("big.data", bytes.NewReader(data), int64(len(data)), int64(len(data)), func(c string, b []byte) error {
		return os.WriteFile(filepath.Join(dir, c), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Files["big.data"] = f
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, webpkg.ManifestName), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := OpenWebPackage(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	s := newTest(t, Config{WebPackage: p})
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/web-package/big.data?sha256=" + f.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v (the write timeout cut the chunk off)", len(got), err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want %d", len(got), len(data))
	}
}
