package main

import (
	"bytes"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// portraitJPEG writes a 32×24 JPEG (stored landscape) whose EXIF orientation 6 says to show it
// turned clockwise, as a camera held upright stores a portrait.
func portraitJPEG(t *testing.T, path string) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 32, 24))
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 32 * 8)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	tiff := []byte("MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00")
	seg := append([]byte("Exif\x00\x00"), tiff...)
	out := append([]byte{0xff, 0xd8, 0xff, 0xe1, 0, byte(len(seg) + 2)}, seg...)
	if err := os.WriteFile(path, append(out, b.Bytes()[2:]...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEncodeOrientation: encode applies EXIF orientation (the payload records the upright
// source size), --exif-orientation=false keeps the stored pixels; --max-pixels bounds images.
func TestEncodeOrientation(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "portrait.jpg")
	portraitJPEG(t, in)
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, `"source":[32,24]`},
		{[]string{"--exif-orientation=false"}, `"source":[24,32]`},
	} {
		out := filepath.Join(dir, strings.Join(c.flags, "")+"p.msgpack")
		if _, _, err := runErr(append([]string{"encode", in, "-o", out, "-k", "1"}, c.flags...)...); err != nil {
			t.Fatal(err)
		}
		view, err := run("inspect", out)
		if err != nil || !strings.Contains(view, c.want) {
			t.Errorf("%v: want %s in\n%s", c.flags, c.want, view)
		}
	}
	_, _, err := runErr("encode", in, "-o", filepath.Join(dir, "big.msgpack"), "--max-pixels", "700")
	if err == nil || !strings.Contains(err.Error(), "--max-pixels raises") {
		t.Errorf("--max-pixels 700: %v", err)
	}
	if _, _, err := runErr("encode", in, "-o", filepath.Join(dir, "big.msgpack"), "--max-pixels", "768"); err != nil {
		t.Errorf("--max-pixels 768: %v", err)
	}
	if _, _, err := runErr("encode", in, "-o", filepath.Join(dir, "z.msgpack"), "--max-pixels", "0"); err == nil {
		t.Error("--max-pixels 0 accepted")
	} else if _, ok := err.(usageError); !ok {
		t.Errorf("--max-pixels 0: %v is not a usage error", err)
	}
}
