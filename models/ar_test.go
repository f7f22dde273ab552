package models_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// The embedded AR model is made for the embedded tokenizer: its config names the tokenizer's
// content digest and the classes of labels.json, and its payloads are the tokenizer's.
func TestDefaultAR(t *testing.T) {
	m, err := models.DefaultAR().Model()
	if err != nil {
		t.Fatal(err)
	}
	c := m.Cfg
	if c.NumClasses != 8 || len(c.Classes) != 8 || c.Classes[5] != "star" || c.BlockSize != 32 || !c.HasNull() {
		t.Fatalf("config: %d classes %v, block %d, null row %v", c.NumClasses, c.Classes, c.BlockSize, c.HasNull())
	}
	if c.Hints == nil || c.Hints.CFGScale == nil {
		t.Errorf("no sampling hints")
	}
	g, e, err := models.LoadDefaultGenerator(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := ar.DefaultSampling()
	s.Greedy = true
	ps, err := g.Generate(context.Background(), ar.Request{Classes: []int{5}, K: 2, Sampling: s})
	if err != nil {
		t.Fatal(err)
	}
	if p := ps[0]; p.Model.Digest != e.Identity().Digest || p.Count() != 2 || p.Cond == nil || p.Cond.Class == nil || *p.Cond.Class != 5 {
		t.Fatalf("payload %+v", p)
	}
	// Beside another tokenizer it is refused.
	other, err := engine.Load("../conformance/testdata/official/c1_w32_zero_e2", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := models.DefaultGenerator(other, nn.Options{}); !errors.Is(err, ar.ErrTokenizer) {
		t.Fatalf("beside another tokenizer: %v, want ar.ErrTokenizer", err)
	}
}

// A program that uses only the tokenizer (the decode-only wasm module) does not link the AR
// model's 17 MB: they are a separate embed.FS that the linker drops.
func TestDefaultARNotLinked(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	bin := filepath.Join(t.TempDir(), "decodeonly")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/decodeonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, models.Default().Config) {
		t.Fatal("the tokenizer's config.json is not in the binary: the check is broken")
	}
	if bytes.Contains(b, models.DefaultAR().Config) {
		t.Errorf("the AR model's config.json is linked into a program that never calls DefaultAR (%d bytes)", len(b))
	}
}
