package payload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

const maxDepth = 32 // nesting accepted inside unknown fields

// decoder reads msgpack values strictly, naming the field in every error. It reads the input
// in place: binary fields are returned as sub-slices of it.
type decoder struct {
	data []byte
	r    bytes.Reader
	d    *msgpack.Decoder
	lim  Limits
}

var decoders = sync.Pool{New: func() any { return &decoder{d: msgpack.NewDecoder(nil)} }}

func getDecoder(data []byte, lim Limits) *decoder {
	dc := decoders.Get().(*decoder)
	dc.data = data
	dc.r.Reset(data)
	dc.d.Reset(&dc.r)
	dc.lim = lim
	return dc
}

func putDecoder(dc *decoder) {
	dc.data = nil
	dc.r.Reset(nil)
	decoders.Put(dc)
}

func (dc *decoder) offset() int { return len(dc.data) - dc.r.Len() }

func (dc *decoder) fail(field string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errf(field, ErrTruncated, "input ends at byte %d", len(dc.data))
	}
	return errf(field, ErrType, "%v", err)
}

func kind(c byte) string {
	switch {
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		return "map"
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return "array"
	case msgpcode.IsString(c):
		return "string"
	case msgpcode.IsBin(c):
		return "binary"
	case msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64):
		return "integer"
	case c == msgpcode.Float || c == msgpcode.Double:
		return "float"
	case c == msgpcode.True || c == msgpcode.False:
		return "bool"
	case c == msgpcode.Nil:
		return "nil"
	}
	return "extension"
}

func (dc *decoder) peek(field string) (byte, error) {
	c, err := dc.d.PeekCode()
	if err != nil {
		return 0, dc.fail(field, err)
	}
	return c, nil
}

func (dc *decoder) expect(field, want string) (byte, error) {
	c, err := dc.peek(field)
	if err != nil {
		return 0, err
	}
	if k := kind(c); k != want {
		return 0, errf(field, ErrType, "want %s, got %s", want, k)
	}
	return c, nil
}

func (dc *decoder) mapLen(field string) (int, error) {
	if _, err := dc.expect(field, "map"); err != nil {
		return 0, err
	}
	n, err := dc.d.DecodeMapLen()
	if err != nil {
		return 0, dc.fail(field, err)
	}
	return n, nil
}

func (dc *decoder) arrayLen(field string, min, max int) (int, error) {
	if _, err := dc.expect(field, "array"); err != nil {
		return 0, err
	}
	n, err := dc.d.DecodeArrayLen()
	if err != nil {
		return 0, dc.fail(field, err)
	}
	if n < min || n > max {
		return 0, errf(field, ErrRange, "%d elements, want %d..%d", n, min, max)
	}
	return n, nil
}

// raw reads a string or binary of at most max bytes and returns it as a sub-slice of the input.
func (dc *decoder) raw(field, want string, max int) ([]byte, error) {
	if _, err := dc.expect(field, want); err != nil {
		return nil, err
	}
	n, err := dc.d.DecodeBytesLen()
	if err != nil {
		return nil, dc.fail(field, err)
	}
	if n > max {
		return nil, errf(field, ErrRange, "%d bytes, limit %d", n, max)
	}
	if n > dc.r.Len() {
		return nil, errf(field, ErrTruncated, "%d bytes announced, %d left", n, dc.r.Len())
	}
	start := dc.offset()
	if _, err := dc.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, dc.fail(field, err)
	}
	return dc.data[start : start+n : start+n], nil
}

// str reads a string into *dst, allocating only when it differs from the current value.
func (dc *decoder) str(field string, dst *string, max int) error {
	b, err := dc.raw(field, "string", max)
	if err != nil {
		return err
	}
	if string(b) != *dst {
		*dst = string(b)
	}
	return nil
}

func (dc *decoder) uint(field string, max uint64) (uint64, error) {
	c, err := dc.expect(field, "integer")
	if err != nil {
		return 0, err
	}
	var v uint64
	switch {
	case c == msgpcode.Uint64:
		v, err = dc.d.DecodeUint64()
	default:
		var s int64
		s, err = dc.d.DecodeInt64()
		if err == nil && s < 0 {
			return 0, errf(field, ErrRange, "%d is negative", s)
		}
		v = uint64(s)
	}
	if err != nil {
		return 0, dc.fail(field, err)
	}
	if v > max {
		return 0, errf(field, ErrRange, "%d, limit %d", v, max)
	}
	return v, nil
}

func (dc *decoder) int(field string, max int) (int, error) {
	v, err := dc.uint(field, uint64(max))
	return int(v), err
}

