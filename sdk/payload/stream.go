package payload

import "strconv"

// Header opens a token stream: everything a decoder needs before the ids arrive in chunks.
type Header struct {
	Model  Model
	Image  Image
	Frames int    // as Payload.Frames
	Count  int    // tokens per frame the stream will carry; 0 = not known in advance
	Cond   *Cond  // optional conditioning of generated images
	Hints  *Hints // optional decode hints
}

// NumFrames is Frames, or 1 when Frames is 0.
func (h *Header) NumFrames() int {
	if h.Frames <= 0 {
		return 1
	}
	return h.Frames
}

// Validate checks the header against the format's rules and the default limits.
func (h *Header) Validate() error { return h.validate(DefaultLimits) }

func (h *Header) validate(lim Limits) error {
	if err := validateHead(&h.Model, &h.Image, h.Frames, h.Cond, h.Hints, lim); err != nil {
		return err
	}
	if h.Count < 0 || h.Count > h.Model.MaxTokens {
		return errf("count", ErrTooLong, "%d tokens, model maximum %d", h.Count, h.Model.MaxTokens)
	}
	if h.NumFrames() > 1 && h.Count == 0 {
		return errf("count", ErrMissing, "a stream of %d frames must say its tokens per frame", h.NumFrames())
	}
	return nil
}

// AppendBinary appends the canonical msgpack encoding of the header to b.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return b, err
	}
	return encodeWith(b, func(enc *encoder) {
		enc.top(FormatStream, &h.Model, &h.Image, h.Frames, h.Count, nil, h.Cond, h.Hints)
	}), nil
}

// DecodeHeader decodes a stream header. The input must hold the header alone.
func DecodeHeader(data []byte, h *Header, o Options) error {
	lim := o.Limits.withDefaults()
	if len(data) > lim.MaxBytes {
		return errf("", ErrTooLarge, "%d bytes, limit %d", len(data), lim.MaxBytes)
	}
	dc := getDecoder(data, lim)
	defer putDecoder(dc)
	if err := dc.header(h); err != nil {
		return err
	}
	if dc.r.Len() > 0 {
		return errf("", ErrTrailing, "%d bytes after the header", dc.r.Len())
	}
	if err := h.validate(lim); err != nil {
		return err
	}
	return checkModel(&h.Model, o.Expect)
}

func (dc *decoder) header(h *Header) error {
	cond, hints := h.Cond, h.Hints
	hd := head{model: &h.Model, image: &h.Image, frames: &h.Frames, cond: &cond, hints: &hints}
	if err := dc.top(FormatStream, &hd); err != nil {
		return err
	}
	h.Count, h.Cond, h.Hints = hd.count, nil, nil
	if hd.hasCond {
		h.Cond = cond
	}
	if hd.hasHints && hintsLen(hints) > 0 {
		h.Hints = hints
	}
	return nil
}

// Chunk is one piece of a stream: consecutive ids starting at a position of the whole
// (frame-major) sequence.
type Chunk struct {
	Start int      // position of the chunk's first id in the whole sequence
	IDs   []uint32 // at least one id
	End   bool     // this is the last chunk
}

// AppendBinary appends the canonical msgpack encoding of the chunk, whose ids are checked
// against the header's model, to b.
func (c *Chunk) AppendBinary(b []byte, h *Header) ([]byte, error) {
	if err := c.check(h); err != nil {
		return b, err
	}
	return encodeWith(b, func(enc *encoder) {
		n := 2
		if c.End {
			n++
		}
		enc.mapLen(n)
		enc.str("start")
		enc.uint(uint64(c.Start))
		enc.ids(c.IDs, h.Model.IDWidth())
		if c.End {
			enc.str("end")
			_ = enc.e.EncodeBool(true)
		}
	}), nil
}

