package native

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/flextok-sdk/flextok/sdk/tensor"
	"github.com/vmihailenco/msgpack/v5"
)

// serviceCall sends one request to s and returns the response map, failing on an error
// response.
func serviceCall(t *testing.T, s *service.Service, req map[string]any) map[string]any {
	t.Helper()
	b, err := msgpack.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := msgpack.Unmarshal(s.Handle(b), &r); err != nil {
		t.Fatal(err)
	}
	if r["ok"] != true {
		t.Fatalf("%v: %v", req["op"], r["error"])
	}
	return r
}

func handleOf(r map[string]any) uint64 {
	switch h := r["handle"].(type) {
	case uint8:
		return uint64(h)
	case int8:
		return uint64(h)
	}
	return 0
}

func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestService: sdk/service runs over ONNX Runtime as over the Go engine, with a Backend
// opened by Options.Load ("open") or registered with Add: the same model info, payloads of
// the same model (ids equal but for FSQ rounding ties) and images within the backend's
// bounds.
func TestService(t *testing.T) {
	o := needORT(t)
	d := models.Default()
	def := &service.Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}
	var opened []*Backend
	ort := service.New(service.Options{Default: def, Load: func(c service.Checkpoint, name string) (engine.Executor, error) {
		bo := o
		bo.Name = name
		b, err := LoadBytes(c.Weights, c.Config, c.VAEConfig, bo)
		if err == nil {
			opened = append(opened, b)
		}
		return b, err
	}})
	ref := service.New(service.Options{Default: def})
	oh := handleOf(serviceCall(t, ort, map[string]any{"op": "open"}))
	rh := handleOf(serviceCall(t, ref, map[string]any{"op": "open"}))
	if len(opened) != 1 || oh == 0 || rh == 0 {
		t.Fatalf("open: %d backends, handles %d and %d", len(opened), oh, rh)
	}
	oi := serviceCall(t, ort, map[string]any{"op": "info", "handle": oh})
	ri := serviceCall(t, ref, map[string]any{"op": "info", "handle": rh})
	if !reflect.DeepEqual(oi, ri) {
		t.Fatalf("info: ort %v, go %v", oi, ri)
	}

	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "heldout", "*.png"))
	sort.Strings(paths)
	if len(paths) == 0 {
		t.Fatal("no held-out images")
	}
	img, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var op, rp payload.Payload
	if err := payload.Unmarshal(serviceCall(t, ort, map[string]any{"op": "encode", "handle": oh, "image": img})["payload"].([]byte), &op); err != nil {
		t.Fatal(err)
	}
	rb := serviceCall(t, ref, map[string]any{"op": "encode", "handle": rh, "image": img})["payload"].([]byte)
	if err := payload.Unmarshal(rb, &rp); err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range rp.IDs {
		if i < len(op.IDs) && op.IDs[i] == rp.IDs[i] {
			same++
		}
	}
	if !op.Model.Equal(&rp.Model) || op.Image != rp.Image || len(op.IDs) != len(rp.IDs) || same*10 < len(rp.IDs)*9 {
		t.Fatalf("encode: ort %+v, go %+v (%d ids equal)", op, rp, same)
	}

	// A Backend the caller loaded, registered with Add, decodes the Go engine's payload.
	b, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ah, err := ort.Add(b)
	if err != nil {
		t.Fatal(err)
	}
	req := func(h uint64) map[string]any {
		return map[string]any{"op": "decode", "handle": h, "payload": rb, "k": 8, "steps": 3, "output": []string{"tensor"}}
	}
	want := floats(serviceCall(t, ref, req(rh))["tensor"].([]byte))
	for _, h := range []uint64{oh, ah} {
		got := floats(serviceCall(t, ort, req(h))["tensor"].([]byte))
		nmse, maxAbs := tensor.NMSE(got, want), tensor.MaxAbsDiff(got, want)
		t.Logf("handle %d, k=8, 3 steps: NMSE %.2g, max abs %.2g", h, nmse, maxAbs)
		if len(got) != len(want) || nmse > 1e-10 || maxAbs > 1e-4 { // the bounds of TestBackendDefaultModel
			t.Errorf("handle %d: %d values, NMSE %.3g, max abs %.3g over the bounds 1e-10, 1e-4", h, len(got), nmse, maxAbs)
		}
	}
	if err := ort.Close(); err != nil { // closes the Backend "open" made, not b
		t.Fatal(err)
	}
	if _, err := b.Decode(t.Context(), &rp, engine.DecodeOptions{K: 8, Steps: 1}); err != nil {
		t.Fatalf("the added Backend after Service.Close: %v", err)
	}
}
