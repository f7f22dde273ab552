package metrics

import (
	"errors"
	"image"
	"image/color"
	"math"
	"testing"
)

// pattern returns the test pair (a, b) of w×h 8-bit RGB images, at bounds offset by (3, -2):
//
//	a = (7x + 13y + 50c + 9·((x·y) mod 17)) mod 256
//	b = clip(a + ((31x + 17y + 11c) mod 41) − 20, 0, 255)      (noisy)
//	b = (5x + 3y + 70c) mod 256                               (unrelated, when unrelated)
func pattern(w, h int, unrelated bool) (a, b *image.NRGBA) {
	r := image.Rect(3, -2, 3+w, -2+h)
	a, b = image.NewNRGBA(r), image.NewNRGBA(r)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var ca, cb [3]uint8
			for c := 0; c < 3; c++ {
				va := (x*7 + y*13 + c*50 + (x*y)%17*9) % 256
				vb := min(max(va+(x*31+y*17+c*11)%41-20, 0), 255)
				if unrelated {
					vb = (x*5 + y*3 + c*70) % 256
				}
				ca[c], cb[c] = uint8(va), uint8(vb)
			}
			a.SetNRGBA(3+x, -2+y, color.NRGBA{ca[0], ca[1], ca[2], 255})
			b.SetNRGBA(3+x, -2+y, color.NRGBA{cb[0], cb[1], cb[2], 255})
		}
	}
	return a, b
}

// The expected values were computed with scikit-image 0.26.0 (numpy 2.2.4) on the same
// arrays (uint8 [h, w, 3] built with the formulas of pattern):
//
//	structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True,
//	                      sigma=1.5, use_sample_covariance=False)
//	peak_signal_noise_ratio(a, b, data_range=255)
//
// and, for images smaller than 11×11 (which scikit-image refuses), with a direct numpy
// implementation: for every valid position, the window outer(g, g) with g the σ = 1.5 Gaussian
// over min(11, w, h) (made odd) taps normalised to sum 1, weighted means, variances and
// covariance, Wang et al.'s formula; mean per channel, then over channels. That numpy code
// also reproduces scikit-image's values on 32×32 and 40×24 to the last digit.
func TestAgainstReference(t *testing.T) {
	cases := []struct {
		w, h      int
		unrelated bool
		ssim      float64
		psnr      float64 // 0: not checked
	}{
		{32, 32, false, 0.9821230499523832, 26.825351096199142},
		{40, 24, false, 0.9814315223032977, 26.817067824473263},
		{11, 11, false, 0.986075343626741, 26.797526338691785},
		{32, 32, true, 0.030523450991014184, 7.738369672911109},
		{7, 5, false, 0.977991334600591, 0},
		{1, 1, false, 0.9934869168098559, 0},
	}
	for _, c := range cases {
		a, b := pattern(c.w, c.h, c.unrelated)
		s, err := SSIM(a, b)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(s-c.ssim) > 1e-12 {
			t.Errorf("%dx%d unrelated=%v: SSIM %.16g, want %.16g", c.w, c.h, c.unrelated, s, c.ssim)
		}
		if s2, _ := SSIM(b, a); math.Abs(s2-s) > 1e-12 {
			t.Errorf("%dx%d: SSIM not symmetric: %v vs %v", c.w, c.h, s, s2)
		}
		if c.psnr != 0 {
			p, err := PSNR(a, b)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(p-c.psnr) > 1e-10 {
				t.Errorf("%dx%d unrelated=%v: PSNR %.16g, want %.16g", c.w, c.h, c.unrelated, p, c.psnr)
			}
		}
	}
}

func TestIdentical(t *testing.T) {
	for _, sz := range [][2]int{{32, 32}, {40, 24}, {5, 3}, {1, 1}} {
		a, _ := pattern(sz[0], sz[1], false)
		if p, err := PSNR(a, a); err != nil || !math.IsInf(p, 1) {
			t.Errorf("%v: PSNR of identical images %v, %v; want +Inf", sz, p, err)
		}
		if s, err := SSIM(a, a); err != nil || s != 1 {
			t.Errorf("%v: SSIM of identical images %v, %v; want 1", sz, s, err)
		}
	}
}

// TestConstantOffset: every channel of every pixel off by d gives MSE d², PSNR 10·log10(255²/d²).
func TestConstantOffset(t *testing.T) {
	for _, d := range []int{1, 5, 10, 100} {
		a := image.NewNRGBA(image.Rect(0, 0, 9, 7))
		b := image.NewRGBA(image.Rect(0, 0, 9, 7)) // another type: the generic path
		for i := 0; i < 9*7; i++ {
			v := uint8(20 + i%100)
			a.Pix[4*i], a.Pix[4*i+1], a.Pix[4*i+2], a.Pix[4*i+3] = v, v+1, v+2, 255
			b.Pix[4*i], b.Pix[4*i+1], b.Pix[4*i+2], b.Pix[4*i+3] = v+uint8(d), v+1+uint8(d), v+2+uint8(d), 255
		}
		want := 10 * math.Log10(255*255/float64(d*d))
		p, err := PSNR(a, b)
		if err != nil || math.Abs(p-want) > 1e-12 {
			t.Errorf("offset %d: PSNR %v, %v; want %v", d, p, err, want)
		}
		if mse, _ := MSE(a, b); mse != float64(d*d) {
			t.Errorf("offset %d: MSE %v", d, mse)
		}
	}
	// 20·log10(255/10) exactly: 28.130803608679102.
	if got := psnr(100, 255); math.Abs(got-28.130803608679102) > 1e-12 {
		t.Errorf("psnr(100, 255) = %v", got)
	}
}

