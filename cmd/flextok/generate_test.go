package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// randomAR writes a random-weight AR checkpoint made for the default tokenizer.
func randomAR(t *testing.T) string {
	m, err := arfixture.RandomForDefault(arfixture.Shape{Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8},
		[]string{"cross", "star", "hexagon"}, 5)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ar")
	if err := m.Save(dir, true); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGenerate: generate writes payloads that decode; the same seed writes the same bytes with
// --exact; bad flags are usage errors naming the problem.
func TestGenerate(t *testing.T) {
	arDir := randomAR(t)
	out := t.TempDir()
	if _, err := run("generate", "--ar", arDir, "--class", "star", "-n", "2", "-k", "4", "--cfg", "2", "--top-k", "50", "--seed", "3", "--exact", "-q", "-o", out); err != nil {
		t.Fatal(err)
	}
	a, err := os.ReadFile(filepath.Join(out, "star_001.msgpack"))
	if err != nil {
		t.Fatal(err)
	}
	out2 := t.TempDir()
	if _, err := run("generate", "--ar", arDir, "--class", "1", "-n", "2", "-k", "4", "--cfg", "2", "--top-k", "50", "--seed", "3", "--exact", "-q", "-o", out2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out2, "star_001.msgpack"))
	if string(a) != string(b) {
		t.Fatal("same seed, different payloads")
	}
	pngs := t.TempDir()
	if _, err := run("decode", out, "-o", pngs, "--steps", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pngs, "star_000.png")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--class", "circle"}, `--class "circle": not a class`},
		{[]string{"--class", "star", "-k", "33"}, "-k 33: the AR model makes 1 to 32 tokens"},
		{[]string{"--class", "star", "--top-p", "0"}, "--top-p 0: want in (0, 1]"},
		{[]string{"--class", "star", "--temperature", "-1"}, "--temperature -1: want ≥ 0"},
		{[]string{"--class", "star", "--top-k", "-2"}, "--top-k -2: want ≥ 0"},
		{[]string{"--class", "star", "-m", "../../conformance/testdata/official/c1_w32_zero_e2"}, "AR model trained for tokenizer"},
	} {
		args := append([]string{"generate", "--ar", arDir, "-q", "-o", t.TempDir()}, c.args...)
		_, err := run(args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestServeARRefused: serve refuses at start an AR model made for another tokenizer, and an
// --ar NAME that names no served model.
func TestServeARRefused(t *testing.T) {
	c := &ar.Config{Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8, NormEps: 1e-5, RopeBase: 10000,
		BlockSize: 32, NumClasses: 3, ClassDropout: 0.1, VocabSize: 64000,
		Tokenizer: ar.TokenizerSpec{Levels: []int{8, 8, 8, 5, 5, 5}, CodebookSize: 64000, Registers: 32}}
	c.FFNHidden = ar.FFNHiddenRule(c.Dim, c.MultipleOf, nil)
	m, err := ar.New(c, ar.RandomWeights(c, 5))
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "ar")
	if err := m.Save(other, true); err != nil {
		t.Fatal(err)
	}
	if _, err := run("serve", "--addr", "127.0.0.1:0", "--samples", "none", "--ar", other); err == nil || !strings.Contains(err.Error(), "tokenizer") {
		t.Fatalf("a mismatched AR model: %v", err)
	}
	if _, err := run("serve", "--addr", "127.0.0.1:0", "--samples", "none", "--ar", "nope="+randomAR(t)); err == nil || !strings.Contains(err.Error(), `no served model "nope"`) {
		t.Fatalf("--ar nope=: %v", err)
	}
}

// TestGenerateORT: generate --backend ort writes the same greedy payloads as the Go executor.
func TestGenerateORT(t *testing.T) {
	needORT(t)
	arDir := randomAR(t)
	goOut, ortOut := t.TempDir(), t.TempDir()
	args := []string{"generate", "--ar", arDir, "--class", "hexagon", "-n", "2", "-k", "16", "--cfg", "3", "--greedy", "--exact", "-q"}
	if _, err := run(append(args, "-o", goOut)...); err != nil {
		t.Fatal(err)
	}
	if _, err := run(append(args, "-o", ortOut, "--backend", "ort", "--onnx-cache", t.TempDir())...); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"hexagon_000.msgpack", "hexagon_001.msgpack"} {
		a, err := os.ReadFile(filepath.Join(goOut, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(ortOut, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Fatalf("%s: ORT's payload differs from Go's", f)
		}
	}
}

// TestGenerateDefault: without --ar, generate uses the embedded default AR model beside the
// embedded tokenizer; --png writes the decoded images, --grid one picture (a row per class);
// progress goes to stderr unless -q; a rerun refuses to replace files before any work.
func TestGenerateDefault(t *testing.T) {
	dir := t.TempDir()
	out, grid := filepath.Join(dir, "gen"), filepath.Join(dir, "grid.png")
	_, stderr, err := runErr("generate", "--class", "star,cross", "-n", "3", "-k", "4", "--steps", "1", "--exact", "--seed", "1",
		"-o", out, "--png", "--grid", grid)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "generating 6 × 4 tokens") || !strings.Contains(stderr, "wrote 6 payloads and PNGs") {
		t.Errorf("stderr %q", stderr)
	}
	for _, f := range []string{"star_000.msgpack", "star_002.png", "cross_000.png", "cross_002.msgpack"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "star_001.msgpack"))
	if err != nil {
		t.Fatal(err)
	}
	var p payload.Payload
	if err := p.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if p.Count() != 4 || p.Cond == nil || p.Cond.Class == nil || *p.Cond.Class != 5 || p.Model.Name != "flextok-sdk-shapes32" {
		t.Errorf("payload: %d tokens, cond %+v, model %q", p.Count(), p.Cond, p.Model.Name)
	}
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Two rows (classes) of three 32-pixel samples, gridPad between tiles.
	if w, h := 3*32+2*gridPad, 2*32+gridPad; cfg.Width < w || cfg.Height < h || cfg.Width > w+2*gridPad || cfg.Height > h+2*gridPad {
		t.Errorf("grid %d×%d, want about %d×%d", cfg.Width, cfg.Height, w, h)
	}
	// -q: nothing on stderr; existing files are refused before generating.
	_, stderr, err = runErr("generate", "--class", "star", "-n", "1", "-k", "2", "-q", "-o", out)
	if err == nil || !strings.Contains(err.Error(), "star_000.msgpack exists") || stderr != "" {
		t.Errorf("rerun: %v, stderr %q", err, stderr)
	}
	if _, stderr, err = runErr("generate", "--class", "hexagon", "-k", "2", "-q", "--steps", "1", "--grid", filepath.Join(dir, "one.png")); err != nil || stderr != "" {
		t.Errorf("-q --grid: %v, stderr %q", err, stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--class", "blob", "-o", dir}, `--class "blob": not a class of the AR model (8 classes: circle, ring, square, triangle, cross, star, hexagon, crescent`},
		{[]string{"--class", "star", "-k", "33", "-o", dir}, "-k 33: the AR model makes 1 to 32 tokens"},
		{[]string{"--class", "star", "-k", "0", "-o", dir}, "-k must be at least 1"},
		{[]string{"--class", "star"}, "give -o DIR"},
		{[]string{"--class", "star", "--png", "--grid", grid}, "--png writes into -o DIR"},
		{[]string{"--class", "star", "--grid", filepath.Join(dir, "g.jpg")}, "the grid is a PNG file"},
		{[]string{"--class", "star", "-o", dir, "--cfg", "NaN"}, "--cfg NaN: want a finite number"},
	} {
		_, err := run(append([]string{"generate", "-q"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
