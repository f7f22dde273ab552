package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var (
	buildOnce sync.Once
	built     []byte
	buildErr  error
)

// module builds wasm/wasip1 once per test binary.
func module(t *testing.T) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the wasip1 module (-short)")
	}
	buildOnce.Do(func() {
		path, err := Build(context.Background(), t.TempDir()) // read at once: the dir goes with t
		if err != nil {
			buildErr = err
			return
		}
		built, buildErr = os.ReadFile(path)
	})
	if errors.Is(buildErr, exec.ErrNotFound) {
		t.Skip("no go command in PATH to build the wasip1 module")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func req(t *testing.T, m map[string]any) []byte {
	b, err := msgpack.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func resp(t *testing.T, b []byte) map[string]any {
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatalf("response: %v", err)
	}
	return m
}

func TestHost(t *testing.T) {
	ctx := context.Background()
	h, err := New(ctx, module(t), Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	a, err := h.Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := h.Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Handle(req(t, map[string]any{"op": "version", "id": 9}))
	if err != nil {
		t.Fatal(err)
	}
	if m := resp(t, r); m["ok"] != true || m["protocol"] != int8(1) || m["id"] != int8(9) {
		t.Fatalf("version: %v", m)
	}
	// Errors are data; an empty request and junk are answered, not trapped.
	for _, in := range [][]byte{nil, {0xc1}, bytes.Repeat([]byte{0xdf}, 100)} {
		r, err := b.Handle(in)
		if err != nil {
			t.Fatal(err)
		}
		if m := resp(t, r); m["ok"] != false {
			t.Fatalf("junk %x: %v", in, m)
		}
	}
	// Many calls do not leak guest memory. Linear memory never shrinks and the guest's GC
	// paces its heap up to about twice what is live, so the first calls may grow it; after
	// 30 calls of warm-up, 60 more 1 MiB requests may grow it by at most 16 MiB (a leak of
	// each request would be 60 MiB).
	big := req(t, map[string]any{"op": "version", "pad": make([]byte, 1<<20)})
	for i := 0; i < 30; i++ {
		_, _ = b.Handle(big)
	}
	before := b.MemoryBytes()
	for i := 0; i < 60; i++ {
		if _, err := b.Handle(big); err != nil {
			t.Fatal(err)
		}
	}
	after := b.MemoryBytes()
	t.Logf("guest memory %d bytes after the warm-up, %d after 60 more calls", before, after)
	if after > before+16<<20 {
		t.Fatalf("memory grew from %d to %d bytes over 60 calls", before, after)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Handle(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed instance: %v", err)
	}
	// A second Host reuses the on-disk cache.
	h2, err := New(ctx, module(t), Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_ = h2.Close(ctx)
}

func TestNotAModule(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, []byte("\x00asm junk"), Options{}); err == nil {
		t.Fatal("junk compiled")
	}
	// A valid module without the exports.
	empty := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	if _, err := New(ctx, empty, Options{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("exports no")) {
		t.Fatalf("empty module: %v", err)
	}
}
