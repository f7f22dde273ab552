package metrics

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
)

// ErrArgument is wrapped by every error of this package: images of different sizes, empty
// images, slices of different lengths, a bad peak.
var ErrArgument = errors.New("flextok/metrics: invalid argument")

// Peak8 is the peak signal value of 8-bit images (PSNR's peak and SSIM's L).
const Peak8 = 255

// SSIM constants (Wang et al. 2004).
const (
	SSIMWindow = 11   // window side
	SSIMSigma  = 1.5  // Gaussian standard deviation of the window
	SSIMK1     = 0.01 // C1 = (K1·L)²
	SSIMK2     = 0.03 // C2 = (K2·L)²
)

// rgbPlanes returns img as three planes (R, G, B) of w·h float64 8-bit values each.
func rgbPlanes(img image.Image) (planes [3][]float64, w, h int) {
	b := img.Bounds()
	w, h = b.Dx(), b.Dy()
	for c := range planes {
		planes[c] = make([]float64, w*h)
	}
	i := 0
	switch m := img.(type) {
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				planes[0][i], planes[1][i], planes[2][i] = float64(p[4*x]), float64(p[4*x+1]), float64(p[4*x+2])
				i++
			}
		}
	default:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				planes[0][i], planes[1][i], planes[2][i] = float64(c.R), float64(c.G), float64(c.B)
				i++
			}
		}
	}
	return planes, w, h
}

func checkPair(a, b image.Image) error {
	if a == nil || b == nil {
		return fmt.Errorf("%w: nil image", ErrArgument)
	}
	ba, bb := a.Bounds(), b.Bounds()
	if ba.Empty() || bb.Empty() {
		return fmt.Errorf("%w: empty image (%dx%d, %dx%d)", ErrArgument, ba.Dx(), ba.Dy(), bb.Dx(), bb.Dy())
	}
	if ba.Dx() != bb.Dx() || ba.Dy() != bb.Dy() {
		return fmt.Errorf("%w: images are %dx%d and %dx%d", ErrArgument, ba.Dx(), ba.Dy(), bb.Dx(), bb.Dy())
	}
	return nil
}

// MSE is the mean squared difference of a and b over every pixel and the three RGB channels,
// in 8-bit units.
func MSE(a, b image.Image) (float64, error) {
	if err := checkPair(a, b); err != nil {
		return 0, err
	}
	pa, _, _ := rgbPlanes(a)
	pb, _, _ := rgbPlanes(b)
	var s float64
	n := 0
	for c := range pa {
		for i, v := range pa[c] {
			d := v - pb[c][i]
			s += d * d
		}
		n += len(pa[c])
	}
	return s / float64(n), nil
}

// PSNR is the peak signal-to-noise ratio of b against a in decibels, 10·log10(255² / MSE) with
// the MSE over all pixels and the three RGB channels; +Inf for identical images.
func PSNR(a, b image.Image) (float64, error) {
	mse, err := MSE(a, b)
	if err != nil {
		return 0, err
	}
	return psnr(mse, Peak8), nil
}

// PSNRFloat is the PSNR of two equally long float arrays (for example [3, H, W] tensors: all
// channels together) with the given peak: 1 for values in [0, 1], 255 for 8-bit levels, 2 for
// the model's [-1, 1] range. Values are not clamped. +Inf if a and b are equal.
func PSNRFloat(a, b []float32, peak float64) (float64, error) {
	if len(a) != len(b) || len(a) == 0 {
		return 0, fmt.Errorf("%w: lengths %d and %d", ErrArgument, len(a), len(b))
	}
	if !(peak > 0) || math.IsInf(peak, 0) {
		return 0, fmt.Errorf("%w: peak %v", ErrArgument, peak)
	}
	var s float64
	for i, v := range a {
		d := float64(v) - float64(b[i])
		s += d * d
	}
	return psnr(s/float64(len(a)), peak), nil
}

func psnr(mse, peak float64) float64 {
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(peak*peak/mse)
}

// SSIM is the mean structural similarity of b against a (symmetric): Wang et al. 2004 on each
// RGB channel, averaged over the channels. See the package documentation for the definition.
// It is at most 1 (identical images) and may be negative.
func SSIM(a, b image.Image) (float64, error) {
	if err := checkPair(a, b); err != nil {
		return 0, err
	}
	pa, w, h := rgbPlanes(a)
	pb, _, _ := rgbPlanes(b)
	win := gaussianWindow(min(SSIMWindow, w, h), SSIMSigma)
	var s float64
	for c := range pa {
		s += ssimPlane(pa[c], pb[c], w, h, win, Peak8)
	}
	return s / 3, nil
}

// gaussianWindow returns the 1-D Gaussian of σ sigma over size taps (size made odd, at least
// 1), normalised to sum 1. The 2-D window is its outer product.
func gaussianWindow(size int, sigma float64) []float64 {
	if size%2 == 0 {
		size--
	}
	size = max(size, 1)
	r := size / 2
	g := make([]float64, size)
	var s float64
	for i := range g {
		x := float64(i - r)
		g[i] = math.Exp(-x * x / (2 * sigma * sigma))
		s += g[i]
	}
	for i := range g {
		g[i] /= s
	}
	return g
}

// ssimPlane is the mean SSIM map of one channel over the valid window positions.
func ssimPlane(x, y []float64, w, h int, win []float64, L float64) float64 {
	n := len(win)
	ow, oh := w-n+1, h-n+1
	c1 := (SSIMK1 * L) * (SSIMK1 * L)
	c2 := (SSIMK2 * L) * (SSIMK2 * L)
	// The five local moments, filtered separably: horizontally into tmp (oh+n-1 = h rows of
	// ow), then vertically.
	src := [5]func(i int) float64{
		func(i int) float64 { return x[i] },
		func(i int) float64 { return y[i] },
		func(i int) float64 { return x[i] * x[i] },
		func(i int) float64 { return y[i] * y[i] },
		func(i int) float64 { return x[i] * y[i] },
	}
	var mom [5][]float64
	tmp := make([]float64, h*ow)
	for m, f := range src {
		for r := 0; r < h; r++ {
			for c := 0; c < ow; c++ {
				var s float64
				for k, g := range win {
					s += g * f(r*w+c+k)
				}
				tmp[r*ow+c] = s
			}
		}
		out := make([]float64, oh*ow)
		for r := 0; r < oh; r++ {
			for c := 0; c < ow; c++ {
				var s float64
				for k, g := range win {
					s += g * tmp[(r+k)*ow+c]
				}
				out[r*ow+c] = s
			}
		}
		mom[m] = out
	}
	var total float64
	for i := range mom[0] {
		mx, my := mom[0][i], mom[1][i]
		vx := mom[2][i] - mx*mx
		vy := mom[3][i] - my*my
		cov := mom[4][i] - mx*my
		total += ((2*mx*my + c1) * (2*cov + c2)) / ((mx*mx + my*my + c1) * (vx + vy + c2))
	}
	return total / float64(len(mom[0]))
}
