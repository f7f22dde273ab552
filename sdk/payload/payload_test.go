package payload

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
)

func testModel() Model {
	return Model{
		Name:      "flextok_d18_d28_in1k",
		Digest:    sha256.Sum256([]byte("weights")),
		Levels:    []int{8, 8, 8, 5, 5, 5},
		MaxTokens: 256,
	}
}

func testPayload(n int) *Payload {
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(i*2503) % 64000
	}
	return &Payload{
		Model: testModel(),
		Image: Image{Height: 256, Width: 256, Resize: "catmull-rom", Crop: "center", SourceHeight: 480, SourceWidth: 640},
		IDs:   ids,
	}
}

func fullPayload() *Payload {
	p := testPayload(32)
	class, g, seed := 207, float32(7.5), uint64(1)<<63+5
	p.Cond = &Cond{Class: &class, Prompt: "a golden retriever"}
	p.Hints = &Hints{Steps: 20, Guidance: &g, APG: true, Seed: &seed}
	return p
}

func mustMarshal(t testing.TB, p *Payload) []byte {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, p := range []*Payload{testPayload(1), testPayload(256), fullPayload()} {
		b := mustMarshal(t, p)
		var q Payload
		if err := Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(q.IDs, p.IDs) || !q.Model.Equal(&p.Model) || q.Image != p.Image {
			t.Fatalf("round trip changed the payload: %+v", q)
		}
		if !bytes.Equal(mustMarshal(t, &q), b) {
			t.Fatal("re-encoding gave other bytes")
		}
	}
	q := fullPayload()
	var r Payload
	_ = Unmarshal(mustMarshal(t, q), &r)
	if *r.Cond.Class != 207 || r.Cond.Prompt != q.Cond.Prompt || *r.Hints.Guidance != 7.5 || *r.Hints.Seed != *q.Hints.Seed || !r.Hints.APG || r.Hints.Steps != 20 {
		t.Fatalf("cond/hints lost: %+v %+v", r.Cond, r.Hints)
	}
}

func TestIDsAreLittleEndianUint16(t *testing.T) {
	p := testPayload(2)
	p.IDs = []uint32{0x1234, 63999}
	b := mustMarshal(t, p)
	// "ids" then bin8 of 4 bytes.
	want := []byte{0xa3, 'i', 'd', 's', 0xc4, 4, 0x34, 0x12, 0xff, 0xf9}
	if !bytes.Contains(b, want) {
		t.Fatalf("ids not encoded as LE uint16 bin: % x", b)
	}
}

func TestWideCodebook(t *testing.T) {
	p := testPayload(3)
	p.Model.Levels = []int{8, 8, 8, 8, 8, 8} // 262,144 codes: 4-byte ids
	p.IDs = []uint32{0, 70000, 262143}
	b := mustMarshal(t, p)
	if !bytes.Contains(b, []byte{0xc4, 12, 0, 0, 0, 0, 0x70, 0x11, 0x01, 0}) {
		t.Fatalf("ids not encoded as LE uint32: % x", b)
	}
	var q Payload
	if err := Unmarshal(b, &q); err != nil || !slices.Equal(q.IDs, p.IDs) {
		t.Fatalf("wide ids: %v %v", q.IDs, err)
	}
}

func TestFrames(t *testing.T) {
	p := testPayload(12)
	p.Frames = 3
	b := mustMarshal(t, p)
	var q Payload
	if err := Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q.NumFrames() != 3 || q.Count() != 4 || !slices.Equal(q.Frame(2), p.IDs[8:]) {
		t.Fatalf("frames: %d %d", q.NumFrames(), q.Count())
	}
	p.Frames = 5 // 12 ids do not split into 5 frames
	if _, err := p.MarshalBinary(); !errors.Is(err, ErrRange) {
		t.Fatalf("bad frames err = %v", err)
	}
}

