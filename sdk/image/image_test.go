package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// webpLossless and webpLossy are a 3×2 image (red, green, blue / (10,20,30), (200,100,50),
// white) saved by Pillow 13 as lossless and lossy (quality 90) WebP.
var (
	webpLossless = []byte("\x52\x49\x46\x46\x42\x00\x00\x00\x57\x45\x42\x50\x56\x50\x38\x4c\x36\x00\x00\x00\x2f\x02\x40\x00\x00\x2f\x40\x90\x6d\xb3\x41\xdc\xeb\xfe\x32\xd3\x20\x93\xb6\xc9\x5f\xff\x76\x66\x6d\x64\xd2\x36\xad\x87\xfd\xf3\xaf\xb2\xf3\x1f\x68\xe4\x91\xac\xfb\x06\x04\x02\x94\xb1\xe2\x81\x6d\x22\xfa\x1f\xe3\x05")
	webpLossy    = []byte("\x52\x49\x46\x46\x6e\x00\x00\x00\x57\x45\x42\x50\x56\x50\x38\x20\x62\x00\x00\x00\x70\x02\x00\x9d\x01\x2a\x03\x00\x02\x00\x00\xc0\x12\x25\xa8\x02\x74\x47\x00\x64\x80\x0e\x50\x03\x8d\x1f\xa7\xc0\x00\xfe\x6d\x3f\xf7\xc9\xfd\x0f\xfb\x17\xd5\xe9\xfc\x80\x07\xff\x9c\xb9\xdc\x1f\xf3\x0e\xff\xd6\xb6\x8b\xbb\xc3\xe8\x58\xff\xef\xe4\xff\xe5\x06\xcc\x35\xf9\xb2\xff\xff\xb0\xcf\xff\xfb\xea\xff\xf9\x41\xb3\x0d\x7e\x6c\xbf\xfd\x86\x7e\x15\x4c\x8b\x5b\xc9\x96\x42\x24\x2d\x56\xd0\x00")
	webpPixels   = [][3]uint8{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}, {200, 100, 50}, {255, 255, 255}}
)

// patternRGB is testdata/gen_pil.py's pattern: gradients, a product term and LCG noise.
func patternRGB(w, h int, seed uint32) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	s := seed
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				s = s*1103515245 + 12345
				noise := int(s>>16) & 0x3f
				img.Pix[img.PixOffset(x, y)+c] = uint8(x*7 + y*13 + c*50 + noise + (x*y%31)*3)
			}
			img.Pix[img.PixOffset(x, y)+3] = 0xff
		}
	}
	return img
}

