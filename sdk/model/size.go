package model

import (
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
)

// Image sizes. The official code runs a FlexTok model at the size the caller gives: the
// encoder crops its sin-cos table to the patch grid of the image it gets, and the decoder
// crops its table to the latent size the caller asks for (vae_image_sizes). A table is the
// largest size a model supports, not its size: a 48 px model may have a table that covers 64 px.
//
// The SDK runs the size the caller asks for (EncodeOptions.Size, DecodeOptions.Size,
// `--size`), else the size the model states (the top-level "image_size" key of its config, an
// SDK extension that the official loaders ignore), else the size of its tables.

// Geometry maps image sizes to latent and patch grids for a model.
type Geometry struct {
	Factor         int    // the VAE's downsampling factor f
	Patch          [2]int // patch size on the latent grid (ph, pw)
	MaxGrid        [2]int // largest patch grid: the smaller of the encoder's and decoder's tables
	LatentChannels int    // C
	Default        [2]int // the size the model runs at unless told otherwise (height, width)
}

// Geometry returns c's geometry. Configs that parse always have one.
func (c *Config) Geometry() Geometry {
	e, d := c.Encoder.PosembMaxSizes, c.Decoder.PatchPosemb.MaxSizes
	g := Geometry{Factor: c.VAE.DownsampleFactor(), Patch: c.Encoder.PatchSize, LatentChannels: c.VAE.LatentChannels}
	if len(e) == 2 {
		g.MaxGrid = [2]int{e[0], e[1]}
	}
	if len(d) == 2 {
		g.MaxGrid = [2]int{min(g.MaxGrid[0], d[0]), min(g.MaxGrid[1], d[1])}
	}
	g.Default = c.ImageSize
	if g.Default == [2]int{} {
		g.Default = g.Max()
	}
	return g
}

// Max is the largest image size the model's tables cover (height, width).
func (g Geometry) Max() [2]int {
	return [2]int{g.MaxGrid[0] * g.Patch[0] * g.Factor, g.MaxGrid[1] * g.Patch[1] * g.Factor}
}

// step is the granularity of supported sizes: one patch of latents.
func (g Geometry) step() [2]int { return [2]int{g.Patch[0] * g.Factor, g.Patch[1] * g.Factor} }

// Check reports whether the model runs at height×width pixels: a whole number of patches
// (of step·f pixels) per side, at most its tables' size.
func (g Geometry) Check(height, width int) error {
	st, mx := g.step(), g.Max()
	if height < 1 || width < 1 || height%st[0] != 0 || width%st[1] != 0 || height > mx[0] || width > mx[1] {
		return fmt.Errorf("%w: image size %dx%d: this model runs at multiples of %dx%d pixels up to %dx%d",
			ErrUnsupported, height, width, st[0], st[1], mx[0], mx[1])
	}
	return nil
}

// Resolve is the size the model runs at for a requested square side: size, or the model's
// default for 0. The result is checked.
func (g Geometry) Resolve(size int) (height, width int, err error) {
	if size < 0 {
		return 0, 0, fmt.Errorf("%w: image size %d", ErrUnsupported, size)
	}
	height, width = g.Default[0], g.Default[1]
	if size > 0 {
		height, width = size, size
	}
	return height, width, g.Check(height, width)
}

// Latent is the shape [C, h, w] of the latent of a height×width image.
func (g Geometry) Latent(height, width int) []int {
	return []int{g.LatentChannels, height / g.Factor, width / g.Factor}
}

// parseImageSize reads the optional top-level "image_size" (an int, or [height, width]).
func (c *Config) parseImageSize(root node) error {
	if !root.has("image_size") {
		return nil
	}
	n, _ := root.get("image_size")
	switch n.v.Kind {
	case pyliteral.List, pyliteral.Tuple:
		s, err := root.ints("image_size")
		if err != nil {
			return err
		}
		if len(s) != 2 {
			return fmt.Errorf("%w: image_size: %v (an int or [height, width])", ErrConfig, s)
		}
		c.ImageSize = [2]int{s[0], s[1]}
	default:
		s, err := root.int("image_size")
		if err != nil {
			return err
		}
		c.ImageSize = [2]int{s, s}
	}
	if err := c.Geometry().Check(c.ImageSize[0], c.ImageSize[1]); err != nil {
		return fmt.Errorf("%w: image_size: %v", ErrConfig, err)
	}
	return nil
}
