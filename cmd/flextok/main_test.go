package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
)

// run executes the CLI in-process and returns stdout and the error main would print.
func run(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestInspectVectors(t *testing.T) {
	dir := "../../conformance/testdata/payload"
	for _, name := range []string{"tokens_1", "stream_32"} {
		out, err := run("inspect", filepath.Join(dir, name+".msgpack"))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(dir, name+".json"))
		if out != string(want) {
			t.Errorf("inspect %s:\n%s\nwant\n%s", name, out, want)
		}
	}
}

// TestInspectBadInput: random or truncated bytes give one clear error line and no output.
func TestInspectBadInput(t *testing.T) {
	good, err := os.ReadFile("../../conformance/testdata/payload/tokens_cond_hints.msgpack")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	dir := t.TempDir()
	inputs := [][]byte{{}}
	for i := 0; i < 50; i++ {
		junk := make([]byte, r.IntN(300))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		inputs = append(inputs, junk, good[:r.IntN(len(good))])
	}
	for i, in := range inputs {
		path := filepath.Join(dir, "in.bin")
		if err := os.WriteFile(path, in, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run("inspect", path)
		if err == nil {
			t.Fatalf("input %d (%d bytes) accepted", i, len(in))
		}
		if out != "" || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "flextok/payload: ") {
			t.Fatalf("input %d: out %q, err %q", i, out, err)
		}
	}
	if _, err := run("inspect"); err == nil {
		t.Fatal("inspect without a file succeeded")
	} else if _, ok := err.(usageError); !ok {
		t.Fatalf("missing argument is not a usage error: %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := run("version")
	if err != nil || !strings.HasPrefix(out, "flextok ") || !strings.Contains(out, "payload format 1.0") {
		t.Fatalf("version: %q %v", out, err)
	}
}

func TestInspectModel(t *testing.T) {
	dir := "../../conformance/testdata/official/c1_w32_zero_e2"
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no reference checkpoint")
	}
	out, err := run("inspect-model", dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Load(dir, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	digest := fmt.Sprintf("digest sha256:%x", e.Identity().Digest) // what its payloads carry
	for _, want := range []string{"FSQ [8 8 8 5 5 5]", "params total", "research use only", digest, "encode: supported", "decode: supported", "image size 32x32"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect-model output lacks %q:\n%s", want, out)
		}
	}
	// A file that is not a checkpoint: one error line.
	bad := filepath.Join(t.TempDir(), "model.safetensors")
	_ = os.WriteFile(bad, []byte("not a checkpoint at all"), 0o644)
	if _, err := run("inspect-model", bad); err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad checkpoint: %v", err)
	}
}

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 4), uint8(y * 5), 128, 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestEncodeDecode runs the CLI on an official-code reference checkpoint: encode a file and a
// directory, refuse to overwrite, decode with a prefix, refuse another model's payload.
func TestEncodeDecode(t *testing.T) {
	m1 := "../../conformance/testdata/official/c1_w32_zero_e2"
	m2 := "../../conformance/testdata/official/c2_w64_learned_t1"
	if _, err := os.Stat(m1); err != nil {
		t.Skip("no reference checkpoint")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	_ = os.Mkdir(in, 0o755)
	writePNG(t, filepath.Join(in, "a.png"), 64, 48)
	writePNG(t, filepath.Join(in, "b.png"), 20, 30)
	_ = os.WriteFile(filepath.Join(in, "notes.txt"), []byte("not an image"), 0o644)
	one := filepath.Join(dir, "a.msgpack")
	if _, err := run("encode", filepath.Join(in, "a.png"), "-m", m1, "-o", one, "-k", "8"); err != nil {
		t.Fatal(err)
	}
	out, err := run("inspect", one)
	if err != nil || !strings.Contains(out, `"count": 8`) || !strings.Contains(out, `"source":[48,64]`) {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(one)
	if _, err := run("encode", filepath.Join(in, "b.png"), "-m", m1, "-o", one); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrote an existing output: %v", err)
	}
	if after, _ := os.ReadFile(one); !bytes.Equal(before, after) {
		t.Fatal("existing output changed")
	}
	outDir := filepath.Join(dir, "tokens")
	if _, err := run("encode", in, "-m", m1, "-o", outDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outDir, "b.msgpack")); err != nil {
		t.Fatal("directory encode wrote no b.msgpack")
	}
	png1 := filepath.Join(dir, "a.png")
	if _, err := run("decode", one, "-m", m1, "-o", png1, "-k", "2", "--steps", "2"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(png1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != 32 || cfg.Height != 32 {
		t.Fatalf("decoded PNG %+v %v", cfg, err)
	}
	if _, err := run("decode", one, "-m", m2, "-o", filepath.Join(dir, "x.png")); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("decoded another model's payload: %v", err)
	}
	for _, args := range [][]string{
		{"decode", one, "-m", m1, "-o", filepath.Join(dir, "y.png"), "--steps", "0"},
		{"decode", one, "-m", m1, "-o", filepath.Join(dir, "y.png"), "-k", "9"},
		{"encode", filepath.Join(in, "notes.txt"), "-m", m1, "-o", filepath.Join(dir, "n.msgpack")},
	} {
		if _, err := run(args...); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err = %v", args, err)
		}
	}
}

// TestDefaultModel: without -m the CLI uses the embedded default model, whose payloads carry
// its decode hints.
func TestDefaultModel(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "a.msgpack")
	if _, err := run("encode", "../../testdata/heldout/000_cross.png", "-o", out); err != nil {
		t.Fatal(err)
	}
	view, err := run("inspect", out)
	if err != nil || !strings.Contains(view, `"name":"flextok-sdk-shapes32"`) || !strings.Contains(view, `"hints": {"steps":10,"guidance":1.5}`) {
		t.Fatalf("inspect: %v\n%s", err, view)
	}
	if _, err := run("decode", out, "-k", "4", "-o", filepath.Join(dir, "a.png")); err != nil {
		t.Fatal(err)
	}
}