func TestDecodeIntoReusedValueAllocs(t *testing.T) {
	b := mustMarshal(t, testPayload(256))
	var p Payload
	if err := Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 4 {
		t.Fatalf("decoding into a reused value allocates %v times, want <= 4", allocs)
	}
	dst := make([]byte, 0, 1024)
	q := testPayload(256)
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := q.AppendBinary(dst[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("encoding into a reused buffer allocates %v times", allocs)
	}
}

// mutate returns the payload's bytes with old replaced by new (once).
func mutate(t *testing.T, b []byte, old, new []byte) []byte {
	t.Helper()
	if !bytes.Contains(b, old) {
		t.Fatalf("mutation target % x not found", old)
	}
	return bytes.Replace(b, old, new, 1)
}

func TestDecodeErrors(t *testing.T) {
	good := mustMarshal(t, testPayload(4))
	other := testModel()
	other.Digest[0] ^= 1
	cases := []struct {
		name  string
		data  []byte
		opt   Options
		want  error
		field string
	}{
		{"empty", nil, Options{}, ErrTruncated, ""},
		{"not a map", []byte{0x93, 1, 2, 3}, Options{}, ErrFormat, ""},
		{"random bytes", []byte("hello world"), Options{}, ErrFormat, ""},
		{"truncated", good[:len(good)-3], Options{}, ErrTruncated, "ids"},
		{"truncated in header", good[:20], Options{}, ErrTruncated, "format"},
		{"trailing", append(slices.Clone(good), 0), Options{}, ErrTrailing, ""},
		{"major 2", mutate(t, good, []byte{0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x92, 1}, []byte{0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x92, 2}), Options{}, ErrVersion, "version"},
		{"other format", mutate(t, good, []byte("flextok/tokens"), []byte("flextok/stream")), Options{}, ErrFormat, "format"},
		{"wrong type", mutate(t, good, []byte{0xa5, 'c', 'o', 'u', 'n', 't', 4}, []byte{0xa5, 'c', 'o', 'u', 'n', 't', 0xc3}), Options{}, ErrType, "count"},
		{"negative", mutate(t, good, []byte{0xa5, 'c', 'o', 'u', 'n', 't', 4}, []byte{0xa5, 'c', 'o', 'u', 'n', 't', 0xff}), Options{}, ErrRange, "count"},
		{"count mismatch", mutate(t, good, []byte{0xa5, 'c', 'o', 'u', 'n', 't', 4}, []byte{0xa5, 'c', 'o', 'u', 'n', 't', 3}), Options{}, ErrRange, "count"},
		{"id out of range", mutate(t, good, []byte{0xc4, 8, 0, 0}, []byte{0xc4, 8, 0x00, 0xfa}), Options{}, ErrRange, "ids"},
		{"odd id bytes", mutate(t, good[:len(good)-1], []byte{0xc4, 8}, []byte{0xc4, 7}), Options{}, ErrRange, "ids"},
		{"too large", good, Options{Limits: Limits{MaxBytes: 10}}, ErrTooLarge, ""},
		{"model mismatch", good, Options{Expect: &other}, ErrModelMismatch, "model"},
		{"duplicate key", mutate(t, good, []byte("resize"), []byte("height")), Options{}, ErrDuplicate, "image.height"},
		{"format not first", mutate(t, good, []byte("format"), []byte("formax")), Options{}, ErrFormat, "version"},
		{"missing required", mutate(t, good, []byte("max_tokens"), []byte("max_tokenz")), Options{}, ErrMissing, "model.max_tokens"},
	}
	for _, c := range cases {
		var p Payload
		err := Decode(c.data, &p, c.opt)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: field = %q, want %q (%v)", c.name, pe.Field, c.field, err)
		}
		if !strings.HasPrefix(err.Error(), "flextok/payload: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: message %q is not one prefixed line", c.name, err)
		}
	}
}

// A model is its digest, levels and length: a payload whose model has another name (a
// directory name, "model") is the same model's.
func TestExpectIgnoresName(t *testing.T) {
	good := mustMarshal(t, testPayload(4))
	renamed := testModel()
	renamed.Name = "3f1c2e9a0b7d"
	var p Payload
	if err := Decode(good, &p, Options{Expect: &renamed}); err != nil {
		t.Fatalf("same digest, other name: %v", err)
	}
	for name, mut := range map[string]func(*Model){
		"digest":     func(m *Model) { m.Digest[31] ^= 1 },
		"levels":     func(m *Model) { m.Levels = []int{8, 8, 8, 5, 5, 4} },
		"max_tokens": func(m *Model) { m.MaxTokens++ },
	} {
		other := testModel()
		mut(&other)
		if err := Decode(good, &p, Options{Expect: &other}); !errors.Is(err, ErrModelMismatch) {
			t.Errorf("other %s: err = %v, want ErrModelMismatch", name, err)
		}
	}
}

