package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/vmihailenco/msgpack/v5"
)

// The service conformance suite: one script of requests (open the tiny official-format c1
// checkpoint from bytes, encode, decode several prefixes with fixed seeds, stream, fail) run
// by every front end of sdk/service — natively, as the GOOS=wasip1 module under wazero and
// as the GOOS=js module under Node — whose responses must be bit-identical (timings aside)
// and equal to testdata/service/golden.json (refresh with -update, then review the diff).

const (
	c1Dir         = "testdata/official/c1_w32_zero_e2"
	serviceGolden = "testdata/service/golden.json"
)

// step is one request of the script.
type step struct {
	Name string
	Req  []byte
}

func mp(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type M = map[string]any

func readC1(t *testing.T) (weights, config, vae []byte) {
	t.Helper()
	var err error
	if weights, err = os.ReadFile(filepath.Join(c1Dir, "model.safetensors")); err != nil {
		t.Skipf("no c1 checkpoint: %v", err)
	}
	if config, err = os.ReadFile(filepath.Join(c1Dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if vae, err = os.ReadFile(filepath.Join(c1Dir, "vae", "config.json")); err != nil {
		t.Fatal(err)
	}
	return
}

func scriptImage() []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 36))
	for y := 0; y < 36; y++ {
		for x := 0; x < 40; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 5), uint8(y * 3), uint8((x + y) * 2), 255})
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// serviceScript builds the script. The payload the later steps decode is the one the
// "encode" step makes (computed here natively; every executor must reproduce it byte for byte).
func serviceScript(t *testing.T) []step {
	w, c, v := readC1(t)
	s := []step{
		{"version", mp(t, M{"op": "version"})},
		{"open", mp(t, M{"op": "open", "name": "c1", "weights": w, "config": c, "vae_config": v, "id": 1})},
		{"info", mp(t, M{"op": "info", "handle": 1})},
		{"encode", mp(t, M{"op": "encode", "handle": 1, "image": scriptImage()})},
		{"encode_k8_catmull_rom", mp(t, M{"op": "encode", "handle": 1, "image": scriptImage(), "k": 8, "filter": "catmull-rom"})},
	}
	native := runSteps(t, service.New(service.Options{}).Handle, s)
	pb, _ := native[3]["payload"].([]byte)
	var p payload.Payload
	if err := payload.Unmarshal(pb, &p); err != nil {
		t.Fatalf("native encode: %v (%v)", err, native[3])
	}
	all := []string{"rgba", "png", "tensor"}
	for _, k := range []int{1, 4, 16, 32} {
		s = append(s, step{"decode_k" + itoa(k), mp(t, M{"op": "decode", "handle": 1, "payload": pb, "k": k, "steps": 2, "seed": 7, "output": all})})
	}
	s = append(s,
		step{"decode_k8_cfg3", mp(t, M{"op": "decode", "handle": 1, "payload": pb, "k": 8, "steps": 3, "guidance": 3.0, "apg": false, "seed": uint64(123456789012345), "output": all})},
		step{"decode_k32_unguided", mp(t, M{"op": "decode", "handle": 1, "payload": pb, "steps": 2, "guidance": 1.0, "output": all})},
	)
	g := float32(2)
	hinted := p
	hinted.Hints = &payload.Hints{Steps: 2, Guidance: &g, Seed: ptr(uint64(99))}
	hb, err := hinted.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	s = append(s, step{"decode_hints", mp(t, M{"op": "decode", "handle": 1, "payload": hb})})

	st, err := payload.Split(&p, []int{4, 12})
	if err != nil {
		t.Fatal(err)
	}
	header, _ := st.Header.AppendBinary(nil)
	s = append(s, step{"stream_open", mp(t, M{"op": "stream_open", "handle": 1, "header": header, "steps": 2, "seed": 7, "output": []string{"rgba", "tensor"}})})
	for i, ch := range st.Chunks {
		cb, _ := ch.AppendBinary(nil, &st.Header)
		s = append(s, step{"stream_chunk" + itoa(i), mp(t, M{"op": "stream_chunk", "stream": 2, "chunk": cb, "id": i})})
	}
	s = append(s, step{"stream_close", mp(t, M{"op": "stream_close", "stream": 2})})

	other, err := os.ReadFile("testdata/payload/tokens_1.msgpack")
	if err != nil {
		t.Fatal(err)
	}
	s = append(s,
		step{"err_model_mismatch", mp(t, M{"op": "decode", "handle": 1, "payload": other})},
		step{"err_truncated", mp(t, M{"op": "decode", "handle": 1, "payload": pb[:len(pb)-3]})},
		step{"err_unknown_handle", mp(t, M{"op": "info", "handle": 5})},
		step{"err_bad_request", []byte{0x92, 0x01, 0x02}},
		step{"err_bad_image", mp(t, M{"op": "encode", "handle": 1, "image": []byte("not an image")})},
		step{"close", mp(t, M{"op": "close", "handle": 1})},
	)
	return s
}