func (dc *decoder) float32(field string) (float32, error) {
	c, err := dc.peek(field)
	if err != nil {
		return 0, err
	}
	var f float64
	switch kind(c) {
	case "float":
		f, err = dc.d.DecodeFloat64()
	case "integer":
		var i int64
		i, err = dc.d.DecodeInt64()
		f = float64(i)
	default:
		return 0, errf(field, ErrType, "want float, got %s", kind(c))
	}
	if err != nil {
		return 0, dc.fail(field, err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
		return 0, errf(field, ErrRange, "%v", f)
	}
	return float32(f), nil
}

func (dc *decoder) bool(field string) (bool, error) {
	if _, err := dc.expect(field, "bool"); err != nil {
		return false, err
	}
	b, err := dc.d.DecodeBool()
	if err != nil {
		return false, dc.fail(field, err)
	}
	return b, nil
}

// skip skips one value of an unknown field, refusing nesting deeper than maxDepth so that no
// input can exhaust the stack.
func (dc *decoder) skip(field string, depth int) error {
	if depth > maxDepth {
		return errf(field, ErrRange, "nested deeper than %d", maxDepth)
	}
	c, err := dc.peek(field)
	if err != nil {
		return err
	}
	n := 0
	switch kind(c) {
	case "map":
		if n, err = dc.d.DecodeMapLen(); err == nil {
			n *= 2
		}
	case "array":
		n, err = dc.d.DecodeArrayLen()
	case "string", "binary":
		// Skipped here rather than by msgpack's Skip, which allocates up to a megabyte
		// before it notices that a declared length runs past the input.
		_, err = dc.raw(field, kind(c), math.MaxInt)
		return err
	case "extension":
		var size int
		if _, size, err = dc.d.DecodeExtHeader(); err == nil {
			if size > dc.r.Len() {
				return errf(field, ErrTruncated, "%d bytes announced, %d left", size, dc.r.Len())
			}
			_, err = dc.r.Seek(int64(size), io.SeekCurrent)
		}
	default:
		err = dc.d.Skip() // a fixed-size scalar
	}
	if err != nil {
		return dc.fail(field, err)
	}
	for i := 0; i < n; i++ {
		if err := dc.skip(field, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// keyTable lists the known keys of a map and their full dotted paths (precomputed, so that
// decoding builds no strings).
type keyTable struct {
	field string
	names []string
	paths []string
}

func keys(field string, names ...string) keyTable {
	t := keyTable{field: field, names: names}
	for _, n := range names {
		if field != "" {
			n = field + "." + n
		}
		t.paths = append(t.paths, n)
	}
	return t
}

// fields iterates over the keys of a map, calling fn with each known key's path and index;
// unknown keys are skipped. Duplicate known keys are refused; missing required keys (a bit set
// of indexes) are reported at the end. It returns the set of keys seen.
func (dc *decoder) fields(kt keyTable, required uint32, fn func(path string, i int) error) (uint32, error) {
	field, names := kt.field, kt.names
	n, err := dc.mapLen(field)
	if err != nil {
		return 0, err
	}
	var seen uint32
	for k := 0; k < n; k++ {
		kb, err := dc.raw(field, "string", 1<<10)
		if err != nil {
			if errors.Is(err, ErrType) {
				return seen, errf(field, ErrType, "map key %d is not a string", k)
			}
			return seen, err
		}
		i := -1
		for j, name := range names {
			if string(kb) == name {
				i = j
				break
			}
		}
		if i < 0 {
			if err := dc.skip(field, 1); err != nil {
				return seen, err
			}
			continue
		}
		if seen&(1<<i) != 0 {
			return seen, errf(kt.paths[i], ErrDuplicate, "appears twice")
		}
		seen |= 1 << i
		if err := fn(kt.paths[i], i); err != nil {
			return seen, err
		}
	}
	if missing := required &^ seen; missing != 0 {
		for i := range names {
			if missing&(1<<i) != 0 {
				return seen, errf(kt.paths[i], ErrMissing, "required")
			}
		}
	}
	return seen, nil
}

var modelKeys = keys("model", "name", "digest", "fsq", "max_tokens")

func (dc *decoder) model(m *Model) error {
	_, err := dc.fields(modelKeys, 0b1111, func(f string, i int) error {
		switch i {
		case 0:
			return dc.str(f, &m.Name, dc.lim.MaxString)
		case 1:
			b, err := dc.raw(f, "binary", DigestSize)
			if err == nil && len(b) != DigestSize {
				err = errf(f, ErrRange, "%d bytes, want %d", len(b), DigestSize)
			}
			if err == nil {
				copy(m.Digest[:], b)
			}
			return err
		case 2:
			n, err := dc.arrayLen(f, 1, maxLevels)
			if err != nil {
				return err
			}
			m.Levels = m.Levels[:0]
			for j := 0; j < n; j++ {
				l, err := dc.int(f, maxLevel)
				if err != nil {
					return err
				}
				m.Levels = append(m.Levels, l)
			}
			return nil
		default:
			var err error
			m.MaxTokens, err = dc.int(f, maxModelLen)
			return err
		}
	})
	return err
}

var imageKeys = keys("image", "height", "width", "resize", "crop", "source")

func (dc *decoder) image(im *Image) error {
	seen, err := dc.fields(imageKeys, 0b11, func(f string, i int) error {
		var err error
		switch i {
		case 0:
			im.Height, err = dc.int(f, maxImageSide)
		case 1:
			im.Width, err = dc.int(f, maxImageSide)
		case 2:
			err = dc.str(f, &im.Resize, dc.lim.MaxString)
		case 3:
			err = dc.str(f, &im.Crop, dc.lim.MaxString)
		default:
			if _, err = dc.arrayLen(f, 2, 2); err == nil {
				if im.SourceHeight, err = dc.int(f, 1<<30); err == nil {
					im.SourceWidth, err = dc.int(f, 1<<30)
				}
			}
		}
		return err
	})
	// Clear absent optional fields only now, so that unchanged strings are not reallocated.
	if seen&(1<<2) == 0 {
		im.Resize = ""
	}
	if seen&(1<<3) == 0 {
		im.Crop = ""
	}
	if seen&(1<<4) == 0 {
		im.SourceHeight, im.SourceWidth = 0, 0
	}
	return err
}

var condKeys = keys("cond", "class", "prompt")

func (dc *decoder) cond(c *Cond) error {
	seen, err := dc.fields(condKeys, 0, func(f string, i int) error {
		if i == 1 {
			return dc.str(f, &c.Prompt, dc.lim.MaxPrompt)
		}
		v, err := dc.int(f, math.MaxInt32)
		c.Class = &v
		return err
	})
	if seen&1 == 0 {
		c.Class = nil
	}
	if seen&2 == 0 {
		c.Prompt = ""
	}
	return err
}

var hintKeys = keys("hints", "steps", "guidance", "apg", "seed")

func (dc *decoder) hints(h *Hints) error {
	*h = Hints{}
	_, err := dc.fields(hintKeys, 0, func(f string, i int) error {
		var err error
		switch i {
		case 0:
			h.Steps, err = dc.int(f, maxSteps)
		case 1:
			var g float32
			g, err = dc.float32(f)
			h.Guidance = &g
		case 2:
			h.APG, err = dc.bool(f)
		default:
			var s uint64
			s, err = dc.uint(f, math.MaxUint64)
			h.Seed = &s
		}
		return err
	})
	return err
}

// head holds the fields shared by a whole payload and a stream header.
type head struct {
	model    *Model
	image    *Image
	frames   *int
	count    int
	hasCount bool
	ids      []byte // raw little-endian ids, a sub-slice of the input
	hasIDs   bool
	cond     **Cond
	hints    **Hints
	hasCond  bool
	hasHints bool
}

var topKeys = keys("", "format", "version", "model", "image", "frames", "count", "ids", "cond", "hints")

// top reads the top-level map of a payload (format FormatTokens) or stream header
// (FormatStream). "format" and "version" must be its first two keys, so that a decoder knows
// what it reads before it reads it.
func (dc *decoder) top(format string, h *head) error {
	c, err := dc.peek("")
	if err != nil {
		if errors.Is(err, ErrTruncated) {
			return errf("", ErrTruncated, "empty input")
		}
		return err
	}
	if kind(c) != "map" {
		return errf("", ErrFormat, "top level is a msgpack %s, not a map", kind(c))
	}
	*h.frames = 0
	h.hasIDs, h.hasCount, h.hasCond, h.hasHints = false, false, false, false
	keyIndex := 0
	required := uint32(0b1111) // format, version, model, image
	if format == FormatTokens {
		required |= 1<<5 | 1<<6 // count, ids
	}
	_, err = dc.fields(topKeys, required, func(f string, i int) error {
		keyIndex++
		if (keyIndex == 1) != (i == 0) || (keyIndex == 2) != (i == 1) {
			return errf(f, ErrFormat, "the first two keys must be format and version")
		}
		switch i {
		case 0:
			got, err := dc.raw(f, "string", 64)
			if err != nil {
				return err
			}
			if string(got) != format {
				if string(got) == FormatStream || string(got) == FormatTokens {
					return errf(f, ErrFormat, "this is a %q value, not %q", got, format)
				}
				return errf(f, ErrFormat, "%q, want %q", got, format)
			}
		case 1:
			if _, err := dc.arrayLen(f, 2, 2); err != nil {
				return err
			}
			major, err := dc.uint(f, math.MaxUint32)
			if err != nil {
				return err
			}
			if _, err := dc.uint(f, math.MaxUint32); err != nil {
				return err
			}
			if major != Major {
				return errf(f, ErrVersion, "major version %d, this decoder reads %d", major, Major)
			}
		case 2:
			return dc.model(h.model)
		case 3:
			return dc.image(h.image)
		case 4:
			v, err := dc.int(f, dc.lim.MaxFrames)
			*h.frames = v
			return err
		case 5:
			v, err := dc.int(f, maxModelLen)
			h.count, h.hasCount = v, true
			return err
		case 6:
			if format != FormatTokens {
				return errf(f, ErrFormat, "a stream header carries no ids; they come in chunks")
			}
			b, err := dc.raw(f, "binary", dc.lim.MaxBytes)
			h.ids, h.hasIDs = b, true
			return err
		case 7:
			if *h.cond == nil {
				*h.cond = new(Cond)
			}
			h.hasCond = true
			return dc.cond(*h.cond)
		default:
			if *h.hints == nil {
				*h.hints = new(Hints)
			}
			h.hasHints = true
			return dc.hints(*h.hints)
		}
		return nil
	})
	return err
}

// unpackIDs converts little-endian ids of the model's width into dst (reusing its capacity),
// checking each against the codebook.
func unpackIDs(dst []uint32, raw []byte, m *Model, offset int) ([]uint32, error) {
	w := m.IDWidth()
	if len(raw)%w != 0 {
		return dst, errf("ids", ErrRange, "%d bytes is not a whole number of %d-byte ids", len(raw), w)
	}
	n := len(raw) / w
	if cap(dst) < n {
		dst = make([]uint32, n)
	}
	dst = dst[:n]
	var bad uint32
	if w == 2 {
		for i := range dst {
			id := uint32(binary.LittleEndian.Uint16(raw[2*i:]))
			dst[i] = id
			bad = max(bad, id)
		}
	} else {
		for i := range dst {
			id := binary.LittleEndian.Uint32(raw[4*i:])
			dst[i] = id
			bad = max(bad, id)
		}
	}
	if uint64(bad) >= uint64(m.CodebookSize()) {
		return dst, checkIDs(dst, m.CodebookSize(), offset)
	}
	return dst, nil
}

// Unmarshal decodes a whole payload with the default limits. See Decode.
func Unmarshal(data []byte, p *Payload) error { return Decode(data, p, Options{}) }

// UnmarshalBinary decodes a whole payload with the default limits.
func (p *Payload) UnmarshalBinary(data []byte) error { return Decode(data, p, Options{}) }

// Decode decodes a whole payload into p, reusing p's slices. It accepts any msgpack encoding of
// a valid payload (keys after format and version in any order, any integer width, unknown keys
// skipped) and refuses everything else with an *Error naming the field. On error, p holds
// partial data and must not be used.
func Decode(data []byte, p *Payload, o Options) error {
	lim := o.Limits.withDefaults()
	if len(data) > lim.MaxBytes {
		return errf("", ErrTooLarge, "%d bytes, limit %d", len(data), lim.MaxBytes)
	}
	dc := getDecoder(data, lim)
	defer putDecoder(dc)
	// Optional parts already allocated in p are reused when the new payload has them too.
	cond, hints := p.Cond, p.Hints
	h := head{model: &p.Model, image: &p.Image, frames: &p.Frames, cond: &cond, hints: &hints}
	if err := dc.top(FormatTokens, &h); err != nil {
		return err
	}
	if dc.r.Len() > 0 {
		return errf("", ErrTrailing, "%d bytes after the payload", dc.r.Len())
	}
	p.Cond, p.Hints = nil, nil
	if h.hasCond {
		p.Cond = cond
	}
	if h.hasHints && hintsLen(hints) > 0 {
		p.Hints = hints
	}
	var err error
	if err := validateHead(&p.Model, &p.Image, p.Frames, p.Cond, p.Hints, lim); err != nil {
		return err
	}
	if p.IDs, err = unpackIDs(p.IDs, h.ids, &p.Model, 0); err != nil {
		return err
	}
	if err := checkCount(h.count, len(p.IDs), p.NumFrames()); err != nil {
		return err
	}
	if err := p.validateLength(); err != nil {
		return err
	}
	return checkModel(&p.Model, o.Expect)
}

func checkCount(count, ids, frames int) error {
	if count*frames != ids {
		return errf("count", ErrRange, "count %d × %d frames, but %d ids", count, frames, ids)
	}
	return nil
}

func checkModel(got, want *Model) error {
	if want == nil || got.Equal(want) {
		return nil
	}
	return errf("model", ErrModelMismatch, "model %q (digest %x…), want %q (digest %x…): another digest, FSQ levels or length",
		got.Name, got.Digest[:4], want.Name, want.Digest[:4])
}
