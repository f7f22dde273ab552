package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// needORT points FLEXTOK_ORT_LIB at the repository's ONNX Runtime (make setup) when it is not
// set, and skips the test when no library can be loaded.
func needORT(t *testing.T) {
	t.Helper()
	if os.Getenv("FLEXTOK_ORT_LIB") == "" {
		lib, _ := filepath.Abs("../../.deps/ort/libonnxruntime.so")
		if _, err := os.Stat(lib); err != nil {
			t.Skip("no ONNX Runtime: set FLEXTOK_ORT_LIB or run make setup")
		}
		t.Setenv("FLEXTOK_ORT_LIB", lib)
	}
	if err := native.Init(native.Options{Provider: native.ProviderCPU}); err != nil {
		if (errors.Is(err, native.ErrNoCgo) || errors.Is(err, native.ErrLibrary)) && os.Getenv("FLEXTOK_REQUIRE_ORT") != "1" {
			t.Skip("ONNX Runtime unavailable:", err)
		}
		t.Fatal(err)
	}
}

// TestEncodeORT: --backend ort encodes a sharded, batched tree like the go backend: the same
// files, model identity, preprocessing record and hints, and (on this tiny model) the same ids
// but for rare FSQ rounding-boundary flips.
func TestEncodeORT(t *testing.T) {
	needORT(t)
	data := encodeTree(t, 6)
	goOut := filepath.Join(t.TempDir(), "go")
	if _, _, err := runErr("encode", data, "-o", goOut); err != nil {
		t.Fatal(err)
	}
	ortOut := filepath.Join(t.TempDir(), "ort")
	for _, sh := range []string{"0/2", "1/2"} {
		_, stderr, err := runErr("encode", data, "-o", ortOut, "--backend", "ort", "--provider", "cpu", "--batch", "2", "--shard", sh, "--threads", "1")
		if err != nil || !strings.Contains(stderr, "encoded 3, skipped 0, failed 0 in ") {
			t.Fatalf("ort shard %s: %v %q", sh, err, stderr)
		}
	}
	want, got := readTree(t, goOut), readTree(t, ortOut)
	if len(got) != len(want) {
		t.Fatalf("ort wrote %v, go %v", keys(got), keys(want))
	}
	same, total := 0, 0
	for k, wb := range want {
		var w, g payload.Payload
		if err := payload.Decode(wb, &w, payload.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := payload.Decode(got[k], &g, payload.Options{}); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !g.Model.Equal(&w.Model) || g.Image != w.Image || g.Hints == nil || g.Hints.Steps != w.Hints.Steps || len(g.IDs) != len(w.IDs) {
			t.Fatalf("%s: ort payload %+v, go %+v", k, g, w)
		}
		for i := range w.IDs {
			total++
			if g.IDs[i] == w.IDs[i] {
				same++
			}
		}
	}
	t.Logf("ort ids equal to go's: %d of %d", same, total)
	if same*100 < total*95 {
		t.Fatalf("ort and go ids agree on %d of %d tokens", same, total)
	}
}
