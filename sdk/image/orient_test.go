package image

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// exifBlock is a TIFF structure (an EXIF block) whose first IFD holds the orientation tag o,
// big-endian ("MM") or little-endian ("II").
func exifBlock(order string, o uint16) []byte {
	var bo binary.AppendByteOrder = binary.BigEndian
	b := []byte("MM\x00*")
	if order == "II" {
		bo, b = binary.LittleEndian, []byte("II*\x00")
	}
	b = bo.AppendUint32(b, 8)      // first IFD
	b = bo.AppendUint16(b, 2)      // two entries: another tag, then orientation
	b = bo.AppendUint16(b, 0x010f) // Make, ASCII, 4 bytes inline
	b = bo.AppendUint16(b, 2)      //
	b = bo.AppendUint32(b, 4)      //
	b = append(b, 'G', 'o', 0, 0)  //
	b = bo.AppendUint16(b, 0x0112) // Orientation, SHORT, 1
	b = bo.AppendUint16(b, 3)      //
	b = bo.AppendUint32(b, 1)      //
	b = bo.AppendUint16(b, o)      //
	b = append(b, 0, 0)            // padding of the value field
	return bo.AppendUint32(b, 0)   // no next IFD
}

// withJPEGExif inserts an APP1 Exif segment holding tiff after the JPEG's SOI marker.
func withJPEGExif(jpg, tiff []byte) []byte {
	seg := append([]byte("Exif\x00\x00"), tiff...)
	out := append([]byte{0xff, 0xd8, 0xff, 0xe1}, byte((len(seg)+2)>>8), byte(len(seg)+2))
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// withPNGExif inserts an eXIf chunk holding tiff after the PNG's IHDR chunk.
func withPNGExif(p, tiff []byte) []byte {
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(tiff)))
	chunk = append(chunk, "eXIf"...)
	chunk = append(chunk, tiff...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	const ihdrEnd = 8 + 8 + 13 + 4
	out := append([]byte(nil), p[:ihdrEnd]...)
	out = append(out, chunk...)
	return append(out, p[ihdrEnd:]...)
}

// orientedSeeds are fuzz seeds: JPEG and PNG with orientation tags, and broken EXIF blocks.
func orientedSeeds(t testing.TB) [][]byte {
	img := patternRGB(5, 3, 4)
	var j, p bytes.Buffer
	if err := jpeg.Encode(&j, img, nil); err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(&p, img); err != nil {
		t.Fatal(err)
	}
	tiff6 := exifBlock("MM", 6)
	return [][]byte{
		withJPEGExif(j.Bytes(), tiff6),
		withJPEGExif(j.Bytes(), exifBlock("II", 8)),
		withJPEGExif(j.Bytes(), tiff6[:len(tiff6)-9]), // IFD cut short
		withPNGExif(p.Bytes(), exifBlock("II", 5)),
		withPNGExif(p.Bytes(), []byte("MM\x00*\xff\xff\xff\xf0")), // IFD offset past the end
	}
}

// letters is a 3×2 image whose pixels are a..f (grey levels 1..6), stored as
//
//	a b c
//	d e f
func letters() *image.Gray {
	return &image.Gray{Pix: []uint8{1, 2, 3, 4, 5, 6}, Stride: 3, Rect: image.Rect(0, 0, 3, 2)}
}

// upright are letters() as a viewer shows them for each orientation (EXIF 2.3, tag 0x0112),
// written out by hand: width, then the rows.
var upright = map[int]struct {
	w   int
	pix []uint8
}{
	1: {3, []uint8{1, 2, 3, 4, 5, 6}},
	2: {3, []uint8{3, 2, 1, 6, 5, 4}}, // mirrored
	3: {3, []uint8{6, 5, 4, 3, 2, 1}}, // 180°
	4: {3, []uint8{4, 5, 6, 1, 2, 3}}, // mirrored top to bottom
	5: {2, []uint8{1, 4, 2, 5, 3, 6}}, // transposed
	6: {2, []uint8{4, 1, 5, 2, 6, 3}}, // turned 90° clockwise
	7: {2, []uint8{6, 3, 5, 2, 4, 1}}, // transversed
	8: {2, []uint8{3, 6, 2, 5, 1, 4}}, // turned 90° anticlockwise
}

