package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"github.com/flextok-sdk/flextok/models"
)

const (
	heldoutDir     = "../../eval/heldout"
	classifierFile = "../../eval/classifier.safetensors"
)

func classNames(t *testing.T) []string {
	var l struct{ Classes []string }
	if err := json.Unmarshal(models.Default().Labels, &l); err != nil || len(l.Classes) == 0 {
		t.Fatalf("labels.json: %v", err)
	}
	return l.Classes
}

// TestClassifierMatchesRecipe runs the Go classifier over the 512 committed held-out images and
// compares with what train_classifier.py recorded in classifier.json with PyTorch on the same
// images: the accuracy, and the proxy FID between the two halves (Go's Fréchet distance too).
func TestClassifierMatchesRecipe(t *testing.T) {
	var rec struct {
		Acc float64 `json:"heldout_accuracy"`
		FID float64 `json:"proxy_fid_heldout_half_vs_half"`
		N   int     `json:"n_heldout"`
	}
	b, err := os.ReadFile("../../eval/classifier.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	cls, err := loadClassifier(classifierFile)
	if err != nil {
		t.Fatal(err)
	}
	imgs, labels, err := readHeldout(heldoutDir, classNames(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != rec.N {
		t.Fatalf("%d held-out images, classifier.json has %d", len(imgs), rec.N)
	}
	var f [][]float64
	hit := 0
	for i, im := range imgs {
		lg, ft, err := cls.run(im)
		if err != nil {
			t.Fatal(err)
		}
		if argmax(lg) == labels[i] {
			hit++
		}
		f = append(f, ft)
	}
	if acc := float64(hit) / float64(len(imgs)); acc != rec.Acc {
		t.Errorf("accuracy %v, PyTorch %v", acc, rec.Acc)
	}
	fid, err := frechet(f[:len(f)/2], f[len(f)/2:])
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(fid-rec.FID) > 1e-4*rec.FID {
		t.Errorf("half-vs-half proxy FID %v, PyTorch/NumPy %v", fid, rec.FID)
	}
	t.Logf("accuracy %.4f, proxy FID %.6f (recipe %.6f)", float64(hit)/float64(len(imgs)), fid, rec.FID)
}

func TestFrechet(t *testing.T) {
	a := [][]float64{{0, 0}, {2, 0}, {0, 2}, {2, 2}}
	if d, err := frechet(a, a); err != nil || math.Abs(d) > 1e-9 {
		t.Errorf("frechet(a, a) = %v, %v; want 0", d, err)
	}
	// Shifted by (3, 4): the covariance terms cancel, the distance is |Δμ|² = 25.
	b := make([][]float64, len(a))
	for i, r := range a {
		b[i] = []float64{r[0] + 3, r[1] + 4}
	}
	if d, _ := frechet(a, b); math.Abs(d-25) > 1e-9 {
		t.Errorf("shifted: %v, want 25", d)
	}
	// Scaled by 2 around the same mean: tr(S + 4S − 2·2S) = tr(S) = 2·(4/3) = 8/3.
	c := make([][]float64, len(a))
	for i, r := range a {
		c[i] = []float64{2*r[0] - 1, 2*r[1] - 1}
	}
	if d, _ := frechet(a, c); math.Abs(d-8.0/3) > 1e-9 {
		t.Errorf("scaled: %v, want 8/3", d)
	}
	if _, err := frechet(a[:1], a); err == nil {
		t.Error("one sample: no error")
	}
}

// TestRun runs the whole evaluation on a random AR model and 8 held-out images: every row is
// there, the files are written, and bad flags are refused by name.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes")
	}
	names := classNames(t)
	m, err := arfixture.RandomForDefault(arfixture.Shape{Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, MultipleOf: 8}, names, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	arDir := filepath.Join(dir, "ar")
	if err := m.Save(arDir, true); err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(dir, "held")
	os.Mkdir(held, 0o755)
	ents, _ := os.ReadDir(heldoutDir)
	for _, e := range ents[:8] {
		b, _ := os.ReadFile(filepath.Join(heldoutDir, e.Name()))
		os.WriteFile(filepath.Join(held, e.Name()), b, 0o644)
	}
	bad := filepath.Join(dir, "bad")
	os.Mkdir(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "000_blob.png"), nil, 0o644)
	out := filepath.Join(dir, "out")
	f := flags{heldout: held, classifier: classifierFile, arDir: arDir, out: out, n: 2, ks: "1,2", cfgs: "1,2",
		gridKs: "2", gridCols: 2, temperature: 1, topP: 1, quiet: true}
	var buf bytes.Buffer
	if err := run(context.Background(), f, &buf); err != nil {
		t.Fatal(err)
	}
	table := buf.String()
	for _, want := range []string{"| real | all | - | 4 |", "| reconstruction | 1 |", "| reconstruction | 2 |",
		"| generated | 1 | 1 | 16 |", "| generated | 2 | 2 | 16 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, name := range []string{"areval.json", "grid_cfg1_k2.png", "grid_cfg2_k2.png"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	for _, c := range []struct {
		mod  func(*flags)
		want string
	}{
		{func(f *flags) { f.classifier = "" }, "need -heldout"},
		{func(f *flags) { f.ks = "1,x" }, "-ks"},
		{func(f *flags) { f.cfgs = "-1" }, "-cfg"},
		{func(f *flags) { f.n = 1 }, "-n 1"},
		{func(f *flags) { f.heldout = bad }, "NNN_<class>.png"},
		{func(f *flags) { f.heldout = arDir }, "0 images"},
	} {
		g := f
		c.mod(&g)
		if err := run(context.Background(), g, &buf); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %q, got %v", c.want, err)
		}
	}
}
