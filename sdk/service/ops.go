package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Responses, one type per op; the field order is the order on the wire.

type wireModel struct {
	Name      string `msgpack:"name"`
	Digest    []byte `msgpack:"digest"`
	FSQ       []int  `msgpack:"fsq"`
	MaxTokens int    `msgpack:"max_tokens"`
}

type modelInfo struct {
	Model    wireModel `msgpack:"model"`
	Height   int       `msgpack:"height"`
	Width    int       `msgpack:"width"`
	Codebook int       `msgpack:"codebook"`
}

type versionResponse struct {
	header
	Protocol int    `msgpack:"protocol"`
	Payload  [2]int `msgpack:"payload"`
}

type openResponse struct {
	header
	Handle uint64 `msgpack:"handle"`
	modelInfo
}

type infoResponse struct {
	header
	modelInfo
}

type closeResponse struct {
	header
	Streams int `msgpack:"streams"` // streams of the model closed with it
}

type imageResult struct {
	K        int     `msgpack:"k"`
	Steps    int     `msgpack:"steps"`
	Guidance float64 `msgpack:"guidance"`
	APG      bool    `msgpack:"apg"`
	Seed     uint64  `msgpack:"seed"`
	Width    int     `msgpack:"width"`
	Height   int     `msgpack:"height"`
	RGBA     []byte  `msgpack:"rgba,omitempty"`
	PNG      []byte  `msgpack:"png,omitempty"`
	Tensor   []byte  `msgpack:"tensor,omitempty"`
	DecodeMs float64 `msgpack:"decode_ms"`
	// Web models ("open_graphs") only: the time in the graph host's networks, within decode_ms.
	VelocityMs    float64 `msgpack:"velocity_ms,omitempty"`
	VelocityCalls int     `msgpack:"velocity_calls,omitempty"`
	VAEMs         float64 `msgpack:"vae_ms,omitempty"`
	TotalMs       float64 `msgpack:"total_ms"`
}

type decodeResponse struct {
	header
	imageResult
}

type encodeResponse struct {
	header
	Payload  []byte  `msgpack:"payload"`
	Count    int     `msgpack:"count"`
	EncodeMs float64 `msgpack:"encode_ms"`
}

type streamOpenResponse struct {
	header
	Stream uint64 `msgpack:"stream"`
	Count  int    `msgpack:"count"` // tokens announced by the header; 0 = not known
}

type streamAddResponse struct {
	header
	Received int  `msgpack:"received"`
	Done     bool `msgpack:"done"`
	Decoded  bool `msgpack:"decoded"`
}

type streamDecodeResponse struct {
	streamAddResponse
	imageResult
}

