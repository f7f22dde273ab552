package payload

import (
	"bytes"
	"math"
	"unicode/utf8"
)

// Wire identity of the formats. See docs/payload.md.
const (
	FormatTokens = "flextok/tokens" // a whole token payload
	FormatStream = "flextok/stream" // the header of a stream; chunks follow
	Major        = 1                // incompatible changes bump this; decoders refuse other majors
	Minor        = 0                // additive changes bump this; decoders skip unknown keys
	DigestSize   = 32               // SHA-256
	MediaType    = "application/vnd.msgpack"
)

// Bounds that hold whatever the limits.
const (
	maxLevels    = 16
	maxLevel     = 1 << 16
	maxCodebook  = 1 << 24 // as sdk/fsq: ids stay exact in float32
	maxModelLen  = 1 << 16 // a model's maximum tokens per sequence
	maxImageSide = 1 << 16
	maxSteps     = 100000
	maxKeyLen    = 32
)

// Model identifies the model that made the tokens: a decoder given another model refuses them.
type Model struct {
	Name      string           // descriptive name, e.g. "flextok_d18_d28_in1k" (not compared)
	Digest    [DigestSize]byte // content digest of the model's weights and config (SHA-256)
	Levels    []int            // FSQ levels, e.g. [8 8 8 5 5 5]
	MaxTokens int              // the model's maximum sequence length, e.g. 256
}

// CodebookSize is the product of the levels (0 if the levels are invalid).
func (m *Model) CodebookSize() int {
	n := 1
	if len(m.Levels) == 0 || len(m.Levels) > maxLevels {
		return 0
	}
	for _, l := range m.Levels {
		if l < 2 || l > maxLevel || n > maxCodebook/l {
			return 0
		}
		n *= l
	}
	return n
}

// IDWidth is the number of bytes per id on the wire: 2 when the codebook fits in 16 bits
// (every FlexTok model: 64,000), else 4.
func (m *Model) IDWidth() int {
	if m.CodebookSize() <= 1<<16 {
		return 2
	}
	return 4
}

// Equal reports whether m and o are the same model: same digest, levels and length. The name
// is descriptive and not compared (docs/payload.md, "Model identity").
func (m *Model) Equal(o *Model) bool {
	if m.Digest != o.Digest || m.MaxTokens != o.MaxTokens || len(m.Levels) != len(o.Levels) {
		return false
	}
	for i := range m.Levels {
		if m.Levels[i] != o.Levels[i] {
			return false
		}
	}
	return true
}

// Image describes the image the tokens stand for and how it was prepared.
type Image struct {
	Height, Width             int    // size of the model's input and output, e.g. 256×256
	Resize                    string // resampling filter used to resize, e.g. "catmull-rom"; "" = none
	Crop                      string // crop applied after resizing, e.g. "center"; "" = none
	SourceHeight, SourceWidth int    // size of the original image; 0 = unknown or generated
}

// Cond is the conditioning of a generated image.
type Cond struct {
	Class  *int   // class label (e.g. an ImageNet class id); nil = none
	Prompt string // text prompt; "" = none
}

// Hints suggest how to decode; a decoder may ignore them.
type Hints struct {
	Steps    int      // Euler steps; 0 = the decoder's default
	Guidance *float32 // classifier-free guidance scale; nil = the decoder's default
	APG      bool     // use adaptive projected guidance rather than plain CFG
	Seed     *uint64  // noise seed; nil = the decoder's choice
}

// Payload is a whole FlexTok token payload: the ids of one image (or, with Frames > 1, of a
// sequence of frames), the model that made them and how to read them.
type Payload struct {
	Model  Model
	Image  Image
	Frames int      // sequences along a leading time axis (VideoFlexTok); 0 or 1 = one image
	IDs    []uint32 // NumFrames()·Count() ids, frame-major, coarse to fine within each frame
	Cond   *Cond    // optional conditioning of generated images
	Hints  *Hints   // optional decode hints
}

// NumFrames is Frames, or 1 when Frames is 0.
func (p *Payload) NumFrames() int {
	if p.Frames <= 0 {
		return 1
	}
	return p.Frames
}

// Count is the number of tokens per frame.
func (p *Payload) Count() int { return len(p.IDs) / p.NumFrames() }

// Frame returns the ids of frame f (0-based).
func (p *Payload) Frame(f int) []uint32 {
	n := p.Count()
	return p.IDs[f*n : (f+1)*n]
}

// Limits bound what a decoder accepts. Zero fields take the defaults.
type Limits struct {
	MaxBytes  int // size of the whole input in bytes (default 4 MiB)
	MaxFrames int // frames per payload (default 4096)
	MaxString int // bytes in a name or filter string (default 256)
	MaxPrompt int // bytes in a prompt (default 16 KiB)
}

// DefaultLimits are the limits used when a field is zero.
var DefaultLimits = Limits{MaxBytes: 4 << 20, MaxFrames: 4096, MaxString: 256, MaxPrompt: 16 << 10}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxFrames <= 0 {
		l.MaxFrames = DefaultLimits.MaxFrames
	}
	if l.MaxString <= 0 {
		l.MaxString = DefaultLimits.MaxString
	}
	if l.MaxPrompt <= 0 {
		l.MaxPrompt = DefaultLimits.MaxPrompt
	}
	return l
}

