package image

import (
	"bytes"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"strings"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// Default limits used where a Limits field is zero.
const (
	// DefaultMaxPixels is 64 Mi pixels (8192×8192). Decoding such an image may need up to 8 bytes
	// per pixel (512 MiB) for 16-bit formats, plus 3 bytes per pixel in ToTensor.
	DefaultMaxPixels = 64 << 20
	// DefaultMaxBytes is the largest encoded input read: 128 MiB.
	DefaultMaxBytes = 128 << 20
)

// DecodeOptions bound what Decode accepts and say how it reads. The zero value is the default.
type DecodeOptions struct {
	MaxPixels int64 // largest width×height; 0 = DefaultMaxPixels
	MaxBytes  int64 // largest encoded size read from the reader; 0 = DefaultMaxBytes
	// IgnoreOrientation keeps the pixels as stored. By default Decode turns the image upright
	// by its EXIF orientation tag (JPEG, PNG, WebP, TIFF), as browsers and image viewers show
	// it; the official demo's PIL path does not, so for a photo with orientation 2..8 only
	// IgnoreOrientation gives the official tokens.
	IgnoreOrientation bool
}

// Limits is DecodeOptions under its first name, from when it held only the limits; code
// written with it keeps compiling and means the same.
type Limits = DecodeOptions

func (l DecodeOptions) withDefaults() DecodeOptions {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Info describes a decoded image as its header declared it.
type Info struct {
	Format        string // "png", "jpeg", "gif", "webp", "bmp" or "tiff"
	Width, Height int    // size from the header, as stored (before any orientation)
	Bytes         int64  // encoded size read
	// Orientation is the EXIF orientation tag, 1..8 (0: none or unreadable). Unless
	// DecodeOptions.IgnoreOrientation, the image returned is already turned upright (for 5..8
	// its width and height are the header's swapped), and Oriented is true where that changed it.
	Orientation int
	Oriented    bool
}

// format is one supported image format. The table is explicit (not image.RegisterFormat's global
// registry), so what Decode accepts does not depend on what else a program imports.
type format struct {
	name   string
	magic  string // '?' matches any byte, as in image.RegisterFormat
	decode func(io.Reader) (image.Image, error)
	config func(io.Reader) (image.Config, error)
}

var formats = []format{
	{"png", "\x89PNG\r\n\x1a\n", png.Decode, png.DecodeConfig},
	{"jpeg", "\xff\xd8", jpeg.Decode, jpeg.DecodeConfig},
	{"gif", "GIF8?a", gif.Decode, gif.DecodeConfig},
	{"webp", "RIFF????WEBPVP8", webp.Decode, webp.DecodeConfig},
	{"bmp", "BM????\x00\x00\x00\x00", bmp.Decode, bmp.DecodeConfig},
	{"tiff", "II*\x00", tiff.Decode, tiff.DecodeConfig},
	{"tiff", "MM\x00*", tiff.Decode, tiff.DecodeConfig},
}

// Formats lists the names of the formats Decode accepts.
func Formats() []string { return []string{"png", "jpeg", "gif", "webp", "bmp", "tiff"} }

func sniff(b []byte) *format {
	for i := range formats {
		f := &formats[i]
		if len(b) < len(f.magic) {
			continue
		}
		ok := true
		for j := 0; j < len(f.magic); j++ {
			if f.magic[j] != '?' && f.magic[j] != b[j] {
				ok = false
				break
			}
		}
		if ok {
			return f
		}
	}
	return nil
}

// Decode reads one image (the first frame of a GIF) from r.
//
// It reads at most lim.MaxBytes bytes, identifies the format by its magic bytes, then reads the
// header alone (image.DecodeConfig) and refuses images with a zero side (ErrEmpty) or more than
// lim.MaxPixels pixels (ErrTooLarge) before any pixel memory is allocated, so a small file that
// declares a huge image (a decompression bomb) costs nothing. Corrupt or truncated data gives
// ErrCorrupt; a decoder that panics on hostile input is recovered and also reported as
// ErrCorrupt. Decode never panics.
//
// Unless lim.IgnoreOrientation, an EXIF orientation tag (Info.Orientation) is applied: the image
// comes back upright, as a browser shows it.
func Decode(r io.Reader, lim DecodeOptions) (img image.Image, info Info, err error) {
	lim = lim.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, lim.MaxBytes+1))
	if err != nil {
		return nil, Info{}, fmt.Errorf("flextok/image: reading input: %w", err)
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, Info{}, errf(ErrTooLarge, "input exceeds %d bytes", lim.MaxBytes)
	}
	if len(data) == 0 {
		return nil, Info{}, errf(ErrEmpty, "no bytes")
	}
	return DecodeBytes(data, lim)
}