func TestPSNRFloat(t *testing.T) {
	a := []float32{0, 0.25, 0.5, 1, 0.75, 0.125}
	b := make([]float32, len(a))
	for i, v := range a {
		b[i] = v + 0.125 // exact in float32
	}
	p, err := PSNRFloat(a, b, 1)
	if want := 10 * math.Log10(1/(0.125*0.125)); err != nil || math.Abs(p-want) > 1e-12 {
		t.Errorf("PSNRFloat = %v, %v; want %v", p, err, want)
	}
	if p, _ := PSNRFloat(a, a, 1); !math.IsInf(p, 1) {
		t.Errorf("PSNRFloat of equal arrays = %v", p)
	}
	// The same images in 8-bit and in [0, 1] agree.
	x, y := pattern(8, 8, false)
	fx, fy := make([]float32, 0, 192), make([]float32, 0, 192)
	for i := 0; i < 64; i++ {
		for c := 0; c < 3; c++ {
			fx = append(fx, float32(x.Pix[4*i+c])/255)
			fy = append(fy, float32(y.Pix[4*i+c])/255)
		}
	}
	p8, _ := PSNR(x, y)
	pf, _ := PSNRFloat(fx, fy, 1)
	if math.Abs(p8-pf) > 1e-5 {
		t.Errorf("8-bit PSNR %v, [0,1] PSNR %v", p8, pf)
	}
	for _, bad := range []struct {
		a, b []float32
		peak float64
	}{{a, b[:3], 1}, {nil, nil, 1}, {a, b, 0}, {a, b, math.NaN()}, {a, b, math.Inf(1)}} {
		if _, err := PSNRFloat(bad.a, bad.b, bad.peak); !errors.Is(err, ErrArgument) {
			t.Errorf("PSNRFloat(%d, %d values, peak %v): err %v", len(bad.a), len(bad.b), bad.peak, err)
		}
	}
}

// TestAlphaIgnored: alpha does not count; the straight colour does.
func TestAlphaIgnored(t *testing.T) {
	a, _ := pattern(12, 12, false)
	b := image.NewNRGBA(a.Bounds())
	copy(b.Pix, a.Pix)
	for i := 3; i < len(b.Pix); i += 4 {
		b.Pix[i] = 7
	}
	if s, _ := SSIM(a, b); s != 1 {
		t.Errorf("SSIM with another alpha: %v", s)
	}
	if p, _ := PSNR(a, b); !math.IsInf(p, 1) {
		t.Errorf("PSNR with another alpha: %v", p)
	}
	// Grey images: each channel is the grey level.
	g := image.NewGray(image.Rect(0, 0, 4, 4))
	n := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 16)
		n.Pix[4*i], n.Pix[4*i+1], n.Pix[4*i+2], n.Pix[4*i+3] = uint8(i*16), uint8(i*16), uint8(i*16), 255
	}
	if p, _ := PSNR(g, n); !math.IsInf(p, 1) {
		t.Errorf("grey vs the same NRGBA: PSNR %v", p)
	}
}

func TestErrors(t *testing.T) {
	a := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for _, b := range []image.Image{image.NewNRGBA(image.Rect(0, 0, 4, 5)), image.NewNRGBA(image.Rect(0, 0, 0, 0)), nil} {
		if _, err := PSNR(a, b); !errors.Is(err, ErrArgument) {
			t.Errorf("PSNR: %v", err)
		}
		if _, err := SSIM(a, b); !errors.Is(err, ErrArgument) {
			t.Errorf("SSIM: %v", err)
		}
	}
}

func TestGaussianWindow(t *testing.T) {
	// MATLAB fspecial('gaussian', 11, 1.5) is the outer product of this window; its centre
	// tap is exp(0)/sum = 0.26601...; the window sums to 1 and is symmetric.
	g := gaussianWindow(11, 1.5)
	var s float64
	for i, v := range g {
		s += v
		if v != g[len(g)-1-i] {
			t.Fatalf("asymmetric window %v", g)
		}
	}
	if len(g) != 11 || math.Abs(s-1) > 1e-15 || math.Abs(g[5]-0.26601172486179) > 1e-12 {
		t.Fatalf("window %v (sum %v)", g, s)
	}
	if len(gaussianWindow(8, 1.5)) != 7 || len(gaussianWindow(0, 1.5)) != 1 {
		t.Fatal("window sizes")
	}
}
