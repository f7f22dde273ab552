package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrecisionFlag: --precision bf16 encodes to the same ids as fp32 (the encoder stays fp32)
// and decodes; an unknown precision, bf16 with --exact and bf16 on ONNX Runtime are usage
// errors naming the flag.
func TestPrecisionFlag(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join("..", "..", "testdata", "heldout", "023_star.png")
	p32, p16 := filepath.Join(dir, "a32.msgpack"), filepath.Join(dir, "a16.msgpack")
	if out, err := run("encode", img, "-o", p32); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := run("encode", "--precision", "bf16", img, "-o", p16); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	a, _ := os.ReadFile(p32)
	b, _ := os.ReadFile(p16)
	if len(a) == 0 || string(a) != string(b) {
		t.Fatal("encode --precision bf16 wrote another payload than fp32")
	}
	if out, err := run("decode", "--precision", "bf16", p32, "-o", filepath.Join(dir, "y.png")); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st, err := os.Stat(filepath.Join(dir, "y.png")); err != nil || st.Size() == 0 {
		t.Fatalf("decode --precision bf16 wrote no image: %v", err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"decode", "--precision", "fp16", p32, "-o", filepath.Join(dir, "z.png")}, `--precision "fp16"`},
		{[]string{"decode", "--exact", "--precision", "bf16", p32, "-o", filepath.Join(dir, "z.png")}, "--exact"},
		{[]string{"decode", "--backend", "ort", "--precision", "bf16", p32, "-o", filepath.Join(dir, "z.png")}, "Go engine only"},
	} {
		_, err := run(c.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error containing %q", c.args, err, c.want)
		}
	}
}
