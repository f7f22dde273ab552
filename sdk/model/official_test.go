package model

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOfficialTiny loads every tiny checkpoint written by the official code
// (conformance/testdata/official/<case>), if present.
func TestOfficialTiny(t *testing.T) {
	root := filepath.Join("..", "..", "conformance", "testdata", "official")
	cases, err := os.ReadDir(root)
	if err != nil {
		t.Skip("no official testdata:", err)
	}
	n := 0
	for _, c := range cases {
		dir := filepath.Join(root, c.Name())
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
			continue
		}
		n++
		t.Run(c.Name(), func(t *testing.T) {
			m, err := LoadFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Weights.Close()
			if len(m.Report.Unexpected) > 0 {
				t.Errorf("unexpected tensors: %v", m.Report.Unexpected)
			}
			// The config.json beside it must give the same architecture.
			cfgJSON, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			vaeJSON, _ := os.ReadFile(filepath.Join(dir, "vae", "config.json"))
			cj, err := ParseConfigJSON(cfgJSON, vaeJSON)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := Summarize(m).Architecture, Summarize(&Model{Config: cj, Report: m.Report}).Architecture; a != b {
				t.Errorf("metadata and config.json differ:\n%s\n%s", a, b)
			}
			t.Log(Summarize(m).Architecture)
		})
	}
	if n == 0 {
		t.Skip("no official checkpoints")
	}
}
