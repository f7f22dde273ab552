package conformance

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/flextok-sdk/flextok/conformance/wasmhost"
)

// wasip1Instance builds the wasip1 module and instantiates it in wazero for the test (closed
// when the test ends). It skips under -short (the build takes a while), when the test itself
// runs as wasm, and when no go command can build the module.
func wasip1Instance(t *testing.T) *wasmhost.Instance {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the wasip1 module (-short)")
	}
	if runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("the host side runs natively")
	}
	path, err := wasmhost.Build(context.Background(), t.TempDir())
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("no go command in PATH: cannot build the wasip1 module")
	}
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := wasmhost.New(ctx, wasm, wasmhost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(ctx) })
	inst, err := h.Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close(ctx) })
	return inst
}