type streamCloseResponse struct {
	header
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// outputs is the set of image forms a decode returns.
type outputs struct{ rgba, png, tensor bool }

// checkParams validates what can be checked without a payload.
func (s *Service) checkParams(p decodeParams) (outputs, error) {
	var out outputs
	if p.Steps != nil && (*p.Steps < 1 || *p.Steps > int64(s.o.MaxSteps)) {
		return out, errorf(CodeBadRequest, "steps = %d, want 1..%d", *p.Steps, s.o.MaxSteps)
	}
	if p.Guidance != nil && *p.Guidance == 0 {
		// engine.DecodeOptions reads 0 as "the hinted guidance": an explicit 0 would be ignored.
		return out, errorf(CodeBadRequest, "guidance = 0: omit it for the hinted guidance; 1 turns guidance off")
	}
	if p.Output != nil && len(p.Output) == 0 {
		return out, errorf(CodeBadRequest, `"output" is empty; omit it for ["rgba"]`)
	}
	for _, o := range p.Output {
		var f *bool
		switch o {
		case "rgba":
			f = &out.rgba
		case "png":
			f = &out.png
		case "tensor":
			f = &out.tensor
		default:
			return out, errorf(CodeBadRequest, `output %q, want "rgba", "png" or "tensor"`, o)
		}
		if *f {
			return out, errorf(CodeBadRequest, "output %q twice", o)
		}
		*f = true
	}
	return out, nil
}

// options layers the payload's and model's hints (Executor.DefaultDecodeOptions) and each set of
// request parameters, later ones winning.
func (s *Service) options(m *model, p *payload.Payload, layers ...decodeParams) (engine.DecodeOptions, outputs, error) {
	o := m.x.DefaultDecodeOptions(p)
	out := outputs{rgba: true}
	for _, l := range layers {
		lo, err := s.checkParams(l)
		if err != nil {
			return o, out, err
		}
		if l.Output != nil {
			out = lo
		}
		if l.K != nil {
			// k is a uint (request.go): 0 means all tokens, as engine.DecodeOptions.K and the CLI's -k.
			if *l.K > int64(len(p.IDs)) {
				return o, out, errorf(CodeBadRequest, "k = %d, the payload has %d tokens", *l.K, len(p.IDs))
			}
			o.K = int(*l.K)
		}
		if l.Size != nil {
			o.Size = int(*l.Size)
		}
		if l.Steps != nil {
			o.Steps = int(*l.Steps)
		}
		if l.Guidance != nil {
			o.Guidance = *l.Guidance
		}
		if l.APG != nil {
			o.APG = *l.APG
		}
		if l.Seed != nil {
			o.Seed = *l.Seed
		}
	}
	if o.Steps < 1 || o.Steps > s.o.MaxSteps {
		return o, out, errorf(CodeBadRequest, "steps = %d (from the payload's hints), want 1..%d", o.Steps, s.o.MaxSteps)
	}
	return o, out, nil
}

// run decodes p with o and fills the image forms out asks for.
func (s *Service) run(ctx context.Context, m *model, p *payload.Payload, o engine.DecodeOptions, out outputs, t0 time.Time) (imageResult, error) {
	t1 := time.Now()
	var gt engine.GraphTimings
	x, err := m.x.Decode(engine.WithGraphTimings(ctx, &gt), p, o)
	if err != nil {
		return imageResult{}, classify(err, CodeInternal)
	}
	dt := time.Since(t1)
	img, err := ftimage.FromTensor(x)
	if err != nil {
		return imageResult{}, classify(err, CodeInternal)
	}
	k := o.K
	if k == 0 {
		k = len(p.IDs)
	}
	r := imageResult{K: k, Steps: o.Steps, Guidance: o.Guidance, APG: o.APG, Seed: o.Seed,
		Width: img.Rect.Dx(), Height: img.Rect.Dy(), DecodeMs: ms(dt),
		VelocityMs: ms(gt.Velocity), VelocityCalls: gt.VelocityCalls, VAEMs: ms(gt.VAE)}
	if out.rgba {
		r.RGBA = make([]byte, 0, 4*r.Width*r.Height)
		for y := 0; y < r.Height; y++ {
			row := img.Pix[y*img.Stride:]
			r.RGBA = append(r.RGBA, row[:4*r.Width]...)
		}
	}
	if out.png {
		var b bytes.Buffer
		if err := ftimage.EncodePNG(&b, img); err != nil {
			return imageResult{}, classify(err, CodeInternal)
		}
		r.PNG = b.Bytes()
	}
	if out.tensor {
		r.Tensor = make([]byte, 4*len(x.Data))
		for i, v := range x.Data {
			binary.LittleEndian.PutUint32(r.Tensor[4*i:], math.Float32bits(v))
		}
	}
	r.TotalMs = ms(time.Since(t0))
	return r, nil
}

func (s *Service) decode(ctx context.Context, h header, r *request) (any, error) {
	t0 := time.Now()
	m, _, err := s.model(r.Handle)
	if err != nil {
		return nil, err
	}
	defer s.release(m)
	if r.Payload == nil {
		return nil, errorf(CodeBadRequest, `"decode" needs "payload"`)
	}
	var p payload.Payload
	if err := payload.Decode(r.Payload, &p, payload.Options{}); err != nil {
		return nil, classify(err, CodeBadRequest)
	}
	if err := m.accepts(&p.Model); err != nil {
		return nil, err
	}
	if p.NumFrames() != 1 {
		return nil, errorf(CodeUnsupported, "a payload of %d frames (video models)", p.NumFrames())
	}
	o, out, err := s.options(m, &p, r.decodeParams)
	if err != nil {
		return nil, err
	}
	res, err := s.run(ctx, m, &p, o, out, t0)
	if err != nil {
		return nil, err
	}
	return decodeResponse{h, res}, nil
}

func (s *Service) encodeImage(ctx context.Context, h header, r *request) (any, error) {
	t0 := time.Now()
	m, _, err := s.model(r.Handle)
	if err != nil {
		return nil, err
	}
	defer s.release(m)
	if r.Image == nil {
		return nil, errorf(CodeBadRequest, `"encode" needs "image"`)
	}
	eo := engine.EncodeOptions{Filter: r.Filter}
	if r.Size != nil {
		eo.Size = int(*r.Size)
	}
	if r.K != nil {
		// k is a uint (request.go): 0 means all tokens, as engine.EncodeOptions.K and the CLI's -k.
		if *r.K > int64(m.id.MaxTokens) {
			return nil, errorf(CodeBadRequest, "k = %d, want 0..%d (0 or absent: all tokens)", *r.K, m.id.MaxTokens)
		}
		eo.K = int(*r.K)
	}
	switch r.Filter {
	case "", ftimage.FilterBilinear, ftimage.FilterCatmullRom:
	default:
		return nil, errorf(CodeBadRequest, "filter %q, want %q or %q", r.Filter, ftimage.FilterBilinear, ftimage.FilterCatmullRom)
	}
	img, _, err := ftimage.DecodeBytes(r.Image, ftimage.DecodeOptions{MaxPixels: s.o.MaxImagePixels, IgnoreOrientation: r.Orient != nil && !*r.Orient})
	if err != nil {
		return nil, classify(err, CodeBadImage)
	}
	p, err := m.x.Encode(ctx, img, eo)
	if err != nil {
		if errors.Is(err, ftimage.ErrArgument) {
			return nil, classify(err, CodeBadImage)
		}
		return nil, classify(err, CodeInternal)
	}
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, classify(err, CodeInternal)
	}
	return encodeResponse{h, b, len(p.IDs), ms(time.Since(t0))}, nil
}

