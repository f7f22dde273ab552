package server

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// TestONNXRuntimeModel serves the default model twice, on the Go engine ("go") and in ONNX
// Runtime ("ort"), side by side in one server: /v1/encode gives the same payload on both
// (ids equal, docs/native.md), and a payload made by one decodes on the other. Skips without
// the library unless FLEXTOK_REQUIRE_ORT=1 (make test-go).
func TestONNXRuntimeModel(t *testing.T) {
	lib := os.Getenv("FLEXTOK_ORT_LIB")
	if lib == "" {
		lib, _ = filepath.Abs("../.deps/ort/libonnxruntime.so")
	}
	d := models.Default()
	b, err := native.LoadBytes(d.Weights, d.Config, d.VAEConfig, native.Options{LibraryPath: lib, Provider: native.ProviderCPU, IntraOpThreads: 1})
	if err != nil {
		if errors.Is(err, native.ErrNoCgo) {
			t.Skip("built without cgo")
		}
		if os.Getenv("FLEXTOK_REQUIRE_ORT") == "1" {
			t.Fatal(err)
		}
		t.Skipf("no ONNX Runtime: %v", err)
	}
	defer b.Close()
	s := newTest(t, Config{Models: []Model{{Name: "go", Exec: testEngine(t)}, {Name: "ort", Exec: b}}})
	img := samplePNG(t)
	var got [2][]byte
	for i, m := range []string{"go", "ort"} {
		rec := do(s, "POST", "/v1/encode?model="+m, "image/png", img, nil)
		if rec.Code != 200 {
			t.Fatalf("%s encode: %d %s", m, rec.Code, rec.Body)
		}
		got[i] = rec.Body.Bytes()
	}
	var pg, po payload.Payload
	if err := payload.Unmarshal(got[0], &pg); err != nil {
		t.Fatal(err)
	}
	if err := payload.Unmarshal(got[1], &po); err != nil {
		t.Fatal(err)
	}
	if !payload.Equal(&pg, &po) {
		t.Fatalf("payloads differ:\ngo  %v\nort %v", pg.IDs, po.IDs)
	}
	for _, m := range []string{"go", "ort"} {
		rec := do(s, "POST", "/v1/decode?steps=2&model="+m, MsgpackType, got[0], nil)
		if rec.Code != 200 || !bytes.HasPrefix(rec.Body.Bytes(), []byte("\x89PNG")) {
			t.Fatalf("%s decode: %d %s", m, rec.Code, rec.Body)
		}
	}
}
