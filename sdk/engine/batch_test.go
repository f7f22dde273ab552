package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// batchImages are heldout images (the model's own 32x32 size) plus synthetic ones of other
// sizes and aspect ratios, so the resize and crop run too.
func batchImages(t testing.TB) []image.Image {
	t.Helper()
	var imgs []image.Image
	for _, name := range []string{"000_cross.png", "003_circle.png", "006_star.png", "013_hexagon.png"} {
		f, err := os.Open(filepath.Join("..", "..", "testdata", "heldout", name))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := ftimage.Decode(f, ftimage.Limits{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	for i, sz := range [][2]int{{40, 30}, {17, 64}, {32, 32}} {
		m := image.NewNRGBA(image.Rect(0, 0, sz[0], sz[1]))
		for y := 0; y < sz[1]; y++ {
			for x := 0; x < sz[0]; x++ {
				m.Set(x, y, color.NRGBA{uint8(x*7 + i*50), uint8(y * 5), uint8((x ^ y) * 3), 255})
			}
		}
		imgs = append(imgs, m)
	}
	return imgs
}

// TestEncodeBatchMatchesEncode: the payloads of one EncodeBatch call equal, byte for byte, those
// of Encode on each image in turn, on the reference path and on the fast multi-threaded one,
// for every token count; and the register latents before quantisation are the same floats.
func TestEncodeBatchMatchesEncode(t *testing.T) {
	d := defaultFiles(t)
	imgs := batchImages(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    Options
	}{{"reference", Options{}}, {"default", DefaultOptions()}} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []EncodeOptions{{}, {K: 5, Filter: ftimage.FilterCatmullRom}} {
				got, err := e.EncodeBatch(ctx, imgs, o)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(imgs) {
					t.Fatalf("%d payloads for %d images", len(got), len(imgs))
				}
				for i, img := range imgs {
					want, err := e.Encode(ctx, img, o)
					if err != nil {
						t.Fatal(err)
					}
					wb, _ := want.MarshalBinary()
					gb, err := got[i].MarshalBinary()
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(wb, gb) {
						t.Fatalf("options %+v, image %d: batched payload differs from Encode's\n%+v\n%+v", o, i, got[i], want)
					}
				}
			}

			// The floats under the ids: registers of the batch equal the single-image ones bit for bit.
			H, W := e.ImageSize()
			n := 3 * H * W
			x := tensor.Tensor{Shape: []int{len(imgs), 3, H, W}, Data: make([]float32, len(imgs)*n)}
			for i, img := range imgs {
				ti, _, err := ftimage.ToTensor(img, ftimage.Preprocess{Height: H, Width: W})
				if err != nil {
					t.Fatal(err)
				}
				copy(x.Data[i*n:], ti.Data)
			}
			regs := func(x tensor.Tensor) []float32 {
				lat, err := e.vae.Encode(ctx, x)
				if err != nil {
					t.Fatal(err)
				}
				z, err := e.enc.Registers(ctx, lat)
				if err != nil {
					t.Fatal(err)
				}
				return z.Data
			}
			all := regs(x)
			per := len(all) / len(imgs)
			for i := range imgs {
				one := regs(tensor.Tensor{Shape: []int{1, 3, H, W}, Data: x.Data[i*n : (i+1)*n]})
				for j, v := range one {
					if math.Float32bits(v) != math.Float32bits(all[i*per+j]) {
						t.Fatalf("image %d register value %d: %v alone, %v in the batch", i, j, v, all[i*per+j])
					}
				}
			}
		})
	}
}