type golden struct {
	Pillow string
	Cases  []struct {
		Width, Height, Size int
		Seed                uint32
		Filter              string
		Resize, Crop        [2]int
		PixelsSHA256        string `json:"pixels_sha256"`
		TensorSHA256        string `json:"tensor_sha256"`
		First, Last         [3]uint8
	}
	ToByte struct {
		XBits []uint32 `json:"x_bits"`
		Bytes []uint8
	} `json:"to_byte"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile("testdata/pil_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) == 0 || len(g.ToByte.Bytes) == 0 {
		t.Fatal("empty golden file")
	}
	return g
}

func tensorSHA(t tensor.Tensor) string {
	b := make([]byte, 4*len(t.Data))
	for i, v := range t.Data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPillowGolden: resize, crop and tensor are bit-identical to Pillow + torchvision's rules
// for both filters, for shrinking, enlarging, no-op and extreme aspect ratios.
func TestPillowGolden(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Cases {
		img := patternRGB(c.Width, c.Height, c.Seed)
		p := Preprocess{Size: c.Size, Filter: c.Filter}
		pl, err := p.Plan(c.Width, c.Height)
		if err != nil {
			t.Fatal(err)
		}
		if pl.ResizeWidth != c.Resize[0] || pl.ResizeHeight != c.Resize[1] || pl.Left != c.Crop[0] || pl.Top != c.Crop[1] {
			t.Errorf("%dx%d→%d: plan %+v, Pillow resize %v crop %v", c.Width, c.Height, c.Size, pl, c.Resize, c.Crop)
			continue
		}
		f := filterCatmullRom
		if c.Filter == FilterBilinear {
			f = filterBilinear
		}
		px := resampleCrop(toRGB(img), c.Width, c.Height, pl.ResizeWidth, pl.ResizeHeight, pl.Left, pl.Top, c.Size, c.Size, f)
		sum := sha256.Sum256(px)
		if got := hex.EncodeToString(sum[:]); got != c.PixelsSHA256 {
			t.Errorf("%dx%d→%d %s: pixels sha256 %s, Pillow %s (first %v vs %v, last %v vs %v)", c.Width, c.Height, c.Size, c.Filter,
				got[:12], c.PixelsSHA256[:12], px[:3], c.First, px[len(px)-3:], c.Last)
		}
		tt, rec, err := ToTensor(img, p)
		if err != nil {
			t.Fatal(err)
		}
		if got := tensorSHA(tt); got != c.TensorSHA256 {
			t.Errorf("%dx%d→%d %s: tensor sha256 %s, torch %s", c.Width, c.Height, c.Size, c.Filter, got[:12], c.TensorSHA256[:12])
		}
		if rec.Width != c.Size || rec.Height != c.Size || rec.Resize != c.Filter || rec.Crop != CropCenter ||
			rec.SourceWidth != c.Width || rec.SourceHeight != c.Height {
			t.Errorf("payload record %+v", rec)
		}
	}
}

// TestToByteGolden: FromTensor's conversion equals batch_to_pil's in float32, value by value.
func TestToByteGolden(t *testing.T) {
	g := loadGolden(t)
	for i, bits := range g.ToByte.XBits {
		x := math.Float32frombits(bits)
		if got := toByte(x); got != g.ToByte.Bytes[i] {
			t.Errorf("toByte(%v) = %d, numpy %d", x, got, g.ToByte.Bytes[i])
		}
	}
}

func TestRoundTripEveryByte(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 256, 3))
	for x := 0; x < 256; x++ {
		for y := 0; y < 3; y++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x), uint8(255 - x), uint8(x * 7), 255})
		}
	}
	tt, _, err := ToTensor(img, Preprocess{Height: 3, Width: 256})
	if err != nil {
		t.Fatal(err)
	}
	if tt.Shape[0] != 3 || tt.Shape[1] != 3 || tt.Shape[2] != 256 {
		t.Fatalf("shape %v", tt.Shape)
	}
	if tt.Data[0] != -1 || tt.Data[255] != 1 || tt.Data[128] != float32((float32(128)/255-0.5)/0.5) {
		t.Errorf("known values: %v %v %v", tt.Data[0], tt.Data[255], tt.Data[128])
	}
	for _, v := range tt.Data {
		if v < -1 || v > 1 {
			t.Fatalf("value %v outside [-1, 1]", v)
		}
	}
	back, err := FromTensor(tt)
	if err != nil {
		t.Fatal(err)
	}
	// The official float32 pipeline (Normalize, then denormalize and mul(255).byte()) maps bytes
	// 1..63 to v-1: (v/255 - 0.5) rounds below 0.25 and truncation keeps the loss. testdata's
	// numpy golden (TestToByteGolden) confirms Python does the same.
	for i := 0; i < len(img.Pix); i++ {
		v, want := img.Pix[i], img.Pix[i]
		if i%4 != 3 && v >= 1 && v <= 63 {
			want = v - 1
		}
		if back.Pix[i] != want {
			t.Fatalf("byte %d came back as %d, want %d", v, back.Pix[i], want)
		}
	}
	// [1 3 H W] is accepted too.
	tt.Shape = []int{1, 3, 3, 256}
	if _, err := FromTensor(tt); err != nil {
		t.Error(err)
	}
}

func TestFromTensorErrors(t *testing.T) {
	for _, tt := range []tensor.Tensor{
		{Shape: []int{3, 2, 2}, Data: make([]float32, 11)},
		{Shape: []int{4, 2, 2}, Data: make([]float32, 16)},
		{Shape: []int{2, 3, 2, 2}, Data: make([]float32, 24)},
		{Shape: []int{3, 0, 2}, Data: nil},
		{Shape: []int{12}, Data: make([]float32, 12)},
	} {
		if _, err := FromTensor(tt); !errors.Is(err, ErrArgument) {
			t.Errorf("shape %v: err %v, want ErrArgument", tt.Shape, err)
		}
	}
	// Out-of-range and NaN values clamp.
	tt := tensor.Tensor{Shape: []int{3, 1, 1}, Data: []float32{-5, float32(math.NaN()), 7}}
	img, err := FromTensor(tt)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.NRGBAAt(0, 0); got != (color.NRGBA{0, 0, 255, 255}) {
		t.Errorf("clamped pixel %v", got)
	}
}

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		p                       Preprocess
		w, h                    int
		rw, rh, left, top, W, H int
	}{
		{Preprocess{}, 640, 480, 341, 256, 42, 0, 256, 256}, // round(42.5) = 42, half to even
		{Preprocess{}, 480, 640, 256, 341, 0, 42, 256, 256},
		{Preprocess{}, 256, 256, 256, 256, 0, 0, 256, 256},
		{Preprocess{}, 300, 256, 300, 256, 22, 0, 256, 256},
		{Preprocess{}, 343, 256, 343, 256, 44, 0, 256, 256}, // round(43.5) = 44
		{Preprocess{Size: 32}, 100, 50, 64, 32, 16, 0, 32, 32},
		{Preprocess{Size: 256}, 1, 1, 256, 256, 0, 0, 256, 256},
		{Preprocess{Size: 16}, 1000, 7, 2285, 16, 1134, 0, 16, 16}, // int(16*1000/7) = 2285
		{Preprocess{Height: 24, Width: 40}, 50, 80, 40, 64, 0, 20, 40, 24},
		{Preprocess{Height: 24, Width: 40}, 200, 50, 96, 24, 28, 0, 40, 24},
	} {
		pl, err := c.p.Plan(c.w, c.h)
		if err != nil {
			t.Fatal(err)
		}
		if pl.ResizeWidth != c.rw || pl.ResizeHeight != c.rh || pl.Left != c.left || pl.Top != c.top || pl.Width != c.W || pl.Height != c.H {
			t.Errorf("%+v on %dx%d: %+v, want resize %dx%d at (%d,%d) size %dx%d", c.p, c.w, c.h, pl, c.rw, c.rh, c.left, c.top, c.W, c.H)
		}
	}
	for _, p := range []Preprocess{{Size: -1}, {Filter: "lanczos"}, {Crop: "top"}, {Size: 256, Height: 128, Width: 128}, {Height: 5}, {Size: 1 << 20}} {
		if _, err := p.Plan(10, 10); !errors.Is(err, ErrArgument) {
			t.Errorf("%+v: err %v, want ErrArgument", p, err)
		}
	}
	if _, err := (Preprocess{}).Plan(0, 10); !errors.Is(err, ErrEmpty) {
		t.Errorf("zero source: %v", err)
	}
	if _, _, err := ToTensor(image.NewRGBA(image.Rect(0, 0, 5, 0)), Preprocess{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("zero image: %v", err)
	}
	if _, _, err := ToTensor(nil, Preprocess{}); !errors.Is(err, ErrArgument) {
		t.Errorf("nil image: %v", err)
	}
}

// TestWindowEqualsCrop: computing only the crop window equals resizing everything then cropping.
func TestWindowEqualsCrop(t *testing.T) {
	img := toRGB(patternRGB(71, 45, 9))
	for _, f := range []resampleFilter{filterBilinear, filterCatmullRom} {
		for _, sz := range [][2]int{{30, 19}, {140, 90}, {71, 20}, {20, 45}} {
			full := resampleCrop(img, 71, 45, sz[0], sz[1], 0, 0, sz[0], sz[1], f)
			l, tp, cw, ch := sz[0]/3, sz[1]/4, sz[0]/2, sz[1]/2
			win := resampleCrop(img, 71, 45, sz[0], sz[1], l, tp, cw, ch, f)
			for y := 0; y < ch; y++ {
				a := full[((tp+y)*sz[0]+l)*3 : ((tp+y)*sz[0]+l+cw)*3]
				if !bytes.Equal(a, win[y*cw*3:(y+1)*cw*3]) {
					t.Fatalf("%s %v: row %d of the window differs", f.name, sz, y)
				}
			}
		}
	}
}

// TestColorModels: every image type converts to the straight RGB that PIL's convert("RGB") gives
// (alpha dropped, not composited), through the fast path and through the generic path.
func TestColorModels(t *testing.T) {
	r := image.Rect(0, 0, 2, 1)
	type tc struct {
		name string
		img  image.Image
		want [2][3]uint8
	}
	var cases []tc
	add := func(name string, img image.Image, want [2][3]uint8) { cases = append(cases, tc{name, img, want}) }

	rgba := image.NewRGBA(r)
	rgba.SetRGBA(0, 0, color.RGBA{10, 20, 30, 255})
	rgba.SetRGBA(1, 0, color.RGBA{50, 25, 0, 128}) // premultiplied: straight ≈ (99, 49, 0)
	add("RGBA", rgba, [2][3]uint8{{10, 20, 30}, {99, 49, 0}})

	nrgba := image.NewNRGBA(r)
	nrgba.SetNRGBA(0, 0, color.NRGBA{10, 20, 30, 0}) // fully transparent: colour kept, as PIL
	nrgba.SetNRGBA(1, 0, color.NRGBA{200, 100, 50, 77})
	add("NRGBA", nrgba, [2][3]uint8{{10, 20, 30}, {200, 100, 50}})

	rgba64 := image.NewRGBA64(r)
	rgba64.SetRGBA64(0, 0, color.RGBA64{0x1234, 0xabcd, 0xffff, 0xffff})
	rgba64.SetRGBA64(1, 0, color.RGBA64{0x4000, 0x2000, 0, 0x8000})
	add("RGBA64", rgba64, [2][3]uint8{{0x12, 0xab, 0xff}, {0x7f, 0x3f, 0}})

	nrgba64 := image.NewNRGBA64(r)
	nrgba64.SetNRGBA64(0, 0, color.NRGBA64{0x12ff, 0xab00, 0xffff, 0})
	nrgba64.SetNRGBA64(1, 0, color.NRGBA64{0x0100, 0x00ff, 0x8080, 0x1234})
	add("NRGBA64", nrgba64, [2][3]uint8{{0x12, 0xab, 0xff}, {1, 0, 0x80}})

	gray := image.NewGray(r)
	gray.SetGray(0, 0, color.Gray{0})
	gray.SetGray(1, 0, color.Gray{173})
	add("Gray", gray, [2][3]uint8{{0, 0, 0}, {173, 173, 173}})

	gray16 := image.NewGray16(r)
	gray16.SetGray16(0, 0, color.Gray16{0x01ff}) // high byte (PIL would clip I;16 to 255)
	gray16.SetGray16(1, 0, color.Gray16{0xffff})
	add("Gray16", gray16, [2][3]uint8{{1, 1, 1}, {255, 255, 255}})

	alpha := image.NewAlpha(r)
	alpha.SetAlpha(0, 0, color.Alpha{0})
	alpha.SetAlpha(1, 0, color.Alpha{200})
	add("Alpha", alpha, [2][3]uint8{{0, 0, 0}, {200, 200, 200}})

	alpha16 := image.NewAlpha16(r)
	alpha16.SetAlpha16(1, 0, color.Alpha16{0xc8ff})
	add("Alpha16", alpha16, [2][3]uint8{{0, 0, 0}, {200, 200, 200}})

	cmyk := image.NewCMYK(r)
	cmyk.SetCMYK(0, 0, color.CMYK{100, 50, 25, 128}) // Pillow: (77, 102, 115)
	cmyk.SetCMYK(1, 0, color.CMYK{255, 0, 0, 0})     // Pillow: (0, 255, 255)
	add("CMYK", cmyk, [2][3]uint8{{77, 102, 115}, {0, 255, 255}})

	pal := image.NewPaletted(r, color.Palette{color.RGBA{1, 2, 3, 255}, color.NRGBA{200, 150, 100, 0}})
	pal.SetColorIndex(0, 0, 1)
	pal.SetColorIndex(1, 0, 0)
	add("Paletted", pal, [2][3]uint8{{200, 150, 100}, {1, 2, 3}})
	palShort := image.NewPaletted(r, color.Palette{color.Gray{9}})
	palShort.Pix[1] = 7 // past the palette: black
	add("PalettedShort", palShort, [2][3]uint8{{9, 9, 9}, {0, 0, 0}})

	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio420} {
		yc := image.NewYCbCr(r, ratio)
		yc.Y[0], yc.Y[1] = 50, 200
		for i := range yc.Cb {
			yc.Cb[i], yc.Cr[i] = 90, 160
		}
		r0, g0, b0 := color.YCbCrToRGB(50, 90, 160)
		r1, g1, b1 := color.YCbCrToRGB(200, 90, 160)
		add("YCbCr"+ratio.String(), yc, [2][3]uint8{{r0, g0, b0}, {r1, g1, b1}})
		add("NYCbCrA"+ratio.String(), &image.NYCbCrA{YCbCr: *yc, A: []uint8{0, 9}, AStride: 2}, [2][3]uint8{{r0, g0, b0}, {r1, g1, b1}})
	}

	for _, c := range cases {
		got := toRGB(c.img)
		want := append(c.want[0][:], c.want[1][:]...)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %v, want %v", c.name, got, want)
		}
		// The generic path (image.Image hidden behind another type) agrees.
		if c.name != "PalettedShort" { // Paletted.At panics past the palette
			if g := toRGB(opaqueWrapper{c.img}); !bytes.Equal(g, want) {
				t.Errorf("%s via At: %v, want %v", c.name, g, want)
			}
		}
		// A sub-image with a non-zero origin reads the right pixels.
		if s, ok := c.img.(interface {
			SubImage(image.Rectangle) image.Image
		}); ok {
			if g := toRGB(s.SubImage(image.Rect(1, 0, 2, 1))); !bytes.Equal(g, want[3:]) {
				t.Errorf("%s sub-image: %v, want %v", c.name, g, want[3:])
			}
		}
		// Through ToTensor at the image's own size (no resampling): exact values.
		tt, _, err := ToTensor(c.img, Preprocess{Height: 1, Width: 2})
		if err != nil {
			t.Fatal(err)
		}
		for ch := 0; ch < 3; ch++ {
			for x := 0; x < 2; x++ {
				if v := tt.Data[ch*2+x]; v != toUnit[want[3*x+ch]] {
					t.Errorf("%s: tensor[%d,0,%d] = %v, want %v", c.name, ch, x, v, toUnit[want[3*x+ch]])
				}
			}
		}
	}
}

// opaqueWrapper hides the concrete type so toRGB takes its generic path.
type opaqueWrapper struct{ image.Image }

func encodeAll(t testing.TB, img image.Image) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var b bytes.Buffer
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(png.Encode(&b, img))
	out["png"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	must(jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}))
	out["jpeg"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	must(gif.Encode(&b, img, nil))
	out["gif"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	must(bmp.Encode(&b, img))
	out["bmp"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	must(tiff.Encode(&b, img, nil))
	out["tiff"] = append([]byte(nil), b.Bytes()...)
	out["webp"] = webpLossless
	return out
}

func TestDecodeFormats(t *testing.T) {
	src := patternRGB(12, 7, 3)
	for name, data := range encodeAll(t, src) {
		img, info, err := Decode(bytes.NewReader(data), Limits{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := [2]int{12, 7}
		if name == "webp" {
			want = [2]int{3, 2}
		}
		if info.Format != name || info.Width != want[0] || info.Height != want[1] || info.Bytes != int64(len(data)) {
			t.Errorf("%s: info %+v", name, info)
		}
		if b := img.Bounds(); b.Dx() != want[0] || b.Dy() != want[1] {
			t.Errorf("%s: bounds %v", name, b)
		}
		switch name {
		case "png", "bmp", "tiff": // lossless
			if !bytes.Equal(toRGB(img), toRGB(src)) {
				t.Errorf("%s: pixels changed", name)
			}
		}
	}
	for name, data := range map[string][]byte{"lossless": webpLossless, "lossy": webpLossy} {
		img, _, err := DecodeBytes(data, Limits{})
		if err != nil {
			t.Fatalf("webp %s: %v", name, err)
		}
		got := toRGB(img)
		if name == "lossless" {
			for i, p := range webpPixels {
				if [3]uint8(got[3*i:3*i+3]) != p {
					t.Errorf("webp lossless pixel %d: %v, want %v", i, got[3*i:3*i+3], p)
				}
			}
			continue
		}
		// Lossy 4:2:0 smears chroma across 2×2 blocks: compare channel means.
		for c := 0; c < 3; c++ {
			var sg, sw int
			for i, p := range webpPixels {
				sg += int(got[3*i+c])
				sw += int(p[c])
			}
			if d := (sg - sw) / len(webpPixels); d < -20 || d > 20 {
				t.Errorf("webp lossy channel %d mean off by %d", c, d)
			}
		}
	}
}

// pngHeader returns a PNG signature and a valid IHDR chunk (8-bit RGB) for w×h, and nothing more.
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	chunk := []byte("IHDR")
	chunk = binary.BigEndian.AppendUint32(chunk, w)
	chunk = binary.BigEndian.AppendUint32(chunk, h)
	chunk = append(chunk, 8, 2, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, 13)
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

func TestDecodeLimits(t *testing.T) {
	// A header declaring 100000×100000 is refused before decoding.
	_, info, err := DecodeBytes(pngHeader(100000, 100000), Limits{})
	if !errors.Is(err, ErrTooLarge) || info.Width != 100000 {
		t.Errorf("bomb: %v, %+v", err, info)
	}
	// Just over a custom limit.
	data := encodeAll(t, patternRGB(10, 10, 1))
	for name, d := range data {
		if name == "webp" {
			continue
		}
		if _, _, err := DecodeBytes(d, Limits{MaxPixels: 99}); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s over MaxPixels: %v", name, err)
		}
		if _, _, err := DecodeBytes(d, Limits{MaxPixels: 100}); err != nil {
			t.Errorf("%s at MaxPixels: %v", name, err)
		}
		if _, _, err := Decode(bytes.NewReader(d), Limits{MaxBytes: int64(len(d) - 1)}); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s over MaxBytes: %v", name, err)
		}
	}
	// Zero sides.
	for _, d := range [][]byte{pngHeader(0, 10), pngHeader(10, 0), []byte("GIF89a\x00\x00\x05\x00\x00\x00\x00;")} {
		if _, _, err := DecodeBytes(d, Limits{}); !errors.Is(err, ErrEmpty) {
			t.Errorf("zero size %q: %v", d[:8], err)
		}
	}
	if _, _, err := Decode(bytes.NewReader(nil), Limits{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("no bytes: %v", err)
	}
}

func TestDecodeBadInput(t *testing.T) {
	for _, d := range [][]byte{[]byte("hello, world"), {0}, []byte("<svg></svg>"), []byte("\x89PN")} {
		_, _, err := DecodeBytes(d, Limits{})
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v, want ErrFormat", d, err)
		}
		if err != nil && err.Error()[:15] != "flextok/image: " {
			t.Errorf("message %q lacks the prefix", err)
		}
	}
	// Truncated files of every format fail cleanly.
	for name, d := range encodeAll(t, patternRGB(16, 9, 7)) {
		for _, n := range []int{len(d) / 4, len(d) / 2, len(d) - 1} {
			_, _, err := DecodeBytes(d[:n], Limits{})
			if err == nil {
				// Some formats (bmp/gif) may decode a prefix; a short read must then still not panic.
				continue
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) {
				t.Errorf("%s truncated to %d: %v", name, n, err)
			}
			if msg := err.Error(); strings.Contains(msg, name+": "+name+":") || strings.Contains(msg, name+" header: "+name+":") {
				t.Errorf("%s truncated to %d: the format repeats in %q", name, n, msg)
			}
		}
	}
	// Header fine, pixel data garbage.
	d := append(pngHeader(4, 4), []byte("\x00\x00\x00\x05IDATgarbage")...)
	if _, _, err := DecodeBytes(d, Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage IDAT: %v", err)
	}
	// Random bytes behind every magic number.
	s := uint32(1)
	for i := 0; i < 2000; i++ {
		f := formats[i%len(formats)]
		b := []byte(f.magic)
		for j := range b {
			if b[j] == '?' {
				b[j] = 0
			}
		}
		for j := 0; j < i%300; j++ {
			s = s*1664525 + 1013904223
			b = append(b, byte(s>>24))
		}
		_, _, _ = DecodeBytes(b, Limits{MaxPixels: 1 << 20})
	}
}

func FuzzDecode(f *testing.F) {
	for _, d := range encodeAll(f, patternRGB(5, 3, 11)) {
		f.Add(d)
	}
	f.Add(webpLossy)
	for _, d := range orientedSeeds(f) {
		f.Add(d)
	}
	f.Add(pngHeader(100000, 1))
	f.Add([]byte("BM"))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, info, err := DecodeBytes(data, Limits{MaxPixels: 1 << 16, MaxBytes: 1 << 20})
		if err != nil {
			if img != nil {
				t.Fatal("image with an error")
			}
			return
		}
		b := img.Bounds()
		if b.Empty() || b.Dx()*b.Dy() > 1<<16 || info.Format == "" {
			t.Fatalf("accepted %v %+v", b, info)
		}
		if _, _, err := ToTensor(img, Preprocess{Size: 16}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGridAndPNG(t *testing.T) {
	a := image.NewNRGBA(image.Rect(0, 0, 2, 3))
	for i := range a.Pix {
		a.Pix[i] = 10
	}
	for i := 3; i < len(a.Pix); i += 4 {
		a.Pix[i] = 255
	}
	b := image.NewGray(image.Rect(5, 5, 9, 6)) // 4×1, offset origin
	g, err := Grid([][]image.Image{{a, b}, {nil, a}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.Bounds() != image.Rect(0, 0, 2+1+4, 3+1+3) {
		t.Fatalf("grid bounds %v", g.Bounds())
	}
	for _, c := range []struct {
		x, y int
		want color.NRGBA
	}{
		{0, 0, color.NRGBA{10, 10, 10, 255}}, {1, 2, color.NRGBA{10, 10, 10, 255}},
		{2, 0, color.NRGBA{255, 255, 255, 255}}, // pad
		{3, 0, color.NRGBA{0, 0, 0, 255}}, {6, 0, color.NRGBA{0, 0, 0, 255}},
		{3, 1, color.NRGBA{255, 255, 255, 255}}, // below the short image
		{0, 4, color.NRGBA{255, 255, 255, 255}}, // nil cell
		{3, 4, color.NRGBA{10, 10, 10, 255}},
	} {
		if got := g.NRGBAAt(c.x, c.y); got != c.want {
			t.Errorf("grid (%d,%d) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
	if _, err := Grid(nil, 0); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty grid: %v", err)
	}
	if _, err := Grid([][]image.Image{{a}}, -1); !errors.Is(err, ErrArgument) {
		t.Errorf("negative pad: %v", err)
	}
	var buf bytes.Buffer
	if err := EncodePNG(&buf, g); err != nil {
		t.Fatal(err)
	}
	back, info, err := Decode(&buf, Limits{})
	if err != nil || info.Format != "png" {
		t.Fatal(err, info)
	}
	if !bytes.Equal(toRGB(back), toRGB(g)) {
		t.Error("png round trip changed pixels")
	}
	if err := EncodePNG(&buf, image.NewGray(image.Rect(0, 0, 0, 0))); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty png: %v", err)
	}
}

func ycbcrImage(w, h int) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for i := range img.Y {
		img.Y[i] = uint8(i*7 + i/w)
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = uint8(i*3), uint8(255-i*5)
	}
	return img
}

func BenchmarkToTensor(b *testing.B) {
	img := ycbcrImage(1024, 768)
	for _, f := range []string{FilterCatmullRom, FilterBilinear} {
		b.Run("ycbcr420-1024x768/"+f, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := ToTensor(img, Preprocess{Filter: f}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
