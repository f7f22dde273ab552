package native

import (
	"context"
	"errors"
	"image"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Conformance of the ONNX Runtime backend (CPU) with the pure-Go engine (portable path, the
// reference executor): token ids equal or every flip a rounding tie, decoded images within
// written bounds, on the embedded default model and on the official reference checkpoints.

func loadDefaultPair(t *testing.T, o Options) (*Backend, *engine.Engine) {
	t.Helper()
	d := models.Default()
	b, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e, err := engine.LoadBytes(d.Weights, d.Config, d.VAEConfig, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b, e
}

// loadPair loads the checkpoint at dir into a Backend with options o and into the engine
// (portable path); both are released when the test ends.
func loadPair(t *testing.T, dir string, o Options) (*Backend, *engine.Engine, *model.Model) {
	t.Helper()
	m, err := model.LoadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	b, err := New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e, err := engine.New(m, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b, e, m
}

func heldout(t *testing.T, n int) []image.Image {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "heldout", "*.png"))
	sort.Strings(paths)
	if len(paths) < n {
		t.Fatalf("%d held-out images, want %d", len(paths), n)
	}
	imgs := make([]image.Image, n)
	for i, p := range paths[:n] {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if imgs[i], _, err = ftimage.DecodeBytes(data, ftimage.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	return imgs
}

// imageStats returns the NMSE and the largest absolute difference of two image tensors.
func imageStats(got, want []float32) (nmse, maxAbs float64) {
	return tensor.NMSE(got, want), tensor.MaxAbsDiff(got, want)
}

// explainFlips checks ORT ids against the engine's: a differing id must come from a register
// whose engine latents z lie within 1e-4 of an FSQ rounding boundary (fsq TieDistance).
func explainFlips(t *testing.T, q *fsq.Quantizer, z []float32, got, want []uint32) int {
	t.Helper()
	D, flips := q.Dim(), 0
	for i := range want {
		if got[i] == want[i] {
			continue
		}
		flips++
		if d := q.TieDistance(z[i*D : (i+1)*D]); d >= 1e-4 {
			t.Errorf("token %d: ORT id %d, engine id %d, bounded values %.2g from a rounding boundary", i, got[i], want[i], d)
		}
	}
	return flips
}

// TestBackendDefaultModel: encode 8 held-out images in one batch and decode them with the
// model's hints (10 CFG steps) on both executors.
func TestBackendDefaultModel(t *testing.T) {
	b, e := loadDefaultPair(t, needORT(t))
	ctx := context.Background()
	imgs := heldout(t, 8)
	got, err := b.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range imgs {
		if !got[i].Model.Equal(&want[i].Model) || got[i].Image != want[i].Image || !reflect.DeepEqual(got[i].Hints, want[i].Hints) || got[i].Hints == nil {
			t.Fatalf("image %d: payload header differs: %+v vs %+v", i, got[i], want[i])
		}
		if flips := countDiff(got[i].IDs, want[i].IDs); flips != 0 {
			t.Errorf("image %d: %d of %d ids differ from the engine's", i, flips, len(want[i].IDs))
		}
	}
	for i := 0; i < 2; i++ {
		o := engine.DefaultDecodeOptions(want[i])
		o.K = []int{32, 4}[i]
		gi, err := b.Decode(ctx, want[i], o)
		if err != nil {
			t.Fatal(err)
		}
		wi, err := e.Decode(ctx, want[i], o)
		if err != nil {
			t.Fatal(err)
		}
		nmse, maxAbs := imageStats(gi.Data, wi.Data)
		t.Logf("image %d, k=%d, %d steps: NMSE %.2g, max abs %.2g", i, o.K, o.Steps, nmse, maxAbs)
		if nmse > 1e-10 || maxAbs > 1e-4 { // measured: NMSE <= 1e-12, max abs <= 2.9e-6
			t.Errorf("image %d: NMSE %.3g, max abs %.3g over the bounds 1e-10, 1e-4", i, nmse, maxAbs)
		}
	}
}

func countDiff(a, b []uint32) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n + len(b) - len(a)
}

// TestBackendOfficialCases: the official reference checkpoints (random weights shaped like the
// released configs): ids from random images, and a 4-step APG decode from the same noise.
func TestBackendOfficialCases(t *testing.T) {
	o := needORT(t)
	root := filepath.Join("..", "conformance", "testdata", "official")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := 0
	for _, ent := range ents {
		dir := filepath.Join(root, ent.Name())
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
			continue
		}
		cases++
		t.Run(ent.Name(), func(t *testing.T) {
			b, e, m := loadPair(t, dir, o)
			H, W := e.ImageSize()
			const n = 2
			x := make([]float32, n*3*H*W)
			for i := range x {
				x[i] = float32(math.Sin(float64(i)*0.37)) * 0.9
			}
			imgs := tensor.Tensor{Shape: []int{n, 3, H, W}, Data: x}
			gotIDs, err := b.EncodeTensor(ctx, imgs)
			if err != nil {
				t.Fatal(err)
			}
			wantIDs, err := e.EncodeTensor(ctx, imgs)
			if err != nil {
				t.Fatal(err)
			}
			z := engineLatents(t, m, imgs)
			q, _ := fsq.New(m.Config.FSQ.Levels)
			R := b.MaxTokens()
			for i := 0; i < n; i++ {
				if f := explainFlips(t, q, z[i*R*q.Dim():(i+1)*R*q.Dim()], gotIDs[i], wantIDs[i]); f > 0 {
					t.Logf("image %d: %d ids differ, each a rounding tie", i, f)
				}
			}
			p := &payload.Payload{Model: e.Identity(), Image: payload.Image{Height: H, Width: W}, IDs: wantIDs[0]}
			dopt := engine.DecodeOptions{Steps: 4, Guidance: 7.5, APG: true, Seed: 3, K: R / 2}
			gi, err := b.Decode(ctx, p, dopt)
			if err != nil {
				t.Fatal(err)
			}
			wi, err := e.Decode(ctx, p, dopt)
			if err != nil {
				t.Fatal(err)
			}
			nmse, maxAbs := imageStats(gi.Data, wi.Data)
			t.Logf("decode k=%d, 4 APG steps: NMSE %.2g, max abs %.2g", dopt.K, nmse, maxAbs)
			if nmse > 1e-10 || maxAbs > 1e-4 { // measured: NMSE <= 1e-12, max abs <= 2.9e-6
				t.Errorf("NMSE %.3g, max abs %.3g over the bounds 1e-10, 1e-4", nmse, maxAbs)
			}
		})
	}
	if cases == 0 {
		t.Fatal("no official reference checkpoints")
	}
}

// engineLatents returns the engine's FSQ input z [B·R·D] for images.
func engineLatents(t *testing.T, m *model.Model, imgs tensor.Tensor) []float32 {
	t.Helper()
	vae, err := engine.NewVAE(m, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := engine.NewEncoder(m, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lat, err := vae.Encode(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	z, err := enc.Registers(context.Background(), lat)
	if err != nil {
		t.Fatal(err)
	}
	return z.Data
}

// TestBackendBadInput: wrong model, k, ids and shapes are errors that name the problem.
func TestBackendBadInput(t *testing.T) {
	b, e := loadDefaultPair(t, needORT(t))
	ctx := context.Background()
	p, err := e.Encode(ctx, heldout(t, 1)[0], engine.EncodeOptions{K: 8})
	if err != nil {
		t.Fatal(err)
	}
	other := *p
	other.Model.Digest[0] ^= 1
	if _, err := b.Decode(ctx, &other, engine.DefaultDecodeOptions(p)); !errors.Is(err, engine.ErrModelMismatch) {
		t.Errorf("payload of another model: %v, want ErrModelMismatch", err)
	}
	o := engine.DefaultDecodeOptions(p)
	o.K = 9
	if _, err := b.Decode(ctx, p, o); !errors.Is(err, engine.ErrArgument) {
		t.Errorf("k beyond the payload: %v, want ErrArgument", err)
	}
	if _, err := b.Bind([][]uint32{{1 << 20}}, nil); err == nil {
		t.Error("id outside the codebook: no error")
	}
	if _, err := b.Bind([][]uint32{{1, 2}}, []int{3}); err != nil {
		t.Errorf("k = 3 over 2 ids (padding visible, as the engine allows): %v", err)
	}
	if _, err := b.Bind([][]uint32{{1, 2}}, []int{33}); err == nil {
		t.Error("k = 33 > R: no error")
	}
	c, err := b.Bind([][]uint32{{1, 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := tensor.Tensor{Shape: []int{4, 8, 8}, Data: make([]float32, 256)}
	if err := c.Velocity(ctx, 2000, []flow.Item{{X: x}}); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("t = 2000: %v", err)
	}
	if err := c.Velocity(ctx, 0.5, []flow.Item{{Image: 1, X: x}}); err == nil {
		t.Error("item of an unbound image: no error")
	}
	// The item checks are the engine's (engine.CheckItem): a V of another shape is refused.
	if err := c.Velocity(ctx, 0.5, []flow.Item{{X: x, V: tensor.Tensor{Shape: []int{4, 8, 9}}}}); err == nil || !strings.Contains(err.Error(), "v shape") {
		t.Errorf("v of another shape: %v", err)
	}
	if err := c.Velocity(ctx, 0.5, []flow.Item{{X: x}}); err != nil {
		t.Errorf("a good item: %v", err)
	}
	if _, err := b.EncodeTensor(ctx, tensor.Tensor{Shape: []int{1, 3, 8, 8}, Data: make([]float32, 192)}); !errors.Is(err, engine.ErrArgument) {
		t.Errorf("images of the wrong size: %v, want ErrArgument", err)
	}
	if _, err := b.Encode(ctx, heldout(t, 1)[0], engine.EncodeOptions{K: 33}); !errors.Is(err, engine.ErrArgument) {
		t.Errorf("k = 33: %v, want ErrArgument", err)
	}
}

// TestBackendConcurrent: decodes from several goroutines give the serial results (run with
// -race in make test).
func TestBackendConcurrent(t *testing.T) {
	b, e := loadDefaultPair(t, needORT(t))
	ctx := context.Background()
	ps, err := e.EncodeBatch(ctx, heldout(t, 4), engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := engine.DecodeOptions{Steps: 2, Guidance: 1.5}
	serial := make([]tensor.Tensor, len(ps))
	for i, p := range ps {
		if serial[i], err = b.Decode(ctx, p, o); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x, err := b.Decode(ctx, p, o)
			if err != nil {
				t.Error(err)
				return
			}
			for j := range x.Data {
				if x.Data[j] != serial[i].Data[j] {
					t.Errorf("image %d: concurrent decode differs from the serial one at %d", i, j)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestBackendFP16: with FP16 the decoder's products run in float16; a full 20-step guided
// decode stays close to the float32 image (on the CPU here; the setting is meant for GPUs).
func TestBackendFP16(t *testing.T) {
	o := needORT(t)
	o.FP16 = true
	b, e := loadDefaultPair(t, o)
	ctx := context.Background()
	p, err := e.Encode(ctx, heldout(t, 1)[0], engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dopt := engine.DefaultDecodeOptions(p)
	got, err := b.Decode(ctx, p, dopt)
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Decode(ctx, p, dopt)
	if err != nil {
		t.Fatal(err)
	}
	nmse, maxAbs := imageStats(got.Data, want.Data)
	psnr := 10 * math.Log10(4/(nmse*meanSquare(want.Data)))
	t.Logf("fp16 decoder, %d steps: NMSE %.2g, max abs %.2g, PSNR %.1f dB against float32", dopt.Steps, nmse, maxAbs, psnr)
	if psnr < 60 { // measured 83.8 dB
		t.Errorf("fp16 decode PSNR %.1f dB against the float32 engine, want >= 60", psnr)
	}
}

func meanSquare(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s / float64(len(x))
}

// TestBackendExportCache: with ExportDir the graphs are written once, under a directory named
// by the weights' digest, and a second load opens them without exporting again; the results
// are the same.
func TestBackendExportCache(t *testing.T) {
	o := needORT(t)
	o.ExportDir = t.TempDir()
	d := models.Default()
	b1, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	dirs, _ := os.ReadDir(o.ExportDir)
	if len(dirs) != 1 {
		t.Fatalf("%d entries in ExportDir, want 1 cache directory", len(dirs))
	}
	dir := filepath.Join(o.ExportDir, dirs[0].Name())
	files, _ := os.ReadDir(dir)
	if len(files) != 6 {
		t.Fatalf("cache %s holds %d files, want 3 graphs and 3 data files", dir, len(files))
	}
	st1, _ := os.Stat(filepath.Join(dir, "decoder.onnx"))
	b2, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	st2, _ := os.Stat(filepath.Join(dir, "decoder.onnx"))
	if !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("the second load rewrote the cached decoder graph")
	}
	ctx := context.Background()
	img := heldout(t, 1)
	p1, err := b1.Encode(ctx, img[0], engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b2.Encode(ctx, img[0], engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if countDiff(p1.IDs, p2.IDs) != 0 {
		t.Error("the cached graphs give other ids")
	}
	o.FP16 = true
	b3, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close()
	if dirs, _ := os.ReadDir(o.ExportDir); len(dirs) != 2 {
		t.Errorf("FP16 shares the float32 cache (%d directories)", len(dirs))
	}
}

// TestBackendDecodeBatch: a batch decode in ONNX Runtime gives each payload the Go engine's
// image (within the decode bounds) and its own single decode up to float rounding.
func TestBackendDecodeBatch(t *testing.T) {
	b, e := loadDefaultPair(t, needORT(t))
	ctx := context.Background()
	ps, err := e.EncodeBatch(ctx, heldout(t, 4), engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ps[2].IDs = ps[2].IDs[:3]
	do := engine.DecodeOptions{Steps: 4, Guidance: 3, APG: true, Seed: 9}
	got, err := b.DecodeBatch(ctx, ps, do)
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.DecodeBatch(ctx, ps, do)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		single, err := b.Decode(ctx, ps[i], do)
		if err != nil {
			t.Fatal(err)
		}
		nmse, maxAbs := imageStats(got[i].Data, want[i].Data)
		nmse1, _ := imageStats(got[i].Data, single.Data)
		t.Logf("payload %d: vs engine NMSE %.2g (max abs %.2g); vs its single ORT decode NMSE %.2g", i, nmse, maxAbs, nmse1)
		if nmse > 1e-10 || maxAbs > 1e-4 || nmse1 > 1e-10 {
			t.Errorf("payload %d: NMSE %.3g (engine), %.3g (single decode), max abs %.3g: over 1e-10, 1e-4", i, nmse, nmse1, maxAbs)
		}
	}
}

// BenchmarkDecodeBatch: 8 payloads of the default model (10 guided steps) decoded one by one,
// by 8 concurrent calls and as one batch, on the Go engine's fast path and in ONNX Runtime
// (CPU).
func BenchmarkDecodeBatch(b *testing.B) {
	o := needORT(b)
	o.IntraOpThreads = 0
	d := models.Default()
	ort, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	if err != nil {
		b.Fatal(err)
	}
	defer ort.Close()
	eng, err := engine.LoadBytes(d.Weights, d.Config, d.VAEConfig, engine.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	imgs := make([]image.Image, 8)
	for i := range imgs {
		imgs[i] = image.NewGray(image.Rect(0, 0, 32+i, 32))
	}
	ps, err := eng.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	do := engine.DecodeOptions{Steps: 10, Guidance: 1.5}
	type decoder interface {
		Decode(context.Context, *payload.Payload, engine.DecodeOptions) (tensor.Tensor, error)
		DecodeBatch(context.Context, []*payload.Payload, engine.DecodeOptions) ([]tensor.Tensor, error)
	}
	for _, ex := range []struct {
		name string
		d    decoder
	}{{"go", eng}, {"ort", ort}} {
		b.Run(ex.name+"/one-by-one", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, p := range ps {
					if _, err := ex.d.Decode(ctx, p, do); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(ps))/b.Elapsed().Seconds(), "images/s")
		})
		b.Run(ex.name+"/concurrent", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var wg sync.WaitGroup
				for _, p := range ps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := ex.d.Decode(ctx, p, do); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*len(ps))/b.Elapsed().Seconds(), "images/s")
		})
		b.Run(ex.name+"/batch", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := ex.d.DecodeBatch(ctx, ps, do); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(ps))/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// TestBackendThroughFiles: graphs too large for memory (all of them here, with the limit at 0)
// go through a temporary directory that Close removes; nothing is written elsewhere (not in
// the working directory) and the results are those of the in-memory graphs.
func TestBackendThroughFiles(t *testing.T) {
	o := needORT(t)
	wd, _ := os.Getwd()
	before, _ := os.ReadDir(wd)
	defer func(v int) { inMemoryLimit = v }(inMemoryLimit)
	inMemoryLimit = 0
	b, e := loadDefaultPair(t, o)
	if b.dir == "" {
		t.Fatal("no temporary export directory")
	}
	if files, _ := os.ReadDir(b.dir); len(files) != 6 {
		t.Errorf("%d files in %s, want 3 graphs and 3 data files", len(files), b.dir)
	}
	ctx := context.Background()
	img := heldout(t, 1)[0]
	got, err := b.Encode(ctx, img, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.Encode(ctx, img, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if countDiff(got.IDs, want.IDs) != 0 {
		t.Error("ids through files differ from the engine's")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s: %v", b.dir, err)
	}
	if after, _ := os.ReadDir(wd); len(after) != len(before) {
		t.Errorf("the working directory gained %d entries", len(after)-len(before))
	}
}

// TestBackendImageSize: graphs exported at a size smaller than the model's tables
// (Options.ImageSize) encode to the engine's ids at that size and decode its payloads; payloads
// and requests of another size are refused, naming the option.
func TestBackendImageSize(t *testing.T) {
	o := needORT(t)
	o.ImageSize = 24
	dir := filepath.Join("..", "conformance", "testdata", "official", "c1_w32_zero_e2")
	b, e, m := loadPair(t, dir, o)
	if h, w := b.ImageSize(); h != 24 || w != 24 {
		t.Fatalf("ImageSize %dx%d, want 24x24", h, w)
	}
	ctx := context.Background()
	imgs := heldout(t, 2)
	got, err := b.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.EncodeBatch(ctx, imgs, engine.EncodeOptions{Size: 24})
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].Image != want[i].Image || countDiff(got[i].IDs, want[i].IDs) != 0 {
			t.Fatalf("image %d: ORT payload %+v differs from the engine's at 24 px %+v", i, got[i].Image, want[i].Image)
		}
	}
	dopt := engine.DecodeOptions{Steps: 3, Guidance: 3, APG: true, Seed: 1}
	gi, err := b.Decode(ctx, want[0], dopt)
	if err != nil {
		t.Fatal(err)
	}
	wi, err := e.Decode(ctx, want[0], dopt)
	if err != nil {
		t.Fatal(err)
	}
	if nmse, maxAbs := imageStats(gi.Data, wi.Data); nmse > 1e-10 || maxAbs > 1e-4 { // the bounds of TestBackendOfficialCases
		t.Errorf("decode at 24 px: NMSE %.3g, max abs %.3g", nmse, maxAbs)
	}
	p32, err := e.Encode(ctx, imgs[0], engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decode(ctx, p32, dopt); err == nil || !strings.Contains(err.Error(), "ImageSize") {
		t.Errorf("a 32 px payload on 24 px graphs: %v", err)
	}
	if _, err := b.Encode(ctx, imgs[0], engine.EncodeOptions{Size: 32}); err == nil || !strings.Contains(err.Error(), "ImageSize") {
		t.Errorf("encode at 32 px on 24 px graphs: %v", err)
	}
	o.ImageSize = 26
	if _, err := New(m, o); err == nil || !strings.Contains(err.Error(), "multiples of 4x4") {
		t.Errorf("ImageSize 26: %v", err)
	}
}

// TestBackendParts: a DecodeOnly Backend decodes as a full one (the same graphs) and refuses
// to encode, naming Options.Parts; an EncodeOnly one encodes and refuses to decode.
func TestBackendParts(t *testing.T) {
	o := needORT(t)
	ctx := context.Background()
	full, _ := loadDefaultPair(t, o)
	o.Parts = engine.DecodeOnly
	dec, _ := loadDefaultPair(t, o)
	o.Parts = engine.EncodeOnly
	enc, _ := loadDefaultPair(t, o)
	imgs := heldout(t, 1)
	ps, err := full.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pe, err := enc.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pe[0].IDs, ps[0].IDs) {
		t.Errorf("EncodeOnly ids differ from the full backend's")
	}
	do := engine.DecodeOptions{Steps: 2, Guidance: 2, APG: true}
	want, err := full.Decode(ctx, ps[0], do)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dec.Decode(ctx, ps[0], do)
	if err != nil {
		t.Fatal(err)
	}
	if nmse, maxAbs := imageStats(got.Data, want.Data); maxAbs != 0 {
		t.Errorf("DecodeOnly decode differs from the full backend's: NMSE %.3g, max abs %.3g", nmse, maxAbs)
	}
	if _, err := dec.Encode(ctx, imgs[0], engine.EncodeOptions{}); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "Options.Parts = DecodeOnly") {
		t.Errorf("DecodeOnly Encode: err = %v", err)
	}
	if _, err := enc.Decode(ctx, ps[0], do); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "Options.Parts = EncodeOnly") {
		t.Errorf("EncodeOnly Decode: err = %v", err)
	}
	o.Parts = 7
	d := models.Default()
	if _, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o); err == nil {
		t.Error("Parts(7) loads")
	}
}
