package main

import (
	"fmt"
	"image"
	"math"

	"github.com/flextok-sdk/flextok/internal/safetensors"
)

// featDim is the width of the classifier's penultimate features (the proxy FID's space).
const featDim = 64

// classifier is train/flextok_train/classifier.py's ShapesNet in inference mode (batch norm
// from its running statistics): four 3×3 convolutions (padding 1) with batch norm and ReLU,
// 2×2 max pooling after the first three, a global mean, and a linear head.
type classifier struct {
	conv [4]conv
	bn   [4]batchNorm
	head struct {
		w []float32 // [classes, featDim]
		b []float32
	}
	classes int
}

type conv struct {
	w       []float32 // [out, in, 3, 3]
	b       []float32
	in, out int
}

type batchNorm struct{ scale, shift []float32 } // y = x·scale + shift

// loadClassifier reads train/eval/classifier.safetensors (f32, PyTorch names c1..c4, b1..b4,
// head).
func loadClassifier(path string) (*classifier, error) {
	f, err := safetensors.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	get := func(name string, shape ...int) ([]float32, error) {
		info, ok := f.Info(name)
		if !ok {
			return nil, fmt.Errorf("%s: no tensor %q (not an evaluation classifier?)", path, name)
		}
		if len(info.Shape) != len(shape) {
			return nil, fmt.Errorf("%s: %s has shape %v, want %v", path, name, info.Shape, shape)
		}
		for i, d := range shape {
			if info.Shape[i] != d && d >= 0 {
				return nil, fmt.Errorf("%s: %s has shape %v, want %v", path, name, info.Shape, shape)
			}
		}
		return f.ReadFloat32(name)
	}
	c := &classifier{}
	chans := [5]int{3, 24, 32, 48, featDim}
	for i := range 4 {
		in, out := chans[i], chans[i+1]
		cv := conv{in: in, out: out}
		if cv.w, err = get(fmt.Sprintf("c%d.weight", i+1), out, in, 3, 3); err != nil {
			return nil, err
		}
		if cv.b, err = get(fmt.Sprintf("c%d.bias", i+1), out); err != nil {
			return nil, err
		}
		c.conv[i] = cv
		var w, b, mean, vr []float32
		for _, p := range []struct {
			dst  *[]float32
			name string
		}{{&w, "weight"}, {&b, "bias"}, {&mean, "running_mean"}, {&vr, "running_var"}} {
			if *p.dst, err = get(fmt.Sprintf("b%d.%s", i+1, p.name), out); err != nil {
				return nil, err
			}
		}
		bn := batchNorm{scale: make([]float32, out), shift: make([]float32, out)}
		for j := range out {
			s := float64(w[j]) / math.Sqrt(float64(vr[j])+1e-5)
			bn.scale[j] = float32(s)
			bn.shift[j] = float32(float64(b[j]) - float64(mean[j])*s)
		}
		c.bn[i] = bn
	}
	if c.head.w, err = get("head.weight", -1, featDim); err != nil {
		return nil, err
	}
	c.classes = len(c.head.w) / featDim
	if c.head.b, err = get("head.bias", c.classes); err != nil {
		return nil, err
	}
	return c, nil
}

// run classifies one 32×32 8-bit image (read as the recipe's to_tensor: byte/127.5 − 1) and
// returns the logits and the penultimate features.
func (c *classifier) run(img *image.NRGBA) (logits []float32, feat []float64, err error) {
	b := img.Bounds()
	if b.Dx() != 32 || b.Dy() != 32 {
		return nil, nil, fmt.Errorf("classifier input %dx%d, want 32x32", b.Dx(), b.Dy())
	}
	n := 32
	x := make([]float32, 3*n*n)
	for y := range n {
		for xx := range n {
			p := img.PixOffset(b.Min.X+xx, b.Min.Y+y)
			for ch := range 3 {
				x[ch*n*n+y*n+xx] = float32(img.Pix[p+ch])/127.5 - 1
			}
		}
	}
	for i := range 4 {
		x = c.conv[i].apply(x, n)
		bn := c.bn[i]
		hw := n * n
		for o := range c.conv[i].out {
			s, t := bn.scale[o], bn.shift[o]
			row := x[o*hw : (o+1)*hw]
			for j, v := range row {
				row[j] = max(v*s+t, 0)
			}
		}
		if i < 3 {
			x = maxPool2(x, c.conv[i].out, n)
			n /= 2
		}
	}
	feat = make([]float64, featDim)
	hw := n * n
	for o := range featDim {
		var s float32
		for _, v := range x[o*hw : (o+1)*hw] {
			s += v
		}
		feat[o] = float64(s / float32(hw))
	}
	logits = make([]float32, c.classes)
	for k := range c.classes {
		s := c.head.b[k]
		for j, w := range c.head.w[k*featDim : (k+1)*featDim] {
			s += w * float32(feat[j])
		}
		logits[k] = s
	}
	return logits, feat, nil
}

// apply is a 3×3 convolution with zero padding 1 on an [in, n, n] input.
func (cv conv) apply(x []float32, n int) []float32 {
	hw := n * n
	out := make([]float32, cv.out*hw)
	for o := range cv.out {
		dst := out[o*hw : (o+1)*hw]
		for j := range dst {
			dst[j] = cv.b[o]
		}
		for i := range cv.in {
			src := x[i*hw : (i+1)*hw]
			k := cv.w[(o*cv.in+i)*9 : (o*cv.in+i)*9+9]
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					w := k[(dy+1)*3+dx+1]
					for y := max(0, -dy); y < min(n, n-dy); y++ {
						d := dst[y*n : y*n+n]
						s := src[(y+dy)*n : (y+dy)*n+n]
						for xx := max(0, -dx); xx < min(n, n-dx); xx++ {
							d[xx] += w * s[xx+dx]
						}
					}
				}
			}
		}
	}
	return out
}

func maxPool2(x []float32, ch, n int) []float32 {
	m := n / 2
	out := make([]float32, ch*m*m)
	for c := range ch {
		src, dst := x[c*n*n:(c+1)*n*n], out[c*m*m:(c+1)*m*m]
		for y := range m {
			for xx := range m {
				a, b := src[2*y*n+2*xx], src[2*y*n+2*xx+1]
				cc, d := src[(2*y+1)*n+2*xx], src[(2*y+1)*n+2*xx+1]
				dst[y*m+xx] = max(a, b, cc, d)
			}
		}
	}
	return out
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