func TestEncodeBatchErrors(t *testing.T) {
	e := loadDefault(t)
	ctx := context.Background()
	imgs := batchImages(t)[:3]
	if p, err := e.EncodeBatch(ctx, nil, EncodeOptions{}); err != nil || len(p) != 0 {
		t.Fatalf("empty batch: %v %v", p, err)
	}
	bad := append([]image.Image{}, imgs...)
	bad[2] = image.NewNRGBA(image.Rect(0, 0, 0, 0))
	if _, err := e.EncodeBatch(ctx, bad, EncodeOptions{}); err == nil || !strings.Contains(err.Error(), "image 2 ") {
		t.Fatalf("empty image at index 2: err = %v", err)
	}
	bad[2] = nil
	if _, err := e.EncodeBatch(ctx, bad, EncodeOptions{}); !errors.Is(err, ErrArgument) || !strings.Contains(err.Error(), "image 2 ") {
		t.Fatalf("nil image at index 2: err = %v", err)
	}
	if _, err := e.EncodeBatch(ctx, imgs, EncodeOptions{K: e.MaxTokens() + 1}); !errors.Is(err, ErrArgument) {
		t.Fatalf("k over max: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.EncodeBatch(cctx, imgs, EncodeOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// BenchmarkEncodeBatch: images/s of the default model, one image per call against batches.
func BenchmarkEncodeBatch(b *testing.B) {
	d := defaultFiles(b)
	e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	var imgs []image.Image
	for len(imgs) < 64 {
		imgs = append(imgs, batchImages(b)[:4]...)
	}
	for _, size := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			for b.Loop() {
				for i := 0; i < len(imgs); i += size {
					if _, err := e.EncodeBatch(context.Background(), imgs[i:i+size], EncodeOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(imgs)*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// TestDecodeBatch: DecodeBatch gives every payload exactly Decode's image (portable and fast
// paths), with payloads of different lengths in one batch; bad batches are errors naming the
// payload.
func TestDecodeBatch(t *testing.T) {
	d := defaultFiles(t)
	for _, o := range []Options{{}, DefaultOptions()} {
		e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		ps, err := e.EncodeBatch(ctx, batchImages(t)[:3], EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ps[1].IDs = ps[1].IDs[:4]
		ps[2].IDs = ps[2].IDs[:1]
		do := DecodeOptions{Steps: 3, Guidance: 2, APG: true, Seed: 5}
		got, err := e.DecodeBatch(ctx, ps, do)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			want, err := e.Decode(ctx, p, do)
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, fmt.Sprintf("fast=%v payload %d", o.Fast, i), got[i].Data, want.Data)
		}
		other := *ps[1]
		other.Model.Digest[0] ^= 1
		if _, err := e.DecodeBatch(ctx, []*payload.Payload{ps[0], &other}, do); !errors.Is(err, ErrModelMismatch) || !strings.Contains(err.Error(), "payload 1") {
			t.Errorf("a payload of another model: %v", err)
		}
		if _, err := e.DecodeBatch(ctx, nil, do); !errors.Is(err, ErrArgument) {
			t.Errorf("an empty batch: %v", err)
		}
		noisy := do
		noisy.Noise = &tensor.Tensor{}
		if _, err := e.DecodeBatch(ctx, ps, noisy); !errors.Is(err, ErrArgument) {
			t.Errorf("Noise with a batch: %v", err)
		}
	}
}

// TestBatchThreadsBitIdentical: a batch of small images gives the same bits on one thread
// and on several, on both paths, although several threads share its images (VAE, encoder)
// and items (decoder) between goroutines instead of splitting kernels.
func TestBatchThreadsBitIdentical(t *testing.T) {
	d := defaultFiles(t)
	imgs := batchImages(t)
	ctx := context.Background()
	for _, fast := range []bool{false, true} {
		var wantP [][]byte
		var wantX []string
		for _, threads := range []int{1, 2, 3} {
			e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, Options{Threads: threads, Fast: fast})
			if err != nil {
				t.Fatal(err)
			}
			ps, err := e.EncodeBatch(ctx, imgs, EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			xs, err := e.DecodeBatch(ctx, ps, DecodeOptions{Steps: 2, Guidance: 1.5})
			if err != nil {
				t.Fatal(err)
			}
			for i := range ps {
				b, _ := ps[i].MarshalBinary()
				h := tensor.SHA256(xs[i].Data)
				if threads == 1 {
					wantP, wantX = append(wantP, b), append(wantX, h)
					continue
				}
				if string(b) != string(wantP[i]) || h != wantX[i] {
					t.Fatalf("fast=%v threads=%d: image %d differs from one thread", fast, threads, i)
				}
			}
		}
	}
}

// TestBatchThreadsCancel: a cancelled batch shared between threads fails once with the
// context's error (not once per thread).
func TestBatchThreadsCancel(t *testing.T) {
	d := defaultFiles(t)
	e, err := LoadBytes(d.Weights, d.Config, d.VAEConfig, Options{Threads: 2, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x := tensor.Tensor{Shape: []int{4, 3, 32, 32}, Data: make([]float32, 4*3*32*32)}
	if _, err := e.EncodeTensor(ctx, x); !errors.Is(err, context.Canceled) || strings.Count(err.Error(), "canceled") != 1 {
		t.Fatalf("EncodeTensor: %v", err)
	}
	lat := e.geo.Latent(e.ImageSize())
	if _, err := e.enc.Registers(ctx, tensor.Tensor{Shape: []int{4, lat[0], lat[1], lat[2]}, Data: make([]float32, 4*lat[0]*lat[1]*lat[2])}); err != context.Canceled {
		t.Fatalf("Registers: %v", err)
	}
}

// TestForEach: every index once, and a panic reaches the caller.
func TestForEach(t *testing.T) {
	seen := make([]int, 50)
	var mu sync.Mutex
	forEach(3, len(seen), func(i int) { mu.Lock(); seen[i]++; mu.Unlock() })
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("index %d ran %d times", i, n)
		}
	}
	defer func() {
		if r := recover(); r != "index 7" {
			t.Fatalf("recovered %v", r)
		}
	}()
	forEach(3, 10, func(i int) {
		if i == 7 {
			panic("index 7")
		}
	})
	t.Fatal("no panic reached the caller")
}

// TestInPartsPanic: a panic in a part reaches the caller of inParts.
func TestInPartsPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != "part" {
			t.Fatalf("recovered %v", r)
		}
	}()
	_ = inParts(4, 2, func(lo, hi int) error {
		if lo == 2 {
			panic("part")
		}
		return nil
	})
	t.Fatal("no panic reached the caller")
}