func itoa(i int) string { return strconv.Itoa(i) }

func ptr[T any](v T) *T { return &v }

// timing fields differ between runs and executors; everything else must not.
var timingFields = []string{"decode_ms", "encode_ms", "total_ms"}

func runSteps(t *testing.T, handle func([]byte) []byte, script []step) []M {
	t.Helper()
	out := make([]M, len(script))
	for i, s := range script {
		out[i] = decodeResp(t, s.Name, handle(s.Req))
	}
	return out
}

func decodeResp(t *testing.T, name string, b []byte) M {
	t.Helper()
	var m M
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: undecodable response: %v", name, err)
	}
	for _, f := range timingFields {
		delete(m, f)
	}
	return m
}

// goldenStep summarises one response: the error code, or the sha256 of its binary fields and
// of the whole response (canonical msgpack, sorted keys, timings removed).
type goldenStep struct {
	Name     string            `json:"name"`
	OK       bool              `json:"ok"`
	Code     string            `json:"code,omitempty"`
	SHA256   map[string]string `json:"sha256,omitempty"`
	Response string            `json:"response"`
}

func summarise(t *testing.T, script []step, resps []M) []goldenStep {
	t.Helper()
	g := make([]goldenStep, len(resps))
	for i, r := range resps {
		g[i] = goldenStep{Name: script[i].Name, OK: r["ok"] == true}
		if e, ok := r["error"].(M); ok {
			g[i].Code, _ = e["code"].(string)
		}
		for _, k := range []string{"payload", "rgba", "png", "tensor"} {
			if b, ok := r[k].([]byte); ok {
				if g[i].SHA256 == nil {
					g[i].SHA256 = map[string]string{}
				}
				h := sha256.Sum256(b)
				g[i].SHA256[k] = hex.EncodeToString(h[:])
			}
		}
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetSortMapKeys(true)
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(buf.Bytes())
		g[i].Response = hex.EncodeToString(h[:])
	}
	return g
}

// same fails the test at the first step whose response differs from want's.
func same(t *testing.T, exec string, script []step, want, got []M) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d responses, want %d", exec, len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(want[i], got[i]) {
			var diff []string
			for k, v := range want[i] {
				if !reflect.DeepEqual(v, got[i][k]) {
					diff = append(diff, k)
				}
			}
			for k := range got[i] {
				if _, ok := want[i][k]; !ok {
					diff = append(diff, k)
				}
			}
			t.Fatalf("%s: step %s differs from native in %v (error: %v)", exec, script[i].Name, diff, got[i]["error"])
		}
	}
}

