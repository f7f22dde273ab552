package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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

// jsResponses runs the GOOS=js module (wasm, with its wasm_exec.js execJS, from buildJS) under
// Node on reqs in order (wasm/js/run.mjs: length-prefixed requests in, responses out) and
// returns the responses, one per request.
func jsResponses(t *testing.T, wasm, execJS string, reqs [][]byte) [][]byte {
	t.Helper()
	dir := t.TempDir()
	var in bytes.Buffer
	for _, r := range reqs {
		_ = binary.Write(&in, binary.LittleEndian, uint32(len(r)))
		in.Write(r)
	}
	reqPath, outPath := filepath.Join(dir, "requests"), filepath.Join(dir, "responses")
	if err := os.WriteFile(reqPath, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command("node", "../wasm/js/run.mjs", wasm, execJS, reqPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("node run.mjs: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var resps [][]byte
	for len(b) >= 4 {
		n := binary.LittleEndian.Uint32(b)
		if int(n) > len(b)-4 {
			t.Fatalf("truncated response frame")
		}
		resps = append(resps, b[4:4+n])
		b = b[4+n:]
	}
	if len(resps) != len(reqs) {
		t.Fatalf("%d responses for %d requests", len(resps), len(reqs))
	}
	return resps
}
