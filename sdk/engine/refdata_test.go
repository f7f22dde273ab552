package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// The reference cases written by the official PyTorch code
// (conformance/testdata/official/<case>: model.safetensors + reference.safetensors, see the
// README there). Tests skip when the directory is absent.

var officialRoot = filepath.Join("..", "..", "conformance", "testdata", "official")

type refCase struct {
	name  string
	model *model.Model
	ref   *safetensors.File
}

// refCases opens every case that has both files; it skips the test when there is none.
func refCases(t testing.TB) []*refCase {
	t.Helper()
	ents, err := os.ReadDir(officialRoot)
	if err != nil {
		t.Skip("no official reference data:", err)
	}
	var out []*refCase
	for _, e := range ents {
		dir := filepath.Join(officialRoot, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "reference.safetensors")); err != nil {
			continue
		}
		m, err := model.LoadFile(dir)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		ref, err := safetensors.OpenFile(filepath.Join(dir, "reference.safetensors"))
		if err != nil {
			m.Weights.Close()
			t.Fatalf("%s: %v", e.Name(), err)
		}
		c := &refCase{name: e.Name(), model: m, ref: ref}
		t.Cleanup(func() { c.model.Weights.Close(); c.ref.Close() })
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Skip("no official reference cases")
	}
	return out
}

// f32 reads a float reference tensor with its shape.
func (c *refCase) f32(t *testing.T, name string) tensor.Tensor {
	t.Helper()
	info, ok := c.ref.Info(name)
	if !ok {
		t.Fatalf("%s: reference tensor %s missing", c.name, name)
	}
	d, err := c.ref.ReadFloat32(name)
	if err != nil {
		t.Fatalf("%s: %s: %v", c.name, name, err)
	}
	return tensor.Tensor{Shape: append([]int(nil), info.Shape...), Data: d}
}

// i64 reads an integer reference tensor.
func (c *refCase) i64(t *testing.T, name string) []int64 {
	t.Helper()
	d, err := c.ref.ReadInt64(name)
	if err != nil {
		t.Fatalf("%s: %s: %v", c.name, name, err)
	}
	return d
}

// slice returns the j-th sub-tensor along the first dimension.
func slice(x tensor.Tensor, j int) tensor.Tensor {
	n := len(x.Data) / x.Shape[0]
	return tensor.Tensor{Shape: append([]int(nil), x.Shape[1:]...), Data: x.Data[j*n : (j+1)*n]}
}

// compare checks got against the official want with a relative L2 bound (tensor.RelErr),
// logging the measured error so the report shows every stage. why states the bound's reason.
func compare(t *testing.T, stage string, got, want []float32, bound float64, why string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", stage, len(got), len(want))
		return
	}
	rel, abs := tensor.RelErr(got, want), tensor.MaxAbsDiff(got, want)
	t.Logf("%-28s rel %.2e  maxabs %.2e  (bound %.0e: %s)", stage, rel, abs, bound, why)
	if !(rel <= bound) {
		t.Errorf("%s diverged: relative L2 error %.3e > %.0e (max abs %.3e)", stage, rel, bound, abs)
	}
}

// sameBits fails unless a and b are bit-identical.
func sameBits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	if tensor.SHA256(a) != tensor.SHA256(b) {
		t.Errorf("%s: not bit-identical (max abs diff %.3e)", what, tensor.MaxAbsDiff(a, b))
	}
}

// engineVariants are the executions every reference test runs: the portable reference path
// and the fast path with two threads.
var engineVariants = []struct {
	name string
	o    Options
}{
	{"portable", Options{}},
	{"fast", Options{Fast: true, Threads: 2}},
}

// encodeAndCheckIDs tokenizes the reference "image" [B,3,H,W] with e and requires the
// reference "token_ids" [B,R] exactly; who names the reference in failures.
func encodeAndCheckIDs(t *testing.T, e *Engine, ref *safetensors.File, who string) [][]uint32 {
	t.Helper()
	img, err := ref.ReadFloat32("image")
	if err != nil {
		t.Fatal(err)
	}
	H, W := e.ImageSize()
	B := len(img) / (3 * H * W)
	ids, err := e.EncodeTensor(context.Background(), tensor.Tensor{Shape: []int{B, 3, H, W}, Data: img})
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.ReadInt64("token_ids")
	if err != nil {
		t.Fatal(err)
	}
	R := e.MaxTokens()
	for i := range ids {
		for j := range ids[i] {
			if int64(ids[i][j]) != want[i*R+j] {
				t.Fatalf("image %d token %d: %d, %s %d", i, j, ids[i][j], who, want[i*R+j])
			}
		}
	}
	return ids
}
