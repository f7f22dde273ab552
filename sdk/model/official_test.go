package model

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// A checkpoint whose config names a VAE by hf_hub_path is refused when that VAE's config.json is
// missing: its GroupNorm group count is not in the weights (a guessed one gives wrong latents
// with no error). The error names the file and where to put it.
func TestMissingVAEConfigRefused(t *testing.T) {
	src := filepath.Join("..", "..", "conformance", "testdata", "official", "c1_w32_zero_e2")
	dir := t.TempDir()
	for _, f := range []string{"model.safetensors", "config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Skip("no official testdata:", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadFile(dir)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("LoadFile without vae/config.json: %v, want ErrConfig", err)
	}
	for _, want := range []string{`"vae"`, "vae/config.json", "norm_num_groups"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// With the file in place it loads.
	b, _ := os.ReadFile(filepath.Join(src, "vae", "config.json"))
	os.Mkdir(filepath.Join(dir, "vae"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "vae", "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Weights.Close()
}
