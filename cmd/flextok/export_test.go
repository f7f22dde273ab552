package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
