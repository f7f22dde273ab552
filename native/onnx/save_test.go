//go:build cgo

package onnx

import (
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// TestSaveExternalData: a graph saved with its weights in an external data file loads from the
// path and gives the same output, bit for bit, as the graph passed in memory.
func TestSaveExternalData(t *testing.T) {
	needORT(t)
	m := testModels(t)[0].m
	s, _ := ModelSizes(m.Config, 0)
	lat := make([]float32, s.C*s.H*s.W)
	for i := range lat {
		lat[i] = float32(i%7)*0.1 - 0.3
	}
	g, err := VAEDecoderGraph(m, s)
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := runGraph(t, g, []input{{name: InLatents, shape: []int64{1, int64(s.C), int64(s.H), int64(s.W)}, f32: lat}}, OutImage)

	dir := t.TempDir()
	path, err := Save(g, dir, "vae_decoder.onnx")
	if err != nil {
		t.Fatal(err)
	}
	gst, _ := os.Stat(path)
	dst, err := os.Stat(filepath.Join(dir, "vae_decoder.onnx.data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("graph %d bytes, data %d bytes", gst.Size(), dst.Size())
	if gst.Size() > dst.Size()/10 {
		t.Errorf("graph file %d bytes: the weights were not moved out (data %d bytes)", gst.Size(), dst.Size())
	}
	x, _ := ort.NewTensor(ort.NewShape(1, int64(s.C), int64(s.H), int64(s.W)), lat)
	defer x.Destroy()
	sess, err := ort.NewDynamicAdvancedSession(path, []string{InLatents}, []string{OutImage}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	out := []ort.Value{nil}
	if err := sess.Run([]ort.Value{x}, out); err != nil {
		t.Fatal(err)
	}
	defer out[0].Destroy()
	got := out[0].(*ort.Tensor[float32]).GetData()
	for i := range got {
		if got[i] != mem[0][i] {
			t.Fatalf("value %d: %v from the file, %v in memory", i, got[i], mem[0][i])
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("%d files in the export directory, want 2 (no temporaries left)", len(ents))
	}
}
