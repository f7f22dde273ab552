package image

import (
	"image"
	"math"

	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Resampling filters and crops a Preprocess accepts; the names are what the payload records.
const (
	// FilterCatmullRom is the Catmull-Rom cubic (Pillow's BICUBIC, a = -0.5), antialiased when
	// shrinking: sharper than FilterBilinear, but not the official demo's filter.
	FilterCatmullRom = "catmull-rom"
	// FilterBilinear is Pillow's BILINEAR (antialiased when shrinking): the filter torchvision's
	// Resize uses on PIL images, and so the official demo's. It is the default.
	FilterBilinear = "bilinear"
	// CropCenter crops the middle of the resized image, with torchvision's rounding.
	CropCenter = "center"
)

// DefaultSize is the side of the released FlexTok models' input.
const DefaultSize = 256

// maxSide bounds the model size a Preprocess accepts (the payload's limit on image sides).
const maxSide = 1 << 16

// Preprocess says how ToTensor prepares an image. The zero value is the default: 256×256,
// bilinear, center crop.
type Preprocess struct {
	Size          int    // side of a square model input; 0 = DefaultSize
	Height, Width int    // a non-square model input; both 0 = Size×Size
	Filter        string // FilterBilinear (default, "": the official demo's filter) or FilterCatmullRom
	Crop          string // CropCenter (default, "")
}

// Plan is the geometry of one preprocessing: resize the source to ResizeWidth×ResizeHeight, then
// keep Width×Height pixels from (Left, Top).
type Plan struct {
	SourceWidth, SourceHeight int
	ResizeWidth, ResizeHeight int
	Left, Top                 int
	Width, Height             int
	Filter, Crop              string
}

func (p Preprocess) normalized() (Preprocess, error) {
	if p.Height == 0 && p.Width == 0 {
		if p.Size == 0 {
			p.Size = DefaultSize
		}
		p.Height, p.Width = p.Size, p.Size
	}
	if p.Height < 1 || p.Width < 1 || p.Height > maxSide || p.Width > maxSide {
		return p, errf(ErrArgument, "model size %dx%d (width x height), want 1..%d on each side", p.Width, p.Height, maxSide)
	}
	if p.Size != 0 && (p.Size != p.Height || p.Size != p.Width) {
		return p, errf(ErrArgument, "size %d conflicts with %dx%d (width x height)", p.Size, p.Width, p.Height)
	}
	switch p.Filter {
	case "":
		p.Filter = FilterBilinear
	case FilterCatmullRom, FilterBilinear:
	default:
		return p, errf(ErrArgument, "filter %q, want %q or %q", p.Filter, FilterCatmullRom, FilterBilinear)
	}
	switch p.Crop {
	case "":
		p.Crop = CropCenter
	case CropCenter:
	default:
		return p, errf(ErrArgument, "crop %q, want %q", p.Crop, CropCenter)
	}
	return p, nil
}

// Plan computes the geometry for a source of srcWidth×srcHeight pixels, as torchvision's
// Resize(size) then CenterCrop(size) would:
//
//   - the shorter side becomes the model size and the longer int(size·long/short) (truncated;
//     for a non-square model size the image is scaled, aspect kept, to the smallest size that
//     covers it, with the same rule on the side that fixes the scale);
//   - a source already at that size is not resampled (torchvision returns it unchanged);
//   - the crop offsets are int(round((resized - size)/2.0)) with Python's round, which rounds
//     half to even: 341 wide → left = round(42.5) = 42.
func (p Preprocess) Plan(srcWidth, srcHeight int) (Plan, error) {
	p, err := p.normalized()
	if err != nil {
		return Plan{}, err
	}
	if srcWidth < 1 || srcHeight < 1 {
		return Plan{}, errf(ErrEmpty, "source is %dx%d", srcWidth, srcHeight)
	}
	pl := Plan{SourceWidth: srcWidth, SourceHeight: srcHeight, Width: p.Width, Height: p.Height, Filter: p.Filter, Crop: p.Crop}
	// Which side fixes the scale: height when H/h >= W/w, i.e. H·w >= W·h.
	if int64(p.Height)*int64(srcWidth) >= int64(p.Width)*int64(srcHeight) {
		pl.ResizeHeight = p.Height
		pl.ResizeWidth = int(float64(int64(p.Height)*int64(srcWidth)) / float64(srcHeight))
	} else {
		pl.ResizeWidth = p.Width
		pl.ResizeHeight = int(float64(int64(p.Width)*int64(srcHeight)) / float64(srcWidth))
	}
	if pl.ResizeWidth > maxSide*maxSide/pl.ResizeHeight {
		return Plan{}, errf(ErrTooLarge, "%dx%d resized to %dx%d", srcWidth, srcHeight, pl.ResizeWidth, pl.ResizeHeight)
	}
	pl.Left = int(math.RoundToEven(float64(pl.ResizeWidth-p.Width) / 2))
	pl.Top = int(math.RoundToEven(float64(pl.ResizeHeight-p.Height) / 2))
	return pl, nil
}

// Payload returns the payload's record of this preprocessing.
func (pl Plan) Payload() payload.Image {
	return payload.Image{
		Height: pl.Height, Width: pl.Width,
		Resize: pl.Filter, Crop: pl.Crop,
		SourceHeight: pl.SourceHeight, SourceWidth: pl.SourceWidth,
	}
}

// toUnit[v] is ToTensor then Normalize(0.5, 0.5) of the byte v, computed as torch does in
// float32: (v/255 - 0.5)/0.5.
var toUnit = func() (t [256]float32) {
	for v := range t {
		f := float32(v) / 255
		t[v] = (f - 0.5) / 0.5
	}
	return t
}()

// ToTensor preprocesses img as the official demo does (Resize, CenterCrop, ToTensor,
// Normalize(0.5, 0.5)) and returns a float32 tensor of shape [3, Height, Width] with values in
// [-1, 1], plus the payload's record of what was done. See the package documentation for where
// the result can differ from PIL's and torchvision's.
func ToTensor(img image.Image, p Preprocess) (tensor.Tensor, payload.Image, error) {
	if img == nil {
		return tensor.Tensor{}, payload.Image{}, errf(ErrArgument, "nil image")
	}
	b := img.Bounds()
	pl, err := p.Plan(b.Dx(), b.Dy())
	if err != nil {
		return tensor.Tensor{}, payload.Image{}, err
	}
	f := filterCatmullRom
	if pl.Filter == FilterBilinear {
		f = filterBilinear
	}
	rgb := toRGB(img)
	px := resampleCrop(rgb, pl.SourceWidth, pl.SourceHeight, pl.ResizeWidth, pl.ResizeHeight, pl.Left, pl.Top, pl.Width, pl.Height, f)
	n := pl.Width * pl.Height
	t := tensor.Tensor{Shape: []int{3, pl.Height, pl.Width}, Data: make([]float32, 3*n)}
	r, g, bl := t.Data[:n], t.Data[n:2*n], t.Data[2*n:]
	for i := 0; i < n; i++ {
		r[i] = toUnit[px[3*i]]
		g[i] = toUnit[px[3*i+1]]
		bl[i] = toUnit[px[3*i+2]]
	}
	return t, pl.Payload(), nil
}

// toByte is the official demo's batch_to_pil for one value: denormalise ((x+1)/2 in float32),
// clamp to [0, 1], then torchvision's to_pil_image, mul(255).byte(), which truncates. NaN gives
// 0.
func toByte(x float32) uint8 {
	y := (x + 1) / 2
	if !(y > 0) { // also NaN
		return 0
	}
	if y >= 1 {
		return 255
	}
	return uint8(float32(y * 255))
}

// FromTensor turns a model output of shape [3, H, W] (or [1, 3, H, W]) with values in about
// [-1, 1] into an opaque 8-bit image, exactly as the official demo's batch_to_pil: (x+1)/2,
// clamp to [0, 1], ×255 and truncate, all in float32. Truncation (not rounding) means a value a
// hair short of a byte level lands on the level below: like the official Python, ToTensor then
// FromTensor returns bytes 0 and 64..255 unchanged and bytes 1..63 one lower. NaN gives 0.
func FromTensor(t tensor.Tensor) (*image.NRGBA, error) {
	if err := t.Check(); err != nil {
		return nil, errf(ErrArgument, "tensor: %v", err)
	}
	sh := t.Shape
	if len(sh) == 4 && sh[0] == 1 {
		sh = sh[1:]
	}
	if len(sh) != 3 || sh[0] != 3 || sh[1] < 1 || sh[2] < 1 {
		return nil, errf(ErrArgument, "tensor shape %v, want [3 H W] or [1 3 H W]", t.Shape)
	}
	h, w := sh[1], sh[2]
	n := h * w
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r, g, b := t.Data[:n], t.Data[n:2*n], t.Data[2*n:3*n]
	for i := 0; i < n; i++ {
		p := img.Pix[4*i : 4*i+4 : 4*i+4]
		p[0], p[1], p[2], p[3] = toByte(r[i]), toByte(g[i]), toByte(b[i]), 0xff
	}
	return img, nil
}
