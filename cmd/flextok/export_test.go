package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/draw"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// TestExportONNX: export-onnx writes the three graphs and a manifest, refuses to overwrite
// them without --force, and replaces them with it.
func TestExportONNX(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "onnx")
	if out, err := run("export-onnx", "-o", dir); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, f := range []string{"encoder.onnx", "encoder.onnx.data", "decoder.onnx", "decoder.onnx.data", "vae_decoder.onnx", "vae_decoder.onnx.data"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	var man struct {
		Opset int `json:"opset"`
		Sizes struct {
			Tokens int `json:"tokens"`
		} `json:"sizes"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &man); err != nil || man.Opset != 17 || man.Sizes.Tokens != 32 {
		t.Fatalf("manifest %s: %v", data, err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "decoder.onnx"))
	if _, err := run("export-onnx", "-o", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second export without --force: %v, want a refusal naming --force", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "decoder.onnx"))
	if string(before) != string(after) {
		t.Fatal("the refused export changed decoder.onnx")
	}
	if out, err := run("export-onnx", "-o", dir, "--force"); err != nil {
		t.Fatalf("--force: %v: %s", err, out)
	}
}

// TestDecodeORT: decode --backend ort gives the Go engine's image up to float rounding (at
// most a few 8-bit levels on a few pixels).
func TestDecodeORT(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "in.png")
	writePNG(t, img, 40, 30)
	p := filepath.Join(dir, "in.msgpack")
	if out, err := run("encode", img, "-o", p); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	goPNG, ortPNG := filepath.Join(dir, "go.png"), filepath.Join(dir, "ort.png")
	if out, err := run("decode", p, "-o", goPNG, "-k", "8"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := run("decode", p, "-o", ortPNG, "-k", "8", "--backend", "ort", "--provider", "cpu", "--threads", "1"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	a, b := nrgba(readPNG(t, goPNG)), nrgba(readPNG(t, ortPNG))
	maxDiff, differ := 0, 0
	for i := range a.Pix {
		d := int(a.Pix[i]) - int(b.Pix[i])
		if d < 0 {
			d = -d
		}
		if d > 0 {
			differ++
		}
		maxDiff = max(maxDiff, d)
	}
	t.Logf("%d of %d 8-bit values differ, by at most %d", differ, len(a.Pix), maxDiff)
	// Measured: 0 of 4096 values differ. The bound allows what float rounding can do to a
	// 20-step decode (velocities agree to NMSE 1e-12; a value near a .5 boundary may round the
	// other way) without hiding a real difference.
	if maxDiff > 2 || differ > len(a.Pix)/20 {
		t.Errorf("ort image differs from go's in %d of %d values, by up to %d (bounds: 5%%, 2 levels)", differ, len(a.Pix), maxDiff)
	}
}

func nrgba(img image.Image) *image.NRGBA {
	n := image.NewNRGBA(img.Bounds())
	draw.Draw(n, n.Bounds(), img, img.Bounds().Min, draw.Src)
	return n
}

// TestServeEncodeORT: serve --backend ort encodes POST /encode in ONNX Runtime; the payload is
// the Go engine's (same model identity, same ids).
func TestServeEncodeORT(t *testing.T) {
	needORT(t)
	ef := &engineFlags{}
	b, err := openBackend(&backendFlags{backend: "ort", provider: "cpu"}, ef, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := httptest.NewServer(newServer(serveConfig{engine: b, modelName: b.Identity().Name, maxUpload: 1 << 20, static: fakeStatic()}))
	defer srv.Close()
	img, err := os.ReadFile("../../testdata/heldout/002_triangle.png")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL+"/encode", "image/png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /encode: %d %s", resp.StatusCode, body)
	}
	var got payload.Payload
	if err := payload.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	e, err := ef.load()
	if err != nil {
		t.Fatal(err)
	}
	dec, _, err := ftimage.DecodeBytes(img, ftimage.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Encode(context.Background(), dec, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Model.Equal(&want.Model) || len(got.IDs) != len(want.IDs) {
		t.Fatalf("ort payload %+v, go %+v", got, want)
	}
	for i := range want.IDs {
		if got.IDs[i] != want.IDs[i] {
			t.Errorf("token %d: ort %d, go %d", i, got.IDs[i], want.IDs[i])
		}
	}
}

// TestDecodeBatchCLI: decode --batch gives the PNGs of one-by-one decoding, byte for byte (the
// Go engine's batches are exact), for a directory of payloads with different lengths.
func TestDecodeBatchCLI(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"000_cross.png", "003_circle.png", "006_star.png"} {
		p := filepath.Join(dir, strings.TrimSuffix(name, ".png")+".msgpack")
		k := []string{"32", "4", "1"}[i]
		if out, err := run("encode", "../../testdata/heldout/"+name, "-o", p, "-k", k); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	one, two := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "two")
	if out, err := run("decode", dir, "-o", one+"/", "--batch", "1", "--steps", "3"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := run("decode", dir, "-o", two+"/", "--batch", "2", "--steps", "3"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ents, _ := os.ReadDir(one)
	if len(ents) != 3 {
		t.Fatalf("%d PNGs, want 3", len(ents))
	}
	for _, ent := range ents {
		a, _ := os.ReadFile(filepath.Join(one, ent.Name()))
		b, err := os.ReadFile(filepath.Join(two, ent.Name()))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: batched decode differs from one-by-one (%v)", ent.Name(), err)
		}
	}
	if _, err := run("decode", dir, "-o", two+"/", "--batch", "0"); err == nil || !strings.Contains(err.Error(), "--batch") {
		t.Errorf("--batch 0: %v", err)
	}
}