func TestTooLong(t *testing.T) {
	p := testPayload(257)
	if _, err := p.MarshalBinary(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("257 tokens: err = %v", err)
	}
	// Build the bytes by lying about max_tokens, then restore it: the decoder must refuse.
	p.Model.MaxTokens = 300
	b := mustMarshal(t, p)
	b = mutate(t, b, []byte{0xaa, 'm', 'a', 'x', '_', 't', 'o', 'k', 'e', 'n', 's', 0xcd, 0x01, 0x2c}, []byte{0xaa, 'm', 'a', 'x', '_', 't', 'o', 'k', 'e', 'n', 's', 0xcd, 0x01, 0x00})
	var q Payload
	if err := Unmarshal(b, &q); !errors.Is(err, ErrTooLong) {
		t.Fatalf("decode 257 tokens: err = %v", err)
	}
}

func TestUnknownKeysSkippedAndDepthBounded(t *testing.T) {
	good := mustMarshal(t, testPayload(2))
	// Append an unknown key "zz" with a nested value, bumping the top map length 6 -> 7.
	if good[0] != 0x86 {
		t.Fatalf("top map header %x", good[0])
	}
	ext := append([]byte{0x87}, good[1:]...)
	ext = append(ext, 0xa2, 'z', 'z', 0x91, 0x81, 0xa1, 'a', 0xc0)
	var p Payload
	if err := Unmarshal(ext, &p); err != nil {
		t.Fatalf("unknown key not skipped: %v", err)
	}
	deep := append([]byte{0x87}, good[1:]...)
	deep = append(deep, 0xa2, 'z', 'z')
	for i := 0; i < 100000; i++ {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0xc0)
	if err := Unmarshal(deep, &p); !errors.Is(err, ErrRange) {
		t.Fatalf("deep nesting: err = %v", err)
	}
}

func TestLenientIntegerAndFloatWidths(t *testing.T) {
	// Another encoder may write 4 as uint32 and guidance as float64: accepted.
	p := fullPayload()
	b := mustMarshal(t, p)
	b = mutate(t, b, []byte{0xa5, 's', 't', 'e', 'p', 's', 20}, []byte{0xa5, 's', 't', 'e', 'p', 's', 0xce, 0, 0, 0, 20})
	b = mutate(t, b, []byte{0xca, 0x40, 0xf0, 0, 0}, []byte{0xcb, 0x40, 0x1e, 0, 0, 0, 0, 0, 0})
	var q Payload
	if err := Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q.Hints.Steps != 20 || *q.Hints.Guidance != 7.5 {
		t.Fatalf("hints %+v", q.Hints)
	}
	if !bytes.Equal(mustMarshal(t, &q), mustMarshal(t, p)) {
		t.Fatal("canonical re-encoding differs")
	}
}

