package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native/onnx"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// TestExportWeb: export-web writes a package of the default model whose manifest parses, names
// the default model and reassembles file by file to the listed hashes; it refuses to overwrite
// without --force and refuses bad flags with a usage error.
func TestExportWeb(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web")
	out, err := run("export-web", "-o", dir, "--fp16", "--chunk-size", "128KiB")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, "decoder_fp16") || !strings.Contains(out, "manifest.json") {
		t.Errorf("output %q", out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := webpkg.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.Default().Model()
	if err != nil {
		t.Fatal(err)
	}
	id, err := engine.NewIdentity(m, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := man.Identity(); !got.Equal(&id.Model) {
		t.Fatalf("identity %+v, want the default model's %+v", got, id.Model)
	}
	if len(man.Graphs) != 3 || man.Files["decoder.onnx.data"].Chunks[0].Size != 128<<10 {
		t.Fatalf("graphs %v, decoder data %+v", man.Graphs, man.Files["decoder.onnx.data"])
	}
	for name, f := range man.Files {
		h := sha256.New()
		var n int64
		for _, c := range f.Chunks {
			b, err := os.ReadFile(filepath.Join(dir, c.Name))
			if err != nil {
				t.Fatal(err)
			}
			if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != c.SHA256 {
				t.Fatalf("chunk %s: hash differs from the manifest", c.Name)
			}
			h.Write(b)
			n += int64(len(b))
		}
		if hex.EncodeToString(h.Sum(nil)) != f.SHA256 || n != f.Size {
			t.Fatalf("file %s: reassembled hash or size differs from the manifest", name)
		}
	}
	if _, err := run("export-web", "-o", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second export without --force: %v, want a refusal naming --force", err)
	}
	if out, err := run("export-web", "-o", dir, "--force"); err != nil {
		t.Fatalf("--force: %v: %s", err, out)
	}
	for _, args := range [][]string{
		{"export-web"},
		{"export-web", "-o", dir, "--chunk-size", "12"},
		{"export-web", "-o", dir, "--chunk-size", "lots"},
		{"export-web", "-o", dir, "--size", "-3"},
	} {
		_, err := run(args...)
		if _, ok := err.(usageError); !ok {
			t.Errorf("%v: %v (%T), want a usage error", args, err, err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "32MiB": 32 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "2048B": 2048} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "1.5MiB", "MiB", "9999999999GiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
}

// TestServeWebPackageRefusals: serve --web-package DIR refuses a package exported from another
// model than the one it serves, a missing directory and a damaged chunk, before listening.
func TestServeWebPackageRefusals(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other")
	if out, err := run("export-web", "-m", "../../conformance/testdata/official/c1_w32_zero_e2", "-o", other, "--chunk-size", "64KiB"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	mine := filepath.Join(t.TempDir(), "mine")
	if out, err := run("export-web", "-o", mine, "--chunk-size", "64KiB"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(mine, "vae_decoder.onnx.data.part000"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		other:                        "exported from model",
		filepath.Join(other, "nope"): "no such file",
		mine:                         "vae_decoder.onnx.data.part000: sha256",
	} {
		_, err := run("serve", "--addr", "127.0.0.1:0", "--samples", "none", "--ar", "none", "--web-package", dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--web-package %s: %v, want an error saying %q", dir, err, want)
		}
	}
}

// TestServeWebPackageAuto: --web-package auto builds the first model's package into the cache
// (removing a stale staging directory a killed export left, keeping a fresh one), then reuses
// it without exporting again; none serves none.
func TestServeWebPackageAuto(t *testing.T) {
	m, err := models.Default().Model()
	if err != nil {
		t.Fatal(err)
	}
	id, err := engine.NewIdentity(m, "")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	f := &webFlags{pkg: "auto", cache: cache, fp16: true}
	sub := fmt.Sprintf("%.32s-e%s-fp16-c%d", hex.EncodeToString(id.Digest[:]), onnx.ExporterVersion, webpkg.DefaultChunkSize)
	stale, fresh := filepath.Join(cache, sub, ".flextok-web-1"), filepath.Join(cache, sub, ".flextok-web-2")
	for _, d := range []string{stale, fresh} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	p, err := openWebPackage(f, "", id.Model, log)
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir() != filepath.Join(cache, sub) || p.Manifest.Model.Digest != hex.EncodeToString(id.Digest[:]) || !p.Manifest.Sizes.FP16 {
		t.Fatalf("package %s: %+v", p.Dir(), p.Manifest.Model)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale staging directory is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a recent staging directory (an export in progress) was removed: %v", err)
	}
	// Reuse: the manifest is not written again.
	st1, _ := os.Stat(filepath.Join(p.Dir(), "manifest.json"))
	time.Sleep(20 * time.Millisecond)
	p2, err := openWebPackage(f, "", id.Model, log)
	if err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(filepath.Join(p2.Dir(), "manifest.json")); !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("the second start exported again instead of reusing the package")
	}
	if p, err := openWebPackage(&webFlags{pkg: "none"}, "", id.Model, log); p != nil || err != nil {
		t.Errorf("none: %v, %v", p, err)
	}
}
