// Package image brings images in and out of FlexTok models: safe decoding, the official
// preprocessing to a [3, H, W] tensor in [-1, 1], and the way back to 8-bit pixels, PNG and
// reconstruction grids.
//
// Its name clashes with the standard library's; import it under another name:
//
//	import ftimage "github.com/flextok-sdk/flextok/sdk/image"
//
// # Overview
//
//	img, info, err := ftimage.Decode(r, ftimage.DecodeOptions{}) // png, jpeg, gif, webp, bmp, tiff
//	x, rec, err := ftimage.ToTensor(img, ftimage.Preprocess{}) // [3,256,256] float32 in [-1,1]
//	// ... tokenize x, store rec in the payload's Image field, detokenize to y ...
//	out, err := ftimage.FromTensor(y)                          // *image.NRGBA
//	err = ftimage.EncodePNG(w, out)
//
// Decode reads at most DecodeOptions.MaxBytes, checks the header (image.DecodeConfig) before
// decoding and refuses a zero side (ErrEmpty) or more than DecodeOptions.MaxPixels pixels
// (ErrTooLarge), so a decompression bomb costs nothing. It then turns the image upright by its
// EXIF orientation tag (JPEG APP1, PNG eXIf, WebP EXIF, TIFF), as browsers and image viewers
// show it, unless DecodeOptions.IgnoreOrientation: the official demo's PIL path ignores the tag,
// so a sideways-stored photo gives the official tokens only with IgnoreOrientation. The formats are dispatched from this package's own table,
// not image.RegisterFormat's global registry. Every error starts with "flextok/image: " and
// wraps ErrFormat, ErrTooLarge, ErrEmpty, ErrCorrupt or ErrArgument; Decode never panics.
//
// # Preprocessing, and where it matches the official code
//
// The official demo (flextok/utils/demo.py) does, on a PIL image opened with .convert("RGB"):
// Resize(256) (shorter side to 256, bilinear, antialiased), CenterCrop(256), ToTensor,
// Normalize(0.5, 0.5). ToTensor here follows each step:
//
//   - Colour: PIL's convert("RGB") rules. Alpha is dropped without compositing (the straight
//     colour is kept, as PIL does for RGBA and LA); grey is replicated; palettes are looked up;
//     CMYK uses Pillow's formula. 16-bit channels keep their high byte (v>>8), as Pillow's PNG
//     reader does for 16-bit RGB(A); Pillow clips 16-bit greyscale to 255 on convert("RGB"), a
//     quirk not reproduced. An image.Alpha mask reads as grey.
//   - Geometry: torchvision's rules exactly. The shorter side becomes the model size and the
//     longer int(size·long/short); the crop offsets are int(round((resized - size)/2.0)) with
//     Python's round half to even (640×480 → 341×256, left = round(42.5) = 42). A source already
//     at the resized size is not resampled. A non-square model size (Preprocess.Height, Width)
//     scales, aspect kept, to the smallest size that covers it, then center-crops.
//   - Resampling: a transcription of Pillow's ImagingResample for 8-bit images (fixed-point
//     coefficients, horizontal pass first, 8-bit intermediate, kernel stretched when shrinking),
//     bit-identical to Pillow 13 on the same pixels (testdata/pil_golden.json, made by
//     testdata/gen_pil.py). The default, FilterBilinear ("bilinear" in the payload), is
//     torchvision's filter, so for lossless inputs Go gives the official demo's tensor bit for
//     bit. FilterCatmullRom is Pillow's BICUBIC (Catmull-Rom, a = -0.5), sharper, for users who
//     prefer it. Only the cropped window is computed.
//   - Values: (v/255 - 0.5)/0.5 in float32, the operations torch performs, so the tensor is
//     bit-identical to torchvision's for the same resized pixels. It lies in [-1, 1].
//
// What cannot match is decoding: Go's JPEG decoder upsamples chroma by replication and
// converts YCbCr with image/color's integer formula, while Pillow uses libjpeg-turbo (fancy
// upsampling, its own rounding), so JPEG pixels differ by a few levels; lossless formats (PNG,
// BMP, TIFF, lossless WebP, GIF) decode to the same pixels.
//
// # Output
//
// FromTensor is the demo's batch_to_pil: (x+1)/2, clamp to [0, 1], ×255 and truncate (torch's
// mul(255).byte()), in float32. Because the official pipeline truncates, ToTensor then
// FromTensor returns bytes 1..63 one level lower, in Python as here. Grid lays images out in
// rows and columns (one row per image, one column per token count k) with optional padding.
package image
