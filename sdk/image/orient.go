package image

import (
	"encoding/binary"
	"image"
	"image/color"
)

// EXIF orientation: how the stored pixels must be turned to be seen upright (the TIFF/EXIF tag
// 0x0112, values 1..8). Cameras store a portrait photo sideways with orientation 6 or 8, and
// browsers and image viewers apply the tag; Decode does too, unless
// DecodeOptions.IgnoreOrientation.
//
// The reader below looks for that one tag and nothing else, in the places the formats keep
// EXIF: a JPEG's APP1 "Exif" segment, a PNG's eXIf chunk, a WebP's EXIF chunk, and a TIFF
// file's first IFD. Every offset is checked against the data; a missing, malformed or
// out-of-range tag reads as 0 (none), never as an error: the pixels decoded already.

// exifOrientation returns the orientation tag (1..8) of the encoded image data in format, or 0.
func exifOrientation(data []byte, format string) int {
	switch format {
	case "jpeg":
		return jpegOrientation(data)
	case "png":
		return pngOrientation(data)
	case "webp":
		return webpOrientation(data)
	case "tiff":
		return tiffOrientation(data)
	}
	return 0
}

// jpegOrientation walks the JPEG markers up to the first scan for an APP1 "Exif" segment.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xff || b[1] != 0xd8 {
		return 0
	}
	p := 2
	for p+4 <= len(b) {
		if b[p] != 0xff {
			return 0
		}
		m := b[p+1]
		if m == 0xff { // fill byte
			p++
			continue
		}
		p += 2
		if m == 0x01 || (m >= 0xd0 && m <= 0xd8) { // markers without a length
			continue
		}
		if m == 0xda || m == 0xd9 { // start of scan, end of image: EXIF comes before
			return 0
		}
		n := int(binary.BigEndian.Uint16(b[p:]))
		if n < 2 || p+n > len(b) {
			return 0
		}
		seg := b[p+2 : p+n]
		if m == 0xe1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		p += n
	}
	return 0
}

// pngOrientation finds the eXIf chunk.
func pngOrientation(b []byte) int {
	p := 8 // signature
	for p+8 <= len(b) {
		n := binary.BigEndian.Uint32(b[p:])
		typ := string(b[p+4 : p+8])
		if uint64(n) > uint64(len(b)-p-8) {
			return 0
		}
		data := b[p+8 : p+8+int(n)]
		switch typ {
		case "eXIf":
			return tiffOrientation(data)
		case "IEND":
			return 0
		}
		p += 8 + int(n) + 4 // length, type, data, CRC
	}
	return 0
}

// webpOrientation finds the EXIF chunk of an extended (VP8X) WebP.
func webpOrientation(b []byte) int {
	p := 12 // "RIFF", size, "WEBP"
	for p+8 <= len(b) {
		n := binary.LittleEndian.Uint32(b[p+4:])
		if uint64(n) > uint64(len(b)-p-8) {
			return 0
		}
		data := b[p+8 : p+8+int(n)]
		if string(b[p:p+4]) == "EXIF" {
			if len(data) >= 6 && string(data[:6]) == "Exif\x00\x00" { // some writers keep JPEG's prefix
				data = data[6:]
			}
			return tiffOrientation(data)
		}
		p += 8 + int(n) + int(n&1) // chunks are padded to an even size
	}
	return 0
}

