//go:build cgo

package onnx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
	ort "github.com/yalue/onnxruntime_go"
)

// reassemble joins each file of the package in dir from its chunks, checking every chunk's and
// every file's size and SHA-256 against the manifest, and writes the files into out.
func reassemble(t *testing.T, man *webpkg.Manifest, dir, out string) {
	t.Helper()
	for name, f := range man.Files {
		var whole []byte
		for _, c := range f.Chunks {
			b, err := os.ReadFile(filepath.Join(dir, c.Name))
			if err != nil {
				t.Fatal(err)
			}
			if s := sha256.Sum256(b); int64(len(b)) != c.Size || hex.EncodeToString(s[:]) != c.SHA256 {
				t.Fatalf("chunk %s: %d bytes, sha256 %x; the manifest says %d, %s", c.Name, len(b), s, c.Size, c.SHA256)
			}
			whole = append(whole, b...)
		}
		if s := sha256.Sum256(whole); int64(len(whole)) != f.Size || hex.EncodeToString(s[:]) != f.SHA256 {
			t.Fatalf("file %s: reassembled %d bytes, sha256 %x; the manifest says %d, %s", name, len(whole), s, f.Size, f.SHA256)
		}
		if err := os.WriteFile(filepath.Join(out, name), whole, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runPath runs the graph at path (its external data beside it) in ONNX Runtime.
func runPath(t *testing.T, path string, in []input, output string) []float32 {
	t.Helper()
	names := make([]string, len(in))
	vals := make([]ort.Value, len(in))
	for i, x := range in {
		var v ort.Value
		var err error
		if x.i64 != nil {
			v, err = ort.NewTensor(ort.NewShape(x.shape...), x.i64)
		} else {
			v, err = ort.NewTensor(ort.NewShape(x.shape...), x.f32)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		names[i], vals[i] = x.name, v
	}
	s, err := ort.NewDynamicAdvancedSession(path, names, []string{output}, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer s.Destroy()
	out := []ort.Value{nil}
	if err := s.Run(vals, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer out[0].Destroy()
	return append([]float32(nil), out[0].(*ort.Tensor[float32]).GetData()...)
}

// TestExportWeb exports the default model's web package with small chunks, parses its
// manifest, reassembles every file from its chunks against the hashes, and runs the graphs in
// ONNX Runtime: the fp32 graphs are byte for byte export-onnx's and decode the same, bit for
// bit; the fp16 decoder stays within the decoder graph's fp16 bounds of the fp32 one.
func TestExportWeb(t *testing.T) {
	needORT(t)
	m := testModels(t)[0].m
	web, flat, native := t.TempDir(), t.TempDir(), t.TempDir()
	const chunk = 64 << 10
	man, err := ExportWeb(m, web, WebOptions{FP16: true, ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(web, webpkg.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := webpkg.Parse(raw)
	if err != nil {
		t.Fatalf("the exported manifest does not parse: %v", err)
	}
	if !reflect.DeepEqual(parsed, man) {
		t.Fatalf("manifest.json differs from the manifest ExportWeb returned")
	}
	id, err := engine.NewIdentity(m, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Identity(); !got.Equal(&id.Model) || got.Name != id.Name {
		t.Fatalf("identity %+v, the engine's %+v", got, id.Model)
	}
	if !reflect.DeepEqual(parsed.Hints(), m.Hints) {
		t.Fatalf("hints %+v, the model's %+v", parsed.Hints(), m.Hints)
	}
	s, _ := ModelSizes(m.Config, 0)
	if ws := parsed.Sizes; ws.Height != s.Height || ws.C != s.C || ws.H != s.H || ws.W != s.W || ws.R != s.R || ws.D != s.D || !ws.FP16 {
		t.Fatalf("sizes %+v, the model's %+v", ws, s)
	}
	// The directory holds the chunks and the manifest, nothing else (no temporaries).
	want := map[string]bool{webpkg.ManifestName: true}
	multi := 0
	for _, f := range parsed.Files {
		for _, c := range f.Chunks {
			want[c.Name] = true
		}
		if len(f.Chunks) > 1 {
			multi++
		}
		for _, c := range f.Chunks[:len(f.Chunks)-1] {
			if c.Size != chunk {
				t.Errorf("chunk %s: %d bytes, want %d", c.Name, c.Size, chunk)
			}
		}
	}
	if multi == 0 {
		t.Fatal("no file was split: the test chunk size is too large to test chunking")
	}
	ents, _ := os.ReadDir(web)
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("unexpected file %s in the package", e.Name())
		}
		delete(want, e.Name())
	}
	if len(want) > 0 {
		t.Errorf("missing from the package: %v", want)
	}
	reassemble(t, parsed, web, flat)

	if _, err := ExportAll(m, "x", [32]byte{}, 0, native, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"decoder.onnx", "decoder.onnx.data", "vae_decoder.onnx", "vae_decoder.onnx.data"} {
		a, _ := os.ReadFile(filepath.Join(flat, f))
		b, _ := os.ReadFile(filepath.Join(native, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the web package's differs from export-onnx's (%d and %d bytes)", f, len(a), len(b))
		}
	}

	// Decode in ONNX Runtime from the reassembled files and from export-onnx's.
	const n = 3
	rng := flow.NewNormal(5, 0)
	per := s.C * s.H * s.W
	xs := make([]float32, n*per)
	rng.Fill(xs)
	ids := make([]int64, n*s.R)
	for i := range ids {
		ids[i] = int64(rng.Uint64() % 64000)
	}
	dec := []input{
		{name: InX, shape: []int64{n, int64(s.C), int64(s.H), int64(s.W)}, f32: xs},
		{name: InT, shape: []int64{n}, f32: []float32{0.1, 0.5, 0.9}},
		{name: InIDs, shape: []int64{n, int64(s.R)}, i64: ids},
		{name: InK, shape: []int64{n}, i64: []int64{int64(s.R), 3, 0}},
	}
	got := runPath(t, filepath.Join(flat, "decoder.onnx"), dec, OutV)
	ref := runPath(t, filepath.Join(native, "decoder.onnx"), dec, OutV)
	if !reflect.DeepEqual(got, ref) {
		t.Error("decoder: the web package's output differs from export-onnx's")
	}
	half := runPath(t, filepath.Join(flat, "decoder_fp16.onnx"), dec, OutV)
	nmse, rel := errStats(half, ref)
	t.Logf("decoder_fp16 against decoder: NMSE %.2g, max error %.2g of the range", nmse, rel)
	if b := decoderBounds[true]; nmse > b[0] || rel > b[1] || nmse == 0 {
		t.Errorf("decoder_fp16: NMSE %.3g, max error %.3g against fp32 (bounds %g, %g; 0 means it is not fp16)", nmse, rel, b[0], b[1])
	}
	vae := []input{{name: InLatents, shape: []int64{n, int64(s.C), int64(s.H), int64(s.W)}, f32: xs}}
	if got, ref := runPath(t, filepath.Join(flat, "vae_decoder.onnx"), vae, OutImage), runPath(t, filepath.Join(native, "vae_decoder.onnx"), vae, OutImage); !reflect.DeepEqual(got, ref) {
		t.Error("vae_decoder: the web package's output differs from export-onnx's")
	}
}

// TestExportWebRefusesOverwrite: an existing package is refused without Overwrite, before
// anything is written; with it, the package is replaced and the user's other files stay.
func TestExportWebRefusesOverwrite(t *testing.T) {
	m := testModels(t)[0].m
	dir := t.TempDir()
	mine := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(mine, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportWeb(m, dir, WebOptions{ChunkSize: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, webpkg.ManifestName))
	for _, name := range []string{webpkg.ManifestName, "decoder.onnx", "vae_decoder.onnx.data.part000"} {
		sub := t.TempDir()
		if err := os.WriteFile(filepath.Join(sub, name), []byte("user's"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ExportWeb(m, sub, WebOptions{})
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), name) {
			t.Fatalf("existing %s: %v, want ErrExists naming it", name, err)
		}
		ents, _ := os.ReadDir(sub)
		if len(ents) != 1 {
			t.Fatalf("existing %s: the refused export left %d files", name, len(ents))
		}
	}
	if _, err := ExportWeb(m, dir, WebOptions{ChunkSize: 256 << 10, Overwrite: true}); err != nil {
		t.Fatalf("Overwrite: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, webpkg.ManifestName))
	if !bytes.Equal(before, after) {
		t.Error("the same export gave another manifest")
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "keep" {
		t.Errorf("the user's file: %q, %v", b, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
	if _, err := ExportWeb(m, t.TempDir(), WebOptions{ChunkSize: 10}); err == nil || !strings.Contains(err.Error(), "chunk size 10") {
		t.Errorf("chunk size 10: %v", err)
	}
	if _, err := ExportWeb(m, t.TempDir(), WebOptions{Size: 17}); err == nil {
		t.Error("size 17 accepted")
	}
}