func TestServiceExecutors(t *testing.T) {
	script := serviceScript(t)
	t0 := time.Now()
	native := runSteps(t, service.New(service.Options{}).Handle, script)
	t.Logf("native: %d requests in %v", len(script), time.Since(t0).Round(time.Millisecond))
	// The responses must be what the script expects, before any executor is compared.
	for i, r := range native {
		wantOK := !strings.HasPrefix(script[i].Name, "err_")
		if r["ok"] != wantOK {
			t.Fatalf("native %s: ok = %v, want %v (%v)", script[i].Name, r["ok"], wantOK, r["error"])
		}
	}
	checkNative(t, script, native)

	got := summarise(t, script, native)
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.MkdirAll(filepath.Dir(serviceGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(serviceGolden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gb, err := os.ReadFile(serviceGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var golden []goldenStep
	if err := json.Unmarshal(gb, &golden); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(golden, got) {
		for i := range got {
			if i >= len(golden) || !reflect.DeepEqual(golden[i], got[i]) {
				t.Fatalf("native step %s differs from %s (if the engine's numerics changed on purpose, rerun with -update and review)", got[i].Name, serviceGolden)
			}
		}
		t.Fatalf("%s has %d steps, the script %d", serviceGolden, len(golden), len(got))
	}

	t.Run("wasip1", func(t *testing.T) {
		inst := wasip1Instance(t)
		t0 := time.Now()
		resps := make([]M, len(script))
		for i, s := range script {
			b, err := inst.Handle(s.Req)
			if err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			resps[i] = decodeResp(t, s.Name, b)
		}
		t.Logf("wasip1 (wazero): %d requests in %v", len(script), time.Since(t0).Round(time.Millisecond))
		same(t, "wasip1", script, native, resps)
	})

	t.Run("js", func(t *testing.T) {
		wasm, execJS := buildJS(t)
		reqs := make([][]byte, len(script))
		for i, s := range script {
			reqs[i] = s.Req
		}
		t0 := time.Now()
		raw := jsResponses(t, wasm, execJS, reqs)
		t.Logf("js (node): %d requests in %v (with start-up)", len(script), time.Since(t0).Round(time.Millisecond))
		got := make([]M, len(raw))
		for i, b := range raw {
			got[i] = decodeResp(t, script[i].Name, b)
		}
		same(t, "js", script, native, got)

		// The standalone smoke test, as make wasm-smoke runs it.
		out, err := exec.Command("node", "../wasm/js/smoke_test.mjs", wasm, execJS, c1Dir).CombinedOutput()
		if err != nil {
			t.Fatalf("smoke_test.mjs: %v\n%s", err, out)
		}
		t.Logf("smoke_test.mjs: %s", bytes.TrimSpace(out))
	})
}

// checkNative checks what the golden hashes cannot show: the responses' shapes.
func checkNative(t *testing.T, script []step, resps []M) {
	t.Helper()
	for i, r := range resps {
		name := script[i].Name
		if strings.HasPrefix(name, "decode_k") {
			if rgba, _ := r["rgba"].([]byte); len(rgba) != 32*32*4 {
				t.Fatalf("%s: rgba of %d bytes", name, len(rgba))
			}
			if tb, _ := r["tensor"].([]byte); len(tb) != 3*32*32*4 {
				t.Fatalf("%s: tensor of %d bytes", name, len(tb))
			}
		}
	}
	// A stream's prefix decodes exactly as the whole payload's first k tokens.
	by := map[string]M{}
	for i, r := range resps {
		by[script[i].Name] = r
	}
	for chunk, dec := range map[string]string{"stream_chunk0": "decode_k4", "stream_chunk1": "decode_k16", "stream_chunk2": "decode_k32"} {
		if !bytes.Equal(by[chunk]["tensor"].([]byte), by[dec]["tensor"].([]byte)) {
			t.Fatalf("%s differs from %s", chunk, dec)
		}
	}
	codes := map[string]string{"err_model_mismatch": "model_mismatch", "err_truncated": "truncated",
		"err_unknown_handle": "unknown_handle", "err_bad_request": "bad_request", "err_bad_image": "bad_image"}
	for i, r := range resps {
		if want, ok := codes[script[i].Name]; ok {
			if got := r["error"].(M)["code"]; got != want {
				t.Fatalf("%s: code %v, want %s", script[i].Name, got, want)
			}
		}
	}
}

// buildJS builds wasm/js for GOOS=js and finds wasm_exec.js, or skips when node or go is
// missing.
func buildJS(t *testing.T) (wasm, execJS string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the GOOS=js module (-short)")
	}
	if runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("the host side runs natively")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node in PATH: cannot run the GOOS=js module")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH: cannot build the GOOS=js module")
	}
	root, err := exec.Command(gobin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	execJS = filepath.Join(strings.TrimSpace(string(root)), "lib", "wasm", "wasm_exec.js")
	if _, err := os.Stat(execJS); err != nil {
		t.Skipf("no wasm_exec.js in GOROOT: %v", err)
	}
	wasm = filepath.Join(t.TempDir(), "flextok.wasm")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", wasm, "github.com/flextok-sdk/flextok/wasm/js")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build wasm/js: %v\n%s", err, out)
	}
	return wasm, execJS
}
