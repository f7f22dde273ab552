package image

import (
	"image"
	"image/color"
)

// toRGB converts img to packed 8-bit RGB (3 bytes per pixel, row-major, origin at the top-left
// of img.Bounds()), following PIL's Image.convert("RGB"):
//
//   - alpha is dropped without compositing: the straight (non-premultiplied) colour is kept, as
//     PIL does for RGBA and LA images;
//   - grey replicates into the three channels;
//   - 16-bit channels keep their high byte (v>>8), as PIL's PNG reader does for 16-bit RGB(A);
//     PIL clips 16-bit greyscale ("I;16") to 255 on convert("RGB"), a quirk not reproduced;
//   - CMYK uses PIL's formula r = (255-k) - round(c·(255-k)/255);
//   - YCbCr uses image/color's conversion (the JPEG decoder is where Go and libjpeg differ);
//   - an image.Alpha mask reads as grey (its alpha as the level), as PIL reads a one-channel image.
//
// The common concrete types are read from their Pix slices, without per-pixel interface calls.
func toRGB(img image.Image) []uint8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]uint8, w*h*3)
	o := 0
	switch m := img.(type) {
	case *image.RGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				s := p[4*x : 4*x+4 : 4*x+4]
				if a := s[3]; a == 0xff {
					out[o], out[o+1], out[o+2] = s[0], s[1], s[2]
				} else {
					out[o], out[o+1], out[o+2] = straightRGB(color.RGBA{s[0], s[1], s[2], a})
				}
				o += 3
			}
		}
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				out[o], out[o+1], out[o+2] = p[4*x], p[4*x+1], p[4*x+2]
				o += 3
			}
		}
	case *image.RGBA64:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				s := p[8*x : 8*x+8 : 8*x+8]
				if s[6] == 0xff && s[7] == 0xff {
					out[o], out[o+1], out[o+2] = s[0], s[2], s[4]
				} else {
					out[o], out[o+1], out[o+2] = straightRGB(m.RGBA64At(b.Min.X+x, y))
				}
				o += 3
			}
		}
	case *image.NRGBA64:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				out[o], out[o+1], out[o+2] = p[8*x], p[8*x+2], p[8*x+4]
				o += 3
			}
		}
	case *image.Gray:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				v := p[x]
				out[o], out[o+1], out[o+2] = v, v, v
				o += 3
			}
		}
	case *image.Gray16:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				v := p[2*x]
				out[o], out[o+1], out[o+2] = v, v, v
				o += 3
			}
		}
	case *image.Alpha:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				v := p[x]
				out[o], out[o+1], out[o+2] = v, v, v
				o += 3
			}
		}
	case *image.Alpha16:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				v := p[2*x]
				out[o], out[o+1], out[o+2] = v, v, v
				o += 3
			}
		}
	case *image.CMYK:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				out[o], out[o+1], out[o+2] = cmykToRGB(p[4*x], p[4*x+1], p[4*x+2], p[4*x+3])
				o += 3
			}
		}
	case *image.Paletted:
		var lut [256][3]uint8 // indices past the palette read as black
		for i, c := range m.Palette {
			if i == 256 {
				break
			}
			lut[i][0], lut[i][1], lut[i][2] = straightRGB(c)
		}
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				c := &lut[p[x]]
				out[o], out[o+1], out[o+2] = c[0], c[1], c[2]
				o += 3
			}
		}
	case *image.YCbCr:
		ycbcrToRGB(m, out)
	case *image.NYCbCrA:
		ycbcrToRGB(&m.YCbCr, out)
	default:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				out[o], out[o+1], out[o+2] = straightRGB(img.At(x, y))
				o += 3
			}
		}
	}
	return out
}

func ycbcrToRGB(m *image.YCbCr, out []uint8) {
	b := m.Rect
	o := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		yi := m.YOffset(b.Min.X, y)
		yrow := m.Y[yi : yi+b.Dx()]
		for x := b.Min.X; x < b.Max.X; x++ {
			ci := m.COffset(x, y)
			out[o], out[o+1], out[o+2] = color.YCbCrToRGB(yrow[x-b.Min.X], m.Cb[ci], m.Cr[ci])
			o += 3
		}
	}
}

// cmykToRGB is PIL's cmyk2rgb: nk = 255-k; r = nk - MULDIV255(c, nk), MULDIV255 rounding.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - int(k)
	f := func(v uint8) uint8 {
		t := int(v)*nk + 128
		return uint8(nk - ((t>>8)+t)>>8)
	}
	return f(c), f(m), f(y)
}

// straightRGB returns the non-premultiplied 8-bit colour of c, dropping alpha (see toRGB).
func straightRGB(c color.Color) (r, g, b uint8) {
	switch c := c.(type) {
	case color.NRGBA:
		return c.R, c.G, c.B
	case color.NRGBA64:
		return uint8(c.R >> 8), uint8(c.G >> 8), uint8(c.B >> 8)
	case color.RGBA:
		if c.A == 0xff {
			return c.R, c.G, c.B
		}
	case color.RGBA64:
		if c.A == 0xffff {
			return uint8(c.R >> 8), uint8(c.G >> 8), uint8(c.B >> 8)
		}
	case color.Gray:
		return c.Y, c.Y, c.Y
	case color.Gray16:
		v := uint8(c.Y >> 8)
		return v, v, v
	case color.Alpha:
		return c.A, c.A, c.A
	case color.Alpha16:
		v := uint8(c.A >> 8)
		return v, v, v
	case color.CMYK:
		return cmykToRGB(c.C, c.M, c.Y, c.K)
	case color.YCbCr:
		return color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
	case color.NYCbCrA:
		return color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
	case nil:
		return 0, 0, 0
	}
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)
}
