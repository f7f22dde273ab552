package service

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

// TestEncodeOrientation: "encode" turns an image upright by its EXIF orientation unless
// exif_orientation is false, as the CLI's --exif-orientation and sdk/image do.
func TestEncodeOrientation(t *testing.T) {
	s := New(Options{})
	h := openC1(t, s)
	// testImage's PNG with an eXIf chunk (big-endian TIFF, orientation 6) after IHDR.
	exif := []byte("MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00")
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(exif)))
	chunk = append(append(chunk, "eXIf"...), exif...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	img := testImage(40, 36)
	img = append(append(append([]byte(nil), img[:33]...), chunk...), img[33:]...)
	for _, c := range []struct {
		req  M
		w, h int
	}{
		{M{}, 36, 40},
		{M{"exif_orientation": true}, 36, 40},
		{M{"exif_orientation": false}, 40, 36},
	} {
		req := M{"op": "encode", "handle": h, "image": img}
		for k, v := range c.req {
			req[k] = v
		}
		r := call(t, s, req)
		var p payload.Payload
		if err := payload.Unmarshal(r["payload"].([]byte), &p); err != nil {
			t.Fatal(err)
		}
		if p.Image.SourceWidth != c.w || p.Image.SourceHeight != c.h {
			t.Errorf("%v: source %dx%d, want %dx%d", c.req, p.Image.SourceWidth, p.Image.SourceHeight, c.w, c.h)
		}
	}
	r := dec(t, s.Handle(enc(t, M{"op": "encode", "handle": h, "image": img, "exif_orientation": 1})))
	if r["ok"] != false {
		t.Errorf("exif_orientation 1 accepted: %v", r)
	}
}