func (c *Chunk) check(h *Header) error {
	max := h.NumFrames() * h.Model.MaxTokens
	if len(c.IDs) == 0 {
		return errf("ids", ErrRange, "empty chunk")
	}
	if c.Start < 0 || c.Start+len(c.IDs) > max {
		return errf("ids", ErrTooLong, "ids %d..%d, stream maximum %d", c.Start, c.Start+len(c.IDs), max)
	}
	return checkIDs(c.IDs, h.Model.CodebookSize(), c.Start)
}

var chunkKeys = keys("", "start", "ids", "end")

// DecodeChunk decodes one chunk of the stream that h opened, reusing c.IDs.
func DecodeChunk(data []byte, c *Chunk, h *Header, o Options) error {
	lim := o.Limits.withDefaults()
	if len(data) > lim.MaxBytes {
		return errf("", ErrTooLarge, "%d bytes, limit %d", len(data), lim.MaxBytes)
	}
	dc := getDecoder(data, lim)
	defer putDecoder(dc)
	if err := dc.chunk(c, h); err != nil {
		return err
	}
	if dc.r.Len() > 0 {
		return errf("", ErrTrailing, "%d bytes after the chunk", dc.r.Len())
	}
	return nil
}

func (dc *decoder) chunk(c *Chunk, h *Header) error {
	if c0, err := dc.peek(""); err != nil {
		return err
	} else if kind(c0) != "map" {
		return errf("", ErrFormat, "a chunk is a msgpack map, got %s", kind(c0))
	}
	var raw []byte
	c.End = false
	_, err := dc.fields(chunkKeys, 0b011, func(f string, i int) error {
		var err error
		switch i {
		case 0:
			c.Start, err = dc.int(f, h.NumFrames()*h.Model.MaxTokens)
		case 1:
			raw, err = dc.raw(f, "binary", dc.lim.MaxBytes)
		default:
			c.End, err = dc.bool(f)
		}
		return err
	})
	if err != nil {
		return err
	}
	if c.IDs, err = unpackIDs(c.IDs, raw, &h.Model, c.Start); err != nil {
		return err
	}
	return c.check(h)
}

// Stream is a header and the chunks received so far. Add chunks with Add, which checks them.
type Stream struct {
	Header Header
	Chunks []Chunk

	received, counted int // ids in Chunks[:counted], so that Len stays O(1) as Add appends
}

// Len is the number of ids received.
func (s *Stream) Len() int {
	if s.counted > len(s.Chunks) {
		s.received, s.counted = 0, 0
	}
	for ; s.counted < len(s.Chunks); s.counted++ {
		s.received += len(s.Chunks[s.counted].IDs)
	}
	return s.received
}

// Done reports whether the last chunk has arrived.
func (s *Stream) Done() bool { return len(s.Chunks) > 0 && s.Chunks[len(s.Chunks)-1].End }

// Add appends a chunk after checking that it continues the stream: it starts where the ids so
// far end, stays within the model's maximum (and the header's count, if given), and no chunk
// follows the end. A final chunk must complete whole frames.
func (s *Stream) Add(c Chunk) error {
	h := &s.Header
	if s.Done() {
		return errf("", ErrStream, "chunk after the end of the stream")
	}
	if err := c.check(h); err != nil {
		return err
	}
	n := s.Len()
	if c.Start != n {
		return errf("start", ErrStream, "chunk starts at %d, %d ids received", c.Start, n)
	}
	total := n + len(c.IDs)
	if h.Count > 0 && total > h.NumFrames()*h.Count {
		return errf("ids", ErrTooLong, "%d ids, the header announced %d", total, h.NumFrames()*h.Count)
	}
	if c.End {
		if h.Count > 0 && total != h.NumFrames()*h.Count {
			return errf("end", ErrStream, "stream ends after %d ids, the header announced %d", total, h.NumFrames()*h.Count)
		}
		if total%h.NumFrames() != 0 {
			return errf("end", ErrStream, "%d ids do not split into %d frames", total, h.NumFrames())
		}
	}
	s.Chunks = append(s.Chunks, c)
	return nil
}

