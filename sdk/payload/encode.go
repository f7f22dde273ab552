package payload

import (
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// appendWriter lets a msgpack.Encoder append to a caller's slice without copying.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *appendWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }
func (w *appendWriter) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}

type encoder struct {
	w appendWriter
	e *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	enc := &encoder{e: msgpack.NewEncoder(nil)}
	enc.e.ResetWriter(&enc.w)
	return enc
}}

// encodeWith runs fn with a pooled encoder appending to dst.
func encodeWith(dst []byte, fn func(*encoder)) []byte {
	enc := encoders.Get().(*encoder)
	enc.w.b = dst
	fn(enc)
	out := enc.w.b
	enc.w.b = nil
	encoders.Put(enc)
	return out
}

// The msgpack encoder writes to memory and cannot fail, so its errors are not checked below.

func (enc *encoder) str(s string)  { _ = enc.e.EncodeString(s) }
func (enc *encoder) uint(n uint64) { _ = enc.e.EncodeUint(n) }
func (enc *encoder) mapLen(n int)  { _ = enc.e.EncodeMapLen(n) }

func (enc *encoder) version() {
	enc.str("version")
	_ = enc.e.EncodeArrayLen(2)
	enc.uint(Major)
	enc.uint(Minor)
}

func (enc *encoder) model(m *Model) {
	enc.str("model")
	enc.mapLen(4)
	enc.str("name")
	enc.str(m.Name)
	enc.str("digest")
	_ = enc.e.EncodeBytes(m.Digest[:])
	enc.str("fsq")
	_ = enc.e.EncodeArrayLen(len(m.Levels))
	for _, l := range m.Levels {
		enc.uint(uint64(l))
	}
	enc.str("max_tokens")
	enc.uint(uint64(m.MaxTokens))
}

func (enc *encoder) image(im *Image) {
	n := 2
	for _, set := range []bool{im.Resize != "", im.Crop != "", im.SourceHeight > 0} {
		if set {
			n++
		}
	}
	enc.str("image")
	enc.mapLen(n)
	enc.str("height")
	enc.uint(uint64(im.Height))
	enc.str("width")
	enc.uint(uint64(im.Width))
	if im.Resize != "" {
		enc.str("resize")
		enc.str(im.Resize)
	}
	if im.Crop != "" {
		enc.str("crop")
		enc.str(im.Crop)
	}
	if im.SourceHeight > 0 {
		enc.str("source")
		_ = enc.e.EncodeArrayLen(2)
		enc.uint(uint64(im.SourceHeight))
		enc.uint(uint64(im.SourceWidth))
	}
}

// ids writes a bin of little-endian ids of the given width (2 or 4 bytes).
func (enc *encoder) ids(ids []uint32, width int) {
	enc.str("ids")
	_ = enc.e.EncodeBytesLen(len(ids) * width)
	b := enc.w.b
	if width == 2 {
		for _, id := range ids {
			b = append(b, byte(id), byte(id>>8))
		}
	} else {
		for _, id := range ids {
			b = append(b, byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
		}
	}
	enc.w.b = b
}

func (enc *encoder) cond(c *Cond) {
	if c == nil {
		return
	}
	n := 0
	if c.Class != nil {
		n++
	}
	if c.Prompt != "" {
		n++
	}
	enc.str("cond")
	enc.mapLen(n)
	if c.Class != nil {
		enc.str("class")
		enc.uint(uint64(*c.Class))
	}
	if c.Prompt != "" {
		enc.str("prompt")
		enc.str(c.Prompt)
	}
}

func hintsLen(h *Hints) int {
	if h == nil {
		return 0
	}
	n := 0
	for _, set := range []bool{h.Steps > 0, h.Guidance != nil, h.APG, h.Seed != nil} {
		if set {
			n++
		}
	}
	return n
}

func (enc *encoder) hints(h *Hints) {
	n := hintsLen(h)
	if n == 0 {
		return
	}
	enc.str("hints")
	enc.mapLen(n)
	if h.Steps > 0 {
		enc.str("steps")
		enc.uint(uint64(h.Steps))
	}
	if h.Guidance != nil {
		enc.str("guidance")
		_ = enc.e.EncodeFloat32(*h.Guidance)
	}
	if h.APG {
		enc.str("apg")
		_ = enc.e.EncodeBool(true)
	}
	if h.Seed != nil {
		enc.str("seed")
		enc.uint(*h.Seed)
	}
}

func condHintsLen(c *Cond, h *Hints) int {
	n := 0
	if c != nil {
		n++
	}
	if hintsLen(h) > 0 {
		n++
	}
	return n
}

// MarshalBinary returns the canonical msgpack encoding of the payload (docs/payload.md).
func (p *Payload) MarshalBinary() ([]byte, error) { return p.AppendBinary(nil) }

// AppendBinary appends the canonical msgpack encoding of the payload to b. It validates the
// payload first and appends nothing if it is invalid.
func (p *Payload) AppendBinary(b []byte) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return b, err
	}
	return encodeWith(b, func(enc *encoder) {
		enc.top(FormatTokens, &p.Model, &p.Image, p.Frames, p.Count(), p.IDs, p.Cond, p.Hints)
	}), nil
}

// top writes the top-level map shared by a whole payload (ids non-nil) and a stream header
// (ids nil, count 0 when unknown), in the canonical key order.
func (enc *encoder) top(format string, m *Model, im *Image, frames, count int, ids []uint32, c *Cond, h *Hints) {
	n := 4 + condHintsLen(c, h)
	for _, set := range []bool{frames > 1, count > 0, ids != nil} {
		if set {
			n++
		}
	}
	enc.mapLen(n)
	enc.str("format")
	enc.str(format)
	enc.version()
	enc.model(m)
	enc.image(im)
	if frames > 1 {
		enc.str("frames")
		enc.uint(uint64(frames))
	}
	if count > 0 {
		enc.str("count")
		enc.uint(uint64(count))
	}
	if ids != nil {
		enc.ids(ids, m.IDWidth())
	}
	enc.cond(c)
	enc.hints(h)
}
