package image

import (
	"image"
	"image/draw"
	"image/png"
	"io"
)

// EncodePNG writes img to w as a PNG (default compression).
func EncodePNG(w io.Writer, img image.Image) error {
	if img == nil {
		return errf(ErrArgument, "nil image")
	}
	if img.Bounds().Empty() {
		return errf(ErrEmpty, "image is %dx%d", img.Bounds().Dx(), img.Bounds().Dy())
	}
	if err := png.Encode(w, img); err != nil {
		return errf(ErrArgument, "encoding png: %v", err)
	}
	return nil
}

// maxGridPixels bounds the image Grid builds (as DefaultMaxPixels bounds decoding).
const maxGridPixels = DefaultMaxPixels

// Grid composes images into one opaque image: images[r][c] goes to row r, column c, each cell
// as large as the widest image of its column and the tallest of its row, with pad pixels of
// white between cells (none around the edge). Images are drawn at the top-left of their cell
// over white (alpha composited, as a viewer would show them). A nil entry, or a row shorter than
// the longest, leaves white cells. For reconstructions, use one row per image and one column
// per token count k. pad 0 puts the images edge to edge, as the official demo's batch_to_pil.
func Grid(images [][]image.Image, pad int) (*image.NRGBA, error) {
	if pad < 0 || pad > 1<<12 {
		return nil, errf(ErrArgument, "grid pad %d, want 0..%d", pad, 1<<12)
	}
	cols := 0
	for _, row := range images {
		cols = max(cols, len(row))
	}
	if len(images) == 0 || cols == 0 {
		return nil, errf(ErrEmpty, "grid has no cells")
	}
	colW := make([]int, cols)
	rowH := make([]int, len(images))
	for r, row := range images {
		for c, im := range row {
			if im == nil {
				continue
			}
			b := im.Bounds()
			if b.Dx() > maxSide || b.Dy() > maxSide {
				return nil, errf(ErrTooLarge, "grid cell %d,%d is %dx%d", r, c, b.Dx(), b.Dy())
			}
			colW[c] = max(colW[c], b.Dx())
			rowH[r] = max(rowH[r], b.Dy())
		}
	}
	W, H := pad*(cols-1), pad*(len(images)-1)
	for _, w := range colW {
		W += w
	}
	for _, h := range rowH {
		H += h
	}
	if W < 1 || H < 1 {
		return nil, errf(ErrEmpty, "grid is %dx%d", W, H)
	}
	if int64(W)*int64(H) > maxGridPixels {
		return nil, errf(ErrTooLarge, "grid would be %dx%d, more than %d pixels", W, H, maxGridPixels)
	}
	out := image.NewNRGBA(image.Rect(0, 0, W, H))
	for i := range out.Pix {
		out.Pix[i] = 0xff
	}
	y := 0
	for r, row := range images {
		x := 0
		for c := 0; c < cols; c++ {
			if c < len(row) && row[c] != nil {
				im := row[c]
				b := im.Bounds()
				draw.Draw(out, image.Rect(x, y, x+b.Dx(), y+b.Dy()), im, b.Min, draw.Over)
			}
			x += colW[c] + pad
		}
		y += rowH[r] + pad
	}
	return out, nil
}
