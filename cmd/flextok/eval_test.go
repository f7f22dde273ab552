package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	ftimage "github.com/flextok-sdk/flextok/sdk/image"
)

const (
	evalModel   = "../../conformance/testdata/official/c1_w32_zero_e2"
	heldoutDir  = "../../testdata/heldout"
	evalTile    = 32 // c1's image side
	evalHeldout = 3  // images the test evaluates
)

func needEvalData(t *testing.T) {
	t.Helper()
	for _, p := range []string{evalModel, heldoutDir} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no %s", p)
		}
	}
}

// TestEval runs eval on the c1 reference checkpoint (random weights, 32×32, 32 tokens) over
// three held-out images: the table, the JSON, the grid's size, determinism and --force.
func TestEval(t *testing.T) {
	needEvalData(t)
	dir := t.TempDir()
	grid, js := filepath.Join(dir, "grid.png"), filepath.Join(dir, "eval.json")
	args := []string{"eval", "-m", evalModel, "--images", heldoutDir, "--limit", strconv.Itoa(evalHeldout),
		"--ks", "1,32", "--steps", "2", "--grid", grid, "--json", js}
	out, err := run(args...)
	if err != nil {
		t.Fatal(err)
	}

	// The table: '#' lines, a header, a row per k with the image count and finite metrics.
	var rows [][]string
	header := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.Fields(line)[0] == "k":
			header = true
			if got := strings.Join(strings.Fields(line), " "); got != "k images psnr_mean psnr_std psnr_min psnr_max ssim_mean ssim_std ssim_min ssim_max" {
				t.Errorf("header %q", got)
			}
		default:
			rows = append(rows, strings.Fields(line))
		}
	}
	if !header || len(rows) != 2 || !strings.Contains(out, "3 images from") || !strings.Contains(out, "steps 2, guidance 7.5 (APG), seed 0") {
		t.Fatalf("output:\n%s", out)
	}
	for i, k := range []string{"1", "32"} {
		r := rows[i]
		if len(r) != 10 || r[0] != k || r[1] != "3" {
			t.Fatalf("row %d: %q", i, r)
		}
		v := make([]float64, 8)
		for j := range v {
			if v[j], err = strconv.ParseFloat(r[2+j], 64); err != nil || math.IsNaN(v[j]) || math.IsInf(v[j], 0) {
				t.Fatalf("row %d column %d: %q", i, j+2, r[2+j])
			}
		}
		if !(v[0] > 0 && v[0] < 60 && v[2] <= v[0] && v[0] <= v[3] && v[1] >= 0) {
			t.Errorf("k=%s: PSNR mean/std/min/max %v", k, v[:4])
		}
		if !(v[4] >= -1 && v[4] <= 1 && v[6] <= v[4] && v[4] <= v[7] && v[5] >= 0) {
			t.Errorf("k=%s: SSIM mean/std/min/max %v", k, v[4:])
		}
	}

	// The grid: rows = images, columns = input, k=1, k=32; 32-px tiles, gridPad between.
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	g, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantW, wantH := 3*evalTile+2*gridPad, evalHeldout*evalTile+(evalHeldout-1)*gridPad
	if b := g.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
		t.Errorf("grid %dx%d, want %dx%d", b.Dx(), b.Dy(), wantW, wantH)
	}
	// Its first tile is the first input itself (32×32: no resampling).
	in := readPNG(t, filepath.Join(heldoutDir, "000_cross.png"))
	for y := 0; y < evalTile; y++ {
		for x := 0; x < evalTile; x++ {
			r1, g1, b1, _ := g.At(x, y).RGBA()
			r2, g2, b2, _ := in.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				t.Fatalf("grid tile (0,0) differs from the input at %d,%d", x, y)
			}
		}
	}

	// The JSON: per-image values whose means are the table's.
	data, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Model     string `json:"model"`
		Digest    string `json:"digest"`
		MaxTokens int    `json:"max_tokens"`
		Count     int    `json:"count"`
		Steps     int    `json:"steps"`
		Ks        []int  `json:"ks"`
		Summary   []struct {
			K    int `json:"k"`
			PSNR struct{ Mean float64 }
			SSIM struct{ Mean float64 }
		} `json:"summary"`
		PerImage []struct {
			File string    `json:"file"`
			PSNR []float64 `json:"psnr"`
			SSIM []float64 `json:"ssim"`
		} `json:"per_image"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	// c1's config has no name: the name comes from its content digest, never its directory.
	if doc.Model != "flextok-"+doc.Digest[:min(12, len(doc.Digest))] || doc.MaxTokens != 32 || doc.Count != 3 || doc.Steps != 2 ||
		!reflect.DeepEqual(doc.Ks, []int{1, 32}) || len(doc.Summary) != 2 || len(doc.PerImage) != 3 {
		t.Fatalf("json:\n%s", data)
	}
	if doc.PerImage[0].File != "000_cross.png" || doc.PerImage[2].File != "002_triangle.png" {
		t.Errorf("files %q, %q", doc.PerImage[0].File, doc.PerImage[2].File)
	}
	for j := range doc.Ks {
		var ps, ss float64
		for _, im := range doc.PerImage {
			ps += im.PSNR[j] / 3
			ss += im.SSIM[j] / 3
		}
		if math.Abs(ps-doc.Summary[j].PSNR.Mean) > 1e-9 || math.Abs(ss-doc.Summary[j].SSIM.Mean) > 1e-9 {
			t.Errorf("k=%d: summary means %v %v, per-image means %v %v", doc.Ks[j], doc.Summary[j].PSNR.Mean, doc.Summary[j].SSIM.Mean, ps, ss)
		}
	}

	// Existing outputs are kept without --force (and the run refuses before working) ...
	for _, extra := range [][]string{{"--grid", grid}, {"--json", js}} {
		a := append([]string{"eval", "-m", evalModel, "--images", heldoutDir, "--limit", "1", "--ks", "1", "--steps", "1"}, extra...)
		if _, err := run(a...); err == nil || !strings.Contains(err.Error(), "exists (use --force") {
			t.Errorf("%v over an existing file: %v", extra, err)
		}
	}
	if after, _ := os.ReadFile(js); !bytes.Equal(after, data) {
		t.Error("the JSON changed without --force")
	}
	// ... and replaced with it; the same flags give the same numbers.
	if _, err := run(append(args, "--force")...); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(js); !bytes.Equal(again, data) {
		t.Error("a second run gave other numbers")
	}
}

func TestEvalErrors(t *testing.T) {
	needEvalData(t)
	dir := t.TempDir()
	cases := []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"-m", evalModel}, true, "--images is required"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--ks", "0"}, true, "k = 0"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--ks", "1,33"}, true, "k = 33, the model has 32 tokens"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--ks", "1,x"}, true, `"x" is not a number`},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--ks", "2,2"}, true, "given twice"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--steps", "0"}, true, "--steps"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--limit", "-1"}, true, "--limit"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--grid", "a.png", "--grid-rows", "0"}, true, "--grid-rows"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--grid", "a", "--json", "./a"}, true, "same file"},
		{[]string{"-m", evalModel, "--images", dir}, true, "no input files"},
		{[]string{"-m", evalModel, "--images", filepath.Join(dir, "missing")}, false, "missing"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "--filter", "box"}, true, "--filter"},
		{[]string{"-m", evalModel, "--images", heldoutDir, "extra"}, true, "arg"},
	}
	for _, c := range cases {
		out, err := run(append([]string{"eval"}, c.args...)...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		var ue usageError
		if errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || out != "" {
			t.Errorf("%v: usage %v, err %q, out %q", c.args, errors.As(err, &ue), err, out)
		}
	}
	// A file that is not an image: one line naming it.
	bad := filepath.Join(dir, "bad.png")
	if err := os.WriteFile(bad, []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run("eval", "-m", evalModel, "--images", dir, "--ks", "1", "--steps", "1"); err == nil ||
		!strings.Contains(err.Error(), "bad.png") || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad image: %v", err)
	}
}

// TestModelInput: the reference is the exact 8-bit model input, not FromTensor's truncation.
func TestModelInput(t *testing.T) {
	needEvalData(t)
	in := readPNG(t, filepath.Join(heldoutDir, "000_cross.png"))
	ref, err := modelInput(in, 32, 32, ftimage.FilterBilinear)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 32; y++ { // at the model size: the image itself
		for x := 0; x < 32; x++ {
			r1, g1, b1, _ := ref.At(x, y).RGBA()
			r2, g2, b2, _ := in.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				t.Fatalf("pixel %d,%d: %v vs %v", x, y, ref.At(x, y), in.At(x, y))
			}
		}
	}
	// Resized (to 24×16): FromTensor of the same tensor equals it but for bytes 1..63, one less.
	tt, _, err := ftimage.ToTensor(in, ftimage.Preprocess{Height: 16, Width: 24, Filter: ftimage.FilterCatmullRom})
	if err != nil {
		t.Fatal(err)
	}
	trunc, _ := ftimage.FromTensor(tt)
	ref, err = modelInput(in, 16, 24, ftimage.FilterCatmullRom)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Bounds().Dx() != 24 || ref.Bounds().Dy() != 16 {
		t.Fatalf("size %v", ref.Bounds())
	}
	for i, v := range ref.Pix {
		want := v
		if i%4 != 3 && v >= 1 && v <= 63 {
			want = v - 1
		}
		if trunc.Pix[i] != want {
			t.Fatalf("byte %d: model input %d, FromTensor %d", i, v, trunc.Pix[i])
		}
	}
}

func TestEvalHelpers(t *testing.T) {
	for _, c := range []struct {
		max  int
		want []int
	}{{1, []int{1}}, {32, []int{1, 2, 4, 8, 16, 32}}, {48, []int{1, 2, 4, 8, 16, 32, 48}}, {256, []int{1, 2, 4, 8, 16, 32, 64, 128, 256}}} {
		if got := defaultKs(c.max); !reflect.DeepEqual(got, c.want) {
			t.Errorf("defaultKs(%d) = %v", c.max, got)
		}
	}
	if ks, err := parseKs(" 4, 1 ,2"); err != nil || !reflect.DeepEqual(ks, []int{4, 1, 2}) {
		t.Errorf("parseKs: %v %v", ks, err)
	}
	b, _ := json.Marshal([]jsonFloat{jsonFloat(math.Inf(1)), jsonFloat(math.NaN()), 1.5})
	if string(b) != "[null,null,1.5]" {
		t.Errorf("jsonFloat: %s", b)
	}
	s := statsOf([]jsonFloat{1, 2, 3, 4})
	if s.Mean != 2.5 || s.Min != 1 || s.Max != 4 || math.Abs(float64(s.Std)-math.Sqrt(1.25)) > 1e-15 {
		t.Errorf("statsOf: %+v", s)
	}
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
