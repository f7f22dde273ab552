package image_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"

	ftimage "github.com/flextok-sdk/flextok/sdk/image"
)

func Example() {
	// A 640×480 PNG, as a client would upload it.
	src := image.NewNRGBA(image.Rect(0, 0, 640, 480))
	for i := range src.Pix {
		src.Pix[i] = 0xff
	}
	var file bytes.Buffer
	_ = png.Encode(&file, src)

	img, info, err := ftimage.Decode(&file, ftimage.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	x, rec, err := ftimage.ToTensor(img, ftimage.Preprocess{Filter: ftimage.FilterBilinear})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.Format, info.Width, info.Height)
	fmt.Println(x.Shape, x.Data[0])
	fmt.Printf("%+v\n", rec)

	// The model's output goes back to pixels and PNG the same way.
	out, _ := ftimage.FromTensor(x)
	fmt.Println(out.Bounds().Size(), out.NRGBAAt(0, 0))
	// Output:
	// png 640 480
	// [3 256 256] 1
	// {Height:256 Width:256 Resize:bilinear Crop:center SourceHeight:480 SourceWidth:640}
	// (256,256) {255 255 255 255}
}

func ExamplePreprocess_Plan() {
	pl, _ := ftimage.Preprocess{Size: 256}.Plan(640, 480)
	fmt.Println(pl.ResizeWidth, pl.ResizeHeight, pl.Left, pl.Top)
	// Output: 341 256 42 0
}

func ExampleDecode_badInput() {
	_, _, err := ftimage.Decode(bytes.NewReader([]byte("not an image")), ftimage.Limits{})
	fmt.Println(err)
	// Output: flextok/image: not an image or unsupported format: first bytes "not an i" match none of [png jpeg gif webp bmp tiff]
}

func ExampleGrid() {
	cell := func(v uint8) image.Image {
		m := image.NewGray(image.Rect(0, 0, 4, 4))
		for i := range m.Pix {
			m.Pix[i] = v
		}
		return m
	}
	// Two images (rows), three token counts (columns), 2 pixels apart.
	g, _ := ftimage.Grid([][]image.Image{{cell(0), cell(50), cell(100)}, {cell(150), cell(200), cell(250)}}, 2)
	fmt.Println(g.Bounds().Size(), g.At(6, 6).(color.NRGBA).R)
	// Output: (16,10) 200
}