func (s *Service) streamOpen(h header, r *request) (any, error) {
	m, mh, err := s.model(r.Handle)
	if err != nil {
		return nil, err
	}
	defer s.release(m)
	if r.Header == nil {
		return nil, errorf(CodeBadRequest, `"stream_open" needs "header"`)
	}
	if _, err := s.checkParams(r.decodeParams); err != nil {
		return nil, err
	}
	var hd payload.Header
	if err := payload.DecodeHeader(r.Header, &hd, payload.Options{}); err != nil {
		return nil, classify(err, CodeBadRequest)
	}
	if err := m.accepts(&hd.Model); err != nil {
		return nil, classify(err, CodeBadRequest)
	}
	if hd.NumFrames() != 1 {
		return nil, errorf(CodeUnsupported, "a stream of %d frames (video models)", hd.NumFrames())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.streams) >= s.o.MaxStreams {
		return nil, errorf(CodeTooManyHandles, "%d streams open, the limit; close one first", s.o.MaxStreams)
	}
	if _, ok := s.models[mh]; !ok { // closed meanwhile
		return nil, errorf(CodeUnknownHandle, "no open model has handle %d", mh)
	}
	s.next++
	s.streams[s.next] = &stream{model: mh, m: m, s: payload.Stream{Header: hd}, opts: r.decodeParams}
	return streamOpenResponse{h, s.next, hd.Count}, nil
}

// stream looks up a stream handle and marks its model busy: the caller calls
// s.release(st.m) when done.
func (s *Service) stream(h int64) (*stream, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h > 0 {
		if st, ok := s.streams[uint64(h)]; ok {
			st.m.busy++
			return st, uint64(h), nil
		}
	}
	return nil, 0, errorf(CodeUnknownHandle, "no open stream has handle %d", h)
}

func (s *Service) streamChunk(ctx context.Context, h header, r *request) (any, error) {
	t0 := time.Now()
	st, _, err := s.stream(r.Stream)
	if err != nil {
		return nil, err
	}
	defer s.release(st.m)
	if _, err := s.checkParams(r.decodeParams); err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if r.Chunk != nil {
		var c payload.Chunk
		if err := payload.DecodeChunk(r.Chunk, &c, &st.s.Header, payload.Options{}); err != nil {
			return nil, classify(err, CodeBadRequest)
		}
		if err := st.s.Add(c); err != nil {
			return nil, classify(err, CodeBadRequest)
		}
	}
	add := streamAddResponse{h, st.s.Len(), st.s.Done(), false}
	if r.Decode != nil && !*r.Decode {
		return add, nil
	}
	p, err := st.s.Payload()
	if err != nil {
		return nil, classify(err, CodeBadRequest)
	}
	o, out, err := s.options(st.m, p, st.opts, r.decodeParams)
	if err != nil {
		return nil, err
	}
	res, err := s.run(ctx, st.m, p, o, out, t0)
	if err != nil {
		return nil, err
	}
	add.Decoded = true
	return streamDecodeResponse{add, res}, nil
}

func (s *Service) streamClose(h header, r *request) (any, error) {
	st, sh, err := s.stream(r.Stream)
	if err != nil {
		return nil, err
	}
	s.release(st.m)
	s.mu.Lock()
	delete(s.streams, sh)
	s.mu.Unlock()
	return streamCloseResponse{h}, nil
}

// accepts refuses a payload of another model (the executor decides: same content digest, or the
// legacy file digest of older payloads; names are not compared).
func (m *model) accepts(p *payload.Model) error {
	if m.x.Accepts(p) {
		return nil
	}
	e := errorf("model_mismatch", "model %q (digest %x…, fsq %v, %d tokens), want %q (digest %x…, fsq %v, %d tokens)",
		p.Name, p.Digest[:4], p.Levels, p.MaxTokens, m.id.Name, m.id.Digest[:4], m.id.Levels, m.id.MaxTokens)
	e.Field = "model"
	return e
}