// Options control decoding.
type Options struct {
	Limits Limits
	Expect *Model // if set, a payload from any other model is refused with ErrModelMismatch
}

// Validate checks a payload against the format's rules and the default limits; it is what
// MarshalBinary checks before writing and what Unmarshal checks after reading.
func (p *Payload) Validate() error { return p.validate(DefaultLimits) }

func (p *Payload) validate(lim Limits) error {
	if err := validateHead(&p.Model, &p.Image, p.Frames, p.Cond, p.Hints, lim); err != nil {
		return err
	}
	if err := p.validateLength(); err != nil {
		return err
	}
	return checkIDs(p.IDs, p.Model.CodebookSize(), 0)
}

// validateLength checks the number of ids against the frames and the model's maximum.
func (p *Payload) validateLength() error {
	frames := p.NumFrames()
	if len(p.IDs) == 0 {
		return errf("ids", ErrRange, "no tokens")
	}
	if len(p.IDs)%frames != 0 {
		return errf("ids", ErrRange, "%d ids do not split into %d frames", len(p.IDs), frames)
	}
	if n := len(p.IDs) / frames; n > p.Model.MaxTokens {
		return errf("count", ErrTooLong, "%d tokens, model maximum %d", n, p.Model.MaxTokens)
	}
	return nil
}

func checkIDs(ids []uint32, codebook, offset int) error {
	for i, id := range ids {
		if uint64(id) >= uint64(codebook) {
			return errf("ids", ErrRange, "id %d at position %d, codebook size %d", id, offset+i, codebook)
		}
	}
	return nil
}

func checkString(field, s string, max int, required bool) error {
	if required && s == "" {
		return errf(field, ErrMissing, "empty")
	}
	if len(s) > max {
		return errf(field, ErrRange, "%d bytes, limit %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return errf(field, ErrType, "not valid UTF-8")
	}
	return nil
}

func validateHead(m *Model, im *Image, frames int, c *Cond, h *Hints, lim Limits) error {
	lim = lim.withDefaults()
	if err := checkString("model.name", m.Name, lim.MaxString, true); err != nil {
		return err
	}
	if len(m.Levels) == 0 || len(m.Levels) > maxLevels {
		return errf("model.fsq", ErrRange, "%d levels, want 1..%d", len(m.Levels), maxLevels)
	}
	if m.CodebookSize() == 0 {
		return errf("model.fsq", ErrRange, "levels %v: each must be 2..%d with a product at most %d", m.Levels, maxLevel, maxCodebook)
	}
	if m.MaxTokens < 1 || m.MaxTokens > maxModelLen {
		return errf("model.max_tokens", ErrRange, "%d, want 1..%d", m.MaxTokens, maxModelLen)
	}
	if im.Height < 1 || im.Height > maxImageSide || im.Width < 1 || im.Width > maxImageSide {
		return errf("image", ErrRange, "size %dx%d, want 1..%d on each side", im.Height, im.Width, maxImageSide)
	}
	if im.SourceHeight < 0 || im.SourceHeight > 1<<30 || im.SourceWidth < 0 || im.SourceWidth > 1<<30 || (im.SourceHeight == 0) != (im.SourceWidth == 0) {
		return errf("image.source", ErrRange, "size %dx%d", im.SourceHeight, im.SourceWidth)
	}
	if err := checkString("image.resize", im.Resize, lim.MaxString, false); err != nil {
		return err
	}
	if err := checkString("image.crop", im.Crop, lim.MaxString, false); err != nil {
		return err
	}
	if frames < 0 || frames > lim.MaxFrames {
		return errf("frames", ErrRange, "%d, want 1..%d", frames, lim.MaxFrames)
	}
	if c != nil {
		if c.Class == nil && c.Prompt == "" {
			return errf("cond", ErrMissing, "neither class nor prompt")
		}
		if c.Class != nil && (*c.Class < 0 || *c.Class > math.MaxInt32) {
			return errf("cond.class", ErrRange, "%d", *c.Class)
		}
		if err := checkString("cond.prompt", c.Prompt, lim.MaxPrompt, false); err != nil {
			return err
		}
	}
	if h != nil {
		if h.Steps < 0 || h.Steps > maxSteps {
			return errf("hints.steps", ErrRange, "%d, want 0..%d", h.Steps, maxSteps)
		}
		if h.Guidance != nil {
			if g := float64(*h.Guidance); math.IsNaN(g) || math.IsInf(g, 0) {
				return errf("hints.guidance", ErrRange, "%v", g)
			}
		}
	}
	return nil
}

// Equal reports whether two payloads encode to the same bytes.
func Equal(a, b *Payload) bool {
	x, errA := a.MarshalBinary()
	y, errB := b.MarshalBinary()
	return errA == nil && errB == nil && bytes.Equal(x, y)
}