// TestOrientationPNG: every orientation of a PNG's eXIf chunk, in both byte orders, gives the
// upright image; IgnoreOrientation gives the stored one and still reports the tag.
func TestOrientationPNG(t *testing.T) {
	var b bytes.Buffer
	if err := png.Encode(&b, letters()); err != nil {
		t.Fatal(err)
	}
	for o := 1; o <= 8; o++ {
		for _, order := range []string{"MM", "II"} {
			data := withPNGExif(b.Bytes(), exifBlock(order, uint16(o)))
			img, info, err := DecodeBytes(data, DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g, ok := img.(*image.Gray)
			want := upright[o]
			if !ok || g.Rect != image.Rect(0, 0, want.w, 6/want.w) || !bytes.Equal(g.Pix, want.pix) {
				t.Errorf("orientation %d (%s): %T %v %v, want width %d %v", o, order, img, img.Bounds(), g.Pix, want.w, want.pix)
			}
			if info.Orientation != o || info.Oriented != (o > 1) || info.Width != 3 || info.Height != 2 {
				t.Errorf("orientation %d (%s): info %+v", o, order, info)
			}
			img, info, err = DecodeBytes(data, DecodeOptions{IgnoreOrientation: true})
			if err != nil || !bytes.Equal(img.(*image.Gray).Pix, letters().Pix) || info.Orientation != o || info.Oriented {
				t.Errorf("orientation %d ignored: %v %+v", o, err, info)
			}
		}
	}
}

// TestOrientationJPEG: a camera's portrait JPEG (stored sideways, orientation 6) is tokenized
// upright: dark on the left as stored is dark at the top as shown.
func TestOrientationJPEG(t *testing.T) {
	stored := image.NewGray(image.Rect(0, 0, 32, 16))
	for y := 0; y < 16; y++ {
		for x := 0; x < 32; x++ {
			if x >= 16 {
				stored.Pix[y*32+x] = 255
			}
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, stored, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	for _, order := range []string{"MM", "II"} {
		data := withJPEGExif(b.Bytes(), exifBlock(order, 6))
		img, info, err := DecodeBytes(data, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img.Bounds() != image.Rect(0, 0, 16, 32) || info.Orientation != 6 || !info.Oriented {
			t.Fatalf("%s: %v %+v", order, img.Bounds(), info)
		}
		top, bottom := color.GrayModel.Convert(img.At(8, 2)).(color.Gray), color.GrayModel.Convert(img.At(8, 29)).(color.Gray)
		if top.Y > 30 || bottom.Y < 225 {
			t.Errorf("%s: top %d, bottom %d: not turned clockwise", order, top.Y, bottom.Y)
		}
		raw, _, err := DecodeBytes(data, DecodeOptions{IgnoreOrientation: true})
		if err != nil || raw.Bounds() != stored.Bounds() {
			t.Fatalf("%s ignored: %v %v", order, raw.Bounds(), err)
		}
		// ToTensor sees the upright image: the payload records the shown size.
		_, rec, err := ToTensor(img, Preprocess{Size: 8})
		if err != nil || rec.SourceWidth != 16 || rec.SourceHeight != 32 {
			t.Errorf("%s: ToTensor %+v %v", order, rec, err)
		}
	}
	// Broken or absent EXIF reads as no orientation; the image still decodes.
	tiff := exifBlock("MM", 6)
	for _, bad := range [][]byte{tiff[:12], tiff[:len(tiff)-7], []byte("MM\x00*\x00\x00\x00\x08\xff\xff"), exifBlock("MM", 9), exifBlock("MM", 0), nil} {
		img, info, err := DecodeBytes(withJPEGExif(b.Bytes(), bad), DecodeOptions{})
		if err != nil || info.Orientation != 0 || img.Bounds() != stored.Bounds() {
			t.Errorf("EXIF %x: %v %+v %v", bad, img.Bounds(), info, err)
		}
	}
}

// TestOrientAllTypes: orient keeps every pixel's RGB as ToTensor reads it, for each concrete
// image type (YCbCr subsampled at odd sizes, sub-images), against the per-pixel wrapper.
func TestOrientAllTypes(t *testing.T) {
	base := patternRGB(7, 5, 3)
	for i := 3; i < len(base.Pix); i += 4 {
		base.Pix[i] = uint8(i * 37) // some alpha
	}
	conv := func(m settable, model color.Model) image.Image {
		b := base.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				m.Set(x, y, model.Convert(base.At(x, y)))
			}
		}
		return m
	}
	r := base.Bounds()
	pal := color.Palette{color.Black, color.White, color.NRGBA{200, 10, 20, 128}}
	ycc := ycbcrImage(7, 5)
	nycc := &image.NYCbCrA{YCbCr: *ycbcrImage(7, 5), A: make([]uint8, 35), AStride: 7}
	for i := range nycc.A {
		nycc.A[i] = uint8(i * 11)
	}
	imgs := []image.Image{
		base, base.SubImage(image.Rect(1, 1, 6, 4)),
		conv(image.NewRGBA(r), color.RGBAModel), conv(image.NewRGBA64(r), color.RGBA64Model),
		conv(image.NewNRGBA64(r), color.NRGBA64Model), conv(image.NewGray(r), color.GrayModel),
		conv(image.NewGray16(r), color.Gray16Model), conv(image.NewAlpha(r), color.AlphaModel),
		conv(image.NewAlpha16(r), color.Alpha16Model), conv(image.NewCMYK(r), color.CMYKModel),
		conv(image.NewPaletted(r, pal), pal), ycc, ycc.SubImage(image.Rect(1, 1, 6, 4)), nycc,
		opaqueWrapper{base},
	}
	for i, img := range imgs {
		for o := 1; o <= 8; o++ {
			got, want := orient(img, o), orientedImage{img, o}
			if got.Bounds().Size() != want.Bounds().Size() || !bytes.Equal(toRGB(got), toRGB(want)) {
				t.Errorf("image %d (%T), orientation %d: %v against %v", i, img, o, got.Bounds(), want.Bounds())
			}
		}
	}
}

type settable interface {
	image.Image
	Set(x, y int, c color.Color)
}

// TestWebPOrientation: the EXIF chunk of an extended WebP, with and without JPEG's prefix.
func TestWebPOrientation(t *testing.T) {
	for _, prefix := range []string{"", "Exif\x00\x00"} {
		exif := append([]byte(prefix), exifBlock("II", 8)...)
		b := []byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x08\x00\x00\x00\x02\x00\x00\x01\x00\x00")
		b = append(b, "EXIF"...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(exif)))
		b = append(b, exif...)
		if len(exif)%2 == 1 {
			b = append(b, 0)
		}
		if got := exifOrientation(b, "webp"); got != 8 {
			t.Errorf("prefix %q: orientation %d, want 8", prefix, got)
		}
		if got := exifOrientation(b[:len(b)-5], "webp"); got != 0 {
			t.Errorf("prefix %q truncated: orientation %d, want 0", prefix, got)
		}
	}
	if got := exifOrientation(exifBlock("MM", 3), "tiff"); got != 3 {
		t.Errorf("tiff: %d", got)
	}
}

// FuzzExifOrientation: the tag reader never panics and returns 0..8, whatever the bytes.
func FuzzExifOrientation(f *testing.F) {
	for _, d := range orientedSeeds(f) {
		f.Add(d)
	}
	f.Add(exifBlock("II", 6))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{"jpeg", "png", "webp", "tiff"} {
			if o := exifOrientation(data, format); o < 0 || o > 8 {
				t.Fatalf("%s: orientation %d", format, o)
			}
		}
	})
}
