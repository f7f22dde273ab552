package payload

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
)

// The JSON view is for people (flextok inspect, logs, test vectors): top-level keys one per
// line, in wire order, values compact. It is not a second wire format and is not parsed back.

type kv struct {
	k string
	v any
}

func writeObject(fields []kv) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, f := range fields {
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		k, _ := json.Marshal(f.k)
		b.WriteString("  ")
		b.Write(k)
		b.WriteString(": ")
		b.Write(v)
		if i < len(fields)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

type modelView struct {
	Name         string `json:"name"`
	Digest       string `json:"digest"`
	FSQ          []int  `json:"fsq"`
	CodebookSize int    `json:"codebook_size"`
	MaxTokens    int    `json:"max_tokens"`
}

type imageView struct {
	Height int    `json:"height"`
	Width  int    `json:"width"`
	Resize string `json:"resize,omitempty"`
	Crop   string `json:"crop,omitempty"`
	Source []int  `json:"source,omitempty"`
}

type condView struct {
	Class  *int   `json:"class,omitempty"`
	Prompt string `json:"prompt,omitempty"`
}

type hintsView struct {
	Steps    int      `json:"steps,omitempty"`
	Guidance *float32 `json:"guidance,omitempty"`
	APG      bool     `json:"apg,omitempty"`
	Seed     *uint64  `json:"seed,omitempty"`
}

type chunkView struct {
	Start int      `json:"start"`
	IDs   []uint32 `json:"ids"`
	End   bool     `json:"end,omitempty"`
}

func headFields(format string, m *Model, im *Image, frames int, count int, c *Cond, h *Hints) []kv {
	fields := []kv{
		{"format", format},
		{"version", Major},
		{"model", modelView{m.Name, "sha256:" + hex.EncodeToString(m.Digest[:]), m.Levels, m.CodebookSize(), m.MaxTokens}},
	}
	iv := imageView{Height: im.Height, Width: im.Width, Resize: im.Resize, Crop: im.Crop}
	if im.SourceHeight > 0 {
		iv.Source = []int{im.SourceHeight, im.SourceWidth}
	}
	fields = append(fields, kv{"image", iv})
	if frames > 1 {
		fields = append(fields, kv{"frames", frames})
	}
	if count > 0 {
		fields = append(fields, kv{"count", count})
	}
	if c != nil {
		fields = append(fields, kv{"cond", condView{c.Class, c.Prompt}})
	}
	if hintsLen(h) > 0 {
		fields = append(fields, kv{"hints", hintsView{h.Steps, h.Guidance, h.APG, h.Seed}})
	}
	return fields
}

// JSON returns a human-readable JSON view of the payload (digest as "sha256:<hex>", ids as
// numbers, the codebook size spelled out).
func (p *Payload) JSON() ([]byte, error) {
	fields := headFields(FormatTokens, &p.Model, &p.Image, p.Frames, p.Count(), nil, nil)
	fields = append(fields, kv{"ids", nonNil(p.IDs)})
	tail := headFields("", &p.Model, &p.Image, 0, 0, p.Cond, p.Hints)[4:]
	return writeObject(append(fields, tail...))
}

// JSON returns a human-readable JSON view of the stream: the header's fields, then the chunks.
func (s *Stream) JSON() ([]byte, error) {
	h := &s.Header
	fields := headFields(FormatStream, &h.Model, &h.Image, h.Frames, h.Count, h.Cond, h.Hints)
	chunks := make([]chunkView, len(s.Chunks))
	for i, c := range s.Chunks {
		chunks[i] = chunkView{c.Start, nonNil(c.IDs), c.End}
	}
	fields = append(fields, kv{"received", s.Len()}, kv{"done", s.Done()}, kv{"chunks", chunks})
	return writeObject(fields)
}

func nonNil(ids []uint32) []uint32 {
	if ids == nil {
		return []uint32{}
	}
	return ids
}