// Payload returns the whole payload of the ids received so far. For a single image that is a
// valid prefix after any chunk: decode it to show the image coarse to fine. A stream of several
// frames gives a payload only once it is done.
func (s *Stream) Payload() (*Payload, error) {
	h := &s.Header
	n := s.Len()
	if n == 0 {
		return nil, errf("ids", ErrStream, "no ids received yet")
	}
	if h.NumFrames() > 1 && !s.Done() {
		return nil, errf("ids", ErrStream, "a stream of %d frames is not complete", h.NumFrames())
	}
	p := &Payload{Model: h.Model, Image: h.Image, Frames: h.Frames, Cond: h.Cond, Hints: h.Hints}
	p.Model.Levels = append([]int(nil), h.Model.Levels...)
	p.IDs = make([]uint32, 0, n)
	for i := range s.Chunks {
		p.IDs = append(p.IDs, s.Chunks[i].IDs...)
	}
	return p, nil
}

// Split cuts a payload into a stream: its header (with the count known) and chunks of the
// given sizes, in order; ids left over after the sizes go in one more chunk. The last chunk is
// marked End.
func Split(p *Payload, sizes []int) (*Stream, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	s := &Stream{Header: Header{Model: p.Model, Image: p.Image, Frames: p.Frames, Count: p.Count(), Cond: p.Cond, Hints: p.Hints}}
	start := 0
	for _, n := range sizes {
		if n < 1 {
			return nil, errf("", ErrRange, "chunk size %d", n)
		}
		if start >= len(p.IDs) {
			break
		}
		end := min(start+n, len(p.IDs))
		s.Chunks = append(s.Chunks, Chunk{Start: start, IDs: p.IDs[start:end:end]})
		start = end
	}
	if start < len(p.IDs) {
		s.Chunks = append(s.Chunks, Chunk{Start: start, IDs: p.IDs[start:]})
	}
	s.Chunks[len(s.Chunks)-1].End = true
	return s, nil
}

// AppendBinary appends the header and then each chunk, as consecutive msgpack values.
func (s *Stream) AppendBinary(b []byte) ([]byte, error) {
	b, err := s.Header.AppendBinary(b)
	for i := 0; err == nil && i < len(s.Chunks); i++ {
		b, err = s.Chunks[i].AppendBinary(b, &s.Header)
	}
	return b, err
}

// DecodeStream decodes a header followed by any number of chunks, as consecutive msgpack values
// (what Stream.AppendBinary writes). The stream need not be complete: check Done.
func DecodeStream(data []byte, o Options) (*Stream, error) {
	lim := o.Limits.withDefaults()
	if len(data) > lim.MaxBytes {
		return nil, errf("", ErrTooLarge, "%d bytes, limit %d", len(data), lim.MaxBytes)
	}
	dc := getDecoder(data, lim)
	defer putDecoder(dc)
	s := &Stream{}
	if err := dc.header(&s.Header); err != nil {
		return nil, err
	}
	if err := s.Header.validate(lim); err != nil {
		return nil, err
	}
	if err := checkModel(&s.Header.Model, o.Expect); err != nil {
		return nil, err
	}
	for i := 0; dc.r.Len() > 0; i++ {
		var c Chunk
		if err := dc.chunk(&c, &s.Header); err != nil {
			if pe, ok := err.(*Error); ok {
				pe.Field = chunkField(i, pe.Field)
			}
			return nil, err
		}
		if err := s.Add(c); err != nil {
			if pe, ok := err.(*Error); ok {
				pe.Field = chunkField(i, pe.Field)
			}
			return nil, err
		}
	}
	return s, nil
}

func chunkField(i int, f string) string {
	name := "chunks[" + strconv.Itoa(i) + "]"
	if f == "" {
		return name
	}
	return name + "." + f
}