// DecodeBytes is Decode for an image already in memory; lim.MaxBytes still applies.
func DecodeBytes(data []byte, lim DecodeOptions) (img image.Image, info Info, err error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxBytes {
		return nil, Info{}, errf(ErrTooLarge, "input is %d bytes, limit %d", len(data), lim.MaxBytes)
	}
	if len(data) == 0 {
		return nil, Info{}, errf(ErrEmpty, "no bytes")
	}
	f := sniff(data)
	if f == nil {
		n := min(len(data), 8)
		return nil, Info{}, errf(ErrFormat, "first bytes %q match none of %v", data[:n], Formats())
	}
	info = Info{Format: f.name, Bytes: int64(len(data))}
	// image/png rejects a zero side as a format error; report it as what it is.
	if f.name == "png" && len(data) >= 24 && string(data[12:16]) == "IHDR" {
		w := uint32(data[16])<<24 | uint32(data[17])<<16 | uint32(data[18])<<8 | uint32(data[19])
		h := uint32(data[20])<<24 | uint32(data[21])<<16 | uint32(data[22])<<8 | uint32(data[23])
		if w == 0 || h == 0 {
			return nil, info, errf(ErrEmpty, "png header declares %dx%d", w, h)
		}
	}
	defer func() {
		if p := recover(); p != nil {
			img = nil
			err = errf(ErrCorrupt, "%s decoder failed: %v", f.name, p)
		}
	}()
	cfg, err := f.config(bytes.NewReader(data))
	if err != nil {
		return nil, info, errf(ErrCorrupt, "%s header: %s", f.name, detail(f.name, err))
	}
	info.Width, info.Height = cfg.Width, cfg.Height
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, info, errf(ErrEmpty, "%s header declares %dx%d", f.name, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width) > lim.MaxPixels || int64(cfg.Height) > lim.MaxPixels ||
		int64(cfg.Width)*int64(cfg.Height) > lim.MaxPixels {
		return nil, info, errf(ErrTooLarge, "%s header declares %dx%d, more than %d pixels", f.name, cfg.Width, cfg.Height, lim.MaxPixels)
	}
	img, err = f.decode(bytes.NewReader(data))
	if err != nil {
		return nil, info, errf(ErrCorrupt, "%s: %s", f.name, detail(f.name, err))
	}
	b := img.Bounds()
	if b.Empty() {
		return nil, info, errf(ErrEmpty, "%s decoded to %dx%d", f.name, b.Dx(), b.Dy())
	}
	if int64(b.Dx())*int64(b.Dy()) > lim.MaxPixels {
		return nil, info, errf(ErrTooLarge, "%s decoded to %dx%d, more than %d pixels", f.name, b.Dx(), b.Dy(), lim.MaxPixels)
	}
	info.Orientation = exifOrientation(data, f.name)
	if !lim.IgnoreOrientation && info.Orientation > 1 {
		img, info.Oriented = orient(img, info.Orientation), true
	}
	return img, info, nil
}

// detail is a format decoder's error without the format name it starts with ("png: invalid
// format" → "invalid format"), which the message around it already gives.
func detail(name string, err error) string {
	return strings.TrimPrefix(err.Error(), name+": ")
}