// tiffOrientation reads tag 0x0112 from the first IFD of a TIFF structure (an EXIF block is
// one).
func tiffOrientation(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(b[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 0
	}
	off := uint64(bo.Uint32(b[4:]))
	if off+2 > uint64(len(b)) {
		return 0
	}
	n := uint64(bo.Uint16(b[off:]))
	if off+2+12*n > uint64(len(b)) {
		return 0
	}
	for i := uint64(0); i < n; i++ {
		e := b[off+2+12*i:]
		if bo.Uint16(e) != 0x0112 {
			continue
		}
		// SHORT (type 3), count 1: the value sits in the first two bytes of the value field.
		if bo.Uint16(e[2:]) != 3 || bo.Uint32(e[4:]) != 1 {
			return 0
		}
		if v := int(bo.Uint16(e[8:])); v >= 1 && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}

// orient returns img turned upright for EXIF orientation o (1..8; other values return img). The
// result has the same concrete type for images stored in one Pix slice (RGBA, NRGBA, Gray, ...),
// so that ToTensor reads it by the same rules; YCbCr becomes NRGBA with the same RGB values
// ToTensor would compute (NYCbCrA keeps its alpha); any other type is wrapped.
func orient(img image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return img
	}
	switch m := img.(type) {
	case *image.RGBA:
		r, pix, stride := orientPix(m.Pix, m.Stride, 4, m.Rect, o)
		return &image.RGBA{Pix: pix, Stride: stride, Rect: r}
	case *image.NRGBA:
		r, pix, stride := orientPix(m.Pix, m.Stride, 4, m.Rect, o)
		return &image.NRGBA{Pix: pix, Stride: stride, Rect: r}
	case *image.RGBA64:
		r, pix, stride := orientPix(m.Pix, m.Stride, 8, m.Rect, o)
		return &image.RGBA64{Pix: pix, Stride: stride, Rect: r}
	case *image.NRGBA64:
		r, pix, stride := orientPix(m.Pix, m.Stride, 8, m.Rect, o)
		return &image.NRGBA64{Pix: pix, Stride: stride, Rect: r}
	case *image.Gray:
		r, pix, stride := orientPix(m.Pix, m.Stride, 1, m.Rect, o)
		return &image.Gray{Pix: pix, Stride: stride, Rect: r}
	case *image.Gray16:
		r, pix, stride := orientPix(m.Pix, m.Stride, 2, m.Rect, o)
		return &image.Gray16{Pix: pix, Stride: stride, Rect: r}
	case *image.Alpha:
		r, pix, stride := orientPix(m.Pix, m.Stride, 1, m.Rect, o)
		return &image.Alpha{Pix: pix, Stride: stride, Rect: r}
	case *image.Alpha16:
		r, pix, stride := orientPix(m.Pix, m.Stride, 2, m.Rect, o)
		return &image.Alpha16{Pix: pix, Stride: stride, Rect: r}
	case *image.CMYK:
		r, pix, stride := orientPix(m.Pix, m.Stride, 4, m.Rect, o)
		return &image.CMYK{Pix: pix, Stride: stride, Rect: r}
	case *image.Paletted:
		r, pix, stride := orientPix(m.Pix, m.Stride, 1, m.Rect, o)
		return &image.Paletted{Pix: pix, Stride: stride, Rect: r, Palette: m.Palette}
	case *image.YCbCr:
		return orient(ycbcrToNRGBA(m, nil), o)
	case *image.NYCbCrA:
		return orient(ycbcrToNRGBA(&m.YCbCr, m), o)
	}
	return orientedImage{img, o}
}

// orientPix turns the pixels of a w×h image (bpp bytes each) for orientation o; the result
// starts at (0, 0).
func orientPix(pix []byte, stride, bpp int, r image.Rectangle, o int) (image.Rectangle, []byte, int) {
	w, h := r.Dx(), r.Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := make([]byte, ow*oh*bpp)
	ostride := ow * bpp
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			sx, sy := source(x, y, w, h, o)
			s := pix[sy*stride+sx*bpp:]
			copy(out[y*ostride+x*bpp:y*ostride+x*bpp+bpp], s[:bpp])
		}
	}
	return image.Rect(0, 0, ow, oh), out, ostride
}

// source maps the pixel (x, y) of the upright image to the stored w×h image's pixel, both
// counted from the top-left corner, for orientation o.
func source(x, y, w, h, o int) (int, int) {
	switch o {
	case 2: // mirrored left to right
		return w - 1 - x, y
	case 3: // turned 180°
		return w - 1 - x, h - 1 - y
	case 4: // mirrored top to bottom
		return x, h - 1 - y
	case 5: // transposed
		return y, x
	case 6: // stored turned 90° anticlockwise: turn it 90° clockwise
		return y, h - 1 - x
	case 7: // transversed
		return w - 1 - y, h - 1 - x
	case 8: // stored turned 90° clockwise: turn it 90° anticlockwise
		return w - 1 - y, x
	}
	return x, y
}

// ycbcrToNRGBA converts m (with a's alpha, if a is not nil) to NRGBA, with the RGB of
// ycbcrToRGB.
func ycbcrToNRGBA(m *image.YCbCr, a *image.NYCbCrA) *image.NRGBA {
	b := m.Rect
	out := image.NewNRGBA(b)
	rgb := make([]uint8, b.Dx()*b.Dy()*3)
	ycbcrToRGB(m, rgb)
	for i, j := 0, 0; i < len(rgb); i, j = i+3, j+4 {
		out.Pix[j], out.Pix[j+1], out.Pix[j+2], out.Pix[j+3] = rgb[i], rgb[i+1], rgb[i+2], 0xff
	}
	if a != nil {
		w := b.Dx()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := a.A[a.AOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				out.Pix[(y-b.Min.Y)*out.Stride+4*x+3] = row[x]
			}
		}
	}
	return out
}

// orientedImage is an image of another type seen through an orientation.
type orientedImage struct {
	src image.Image
	o   int
}

func (m orientedImage) ColorModel() color.Model { return m.src.ColorModel() }

func (m orientedImage) Bounds() image.Rectangle {
	b := m.src.Bounds()
	if m.o >= 5 {
		return image.Rect(0, 0, b.Dy(), b.Dx())
	}
	return image.Rect(0, 0, b.Dx(), b.Dy())
}

func (m orientedImage) At(x, y int) color.Color {
	b := m.src.Bounds()
	if !(image.Point{x, y}.In(m.Bounds())) {
		return m.src.ColorModel().Convert(color.Transparent)
	}
	sx, sy := source(x, y, b.Dx(), b.Dy(), m.o)
	return m.src.At(b.Min.X+sx, b.Min.Y+sy)
}
