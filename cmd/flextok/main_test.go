package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, want := range []string{"FSQ [8 8 8 5 5 5]", "params total", "research use only"} {
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