func TestStreamSplitJoin(t *testing.T) {
	p := fullPayload()
	s, err := Split(p, []int{1, 1, 2, 4, 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Chunks) != 6 || !s.Chunks[5].End || len(s.Chunks[5].IDs) != 16 {
		t.Fatalf("chunks %d", len(s.Chunks))
	}
	b, err := s.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeStream(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done() || got.Len() != 32 {
		t.Fatalf("stream done=%v len=%d", got.Done(), got.Len())
	}
	whole, err := got.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if !Equal(whole, p) {
		t.Fatal("joined chunks differ from the whole payload")
	}
	// Progressive: after the first three chunks the prefix is a valid payload of 4 tokens.
	part := &Stream{Header: s.Header}
	for _, c := range s.Chunks[:3] {
		if err := part.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	pp, err := part.Payload()
	if err != nil || !slices.Equal(pp.IDs, p.IDs[:4]) || pp.Validate() != nil {
		t.Fatalf("prefix payload %v %v", pp, err)
	}
	// Each chunk also decodes alone against the header.
	hb, _ := s.Header.AppendBinary(nil)
	var h Header
	if err := DecodeHeader(hb, &h, Options{}); err != nil || h.Count != 32 {
		t.Fatalf("header: %v %+v", err, h)
	}
	cb, _ := s.Chunks[3].AppendBinary(nil, &h)
	var c Chunk
	if err := DecodeChunk(cb, &c, &h, Options{}); err != nil || c.Start != 4 || !slices.Equal(c.IDs, p.IDs[4:8]) {
		t.Fatalf("chunk: %v %+v", err, c)
	}
}

func TestStreamErrors(t *testing.T) {
	p := testPayload(8)
	s, _ := Split(p, []int{2, 2})
	fresh := func() *Stream { return &Stream{Header: s.Header} }
	st := fresh()
	if err := st.Add(s.Chunks[1]); !errors.Is(err, ErrStream) {
		t.Errorf("gap: %v", err)
	}
	st = fresh()
	for _, c := range s.Chunks {
		_ = st.Add(c)
	}
	if err := st.Add(Chunk{Start: 8, IDs: []uint32{1}}); !errors.Is(err, ErrStream) {
		t.Errorf("after end: %v", err)
	}
	st = fresh()
	if err := st.Add(Chunk{Start: 0, IDs: []uint32{1}, End: true}); !errors.Is(err, ErrStream) {
		t.Errorf("early end against the announced count: %v", err)
	}
	if err := fresh().Add(Chunk{Start: 0, IDs: []uint32{64000}}); !errors.Is(err, ErrRange) {
		t.Errorf("id range: %v", err)
	}
	if err := fresh().Add(Chunk{Start: 0, IDs: make([]uint32, 9)}); !errors.Is(err, ErrTooLong) {
		t.Errorf("over count: %v", err)
	}
	b, _ := s.AppendBinary(nil)
	if _, err := DecodeStream(b[:len(b)-1], Options{}); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated stream: %v", err)
	}
	whole := mustMarshal(t, p)
	if _, err := DecodeStream(whole, Options{}); !errors.Is(err, ErrFormat) {
		t.Errorf("payload as stream: %v", err)
	}
	var q Payload
	if err := Unmarshal(b, &q); !errors.Is(err, ErrFormat) {
		t.Errorf("stream as payload: %v", err)
	}
}

func TestJSONView(t *testing.T) {
	p := fullPayload()
	p.IDs = p.IDs[:3]
	j, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"format": "flextok/tokens"`, `"codebook_size":64000`, `"ids": [0,2503,5006]`, `"digest":"sha256:`, `"cond": {"class":207`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON view lacks %s:\n%s", want, j)
		}
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	bad := []func(*Payload){
		func(p *Payload) { p.Model.Name = "" },
		func(p *Payload) { p.Model.Levels = []int{1} },
		func(p *Payload) { p.Image.Height = 0 },
		func(p *Payload) { p.IDs = nil },
		func(p *Payload) { p.IDs[0] = 64000 },
		func(p *Payload) { p.Cond = &Cond{} },
		func(p *Payload) { p.Model.Name = "\xff" },
		func(p *Payload) { p.Image.SourceWidth = 0 },
	}
	for i, f := range bad {
		p := testPayload(4)
		f(p)
		out, err := p.AppendBinary([]byte{1})
		var pe *Error
		if !errors.As(err, &pe) || len(out) != 1 {
			t.Errorf("case %d: err = %v, out %d bytes", i, err, len(out))
		}
	}
}

// TestHugeDeclaredLengths: a string, binary or extension that declares gigabytes inside an
// unknown key is refused as truncated without allocating for it (found by fuzzing: msgpack's
// own Skip allocated a megabyte before noticing).
func TestHugeDeclaredLengths(t *testing.T) {
	good := mustMarshal(t, testPayload(1))
	for _, value := range [][]byte{
		{0xdb, 0xae, 0x66, 0x6c, 0x65},       // str32 of 2.9 GB
		{0xc6, 0xff, 0xff, 0xff, 0xff},       // bin32 of 4 GB
		{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, // ext32 of 4 GB
	} {
		in := append([]byte{0x87}, good[1:]...)
		in = append(append(in, 0xa2, 'z', 'z'), value...)
		var p Payload
		if err := Unmarshal(in, &p); !errors.Is(err, ErrTruncated) {
			t.Fatalf("% x: err = %v", value, err)
		}
		if a := testing.AllocsPerRun(20, func() { _ = Unmarshal(in, &p) }); a > 3 {
			t.Fatalf("% x: %v allocations", value, a)
		}
	}
}
