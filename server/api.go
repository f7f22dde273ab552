package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// MsgpackType is the media type of payloads (docs/payload.md); decode also accepts
// application/x-msgpack, application/msgpack and application/octet-stream.
const MsgpackType = "application/vnd.msgpack"

var payloadTypes = map[string]bool{MsgpackType: true, "application/x-msgpack": true, "application/msgpack": true, "application/octet-stream": true}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, errf(http.StatusInternalServerError, CodeInternal, "%v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// pick returns the model ?model= names (default: the first).
func (s *Server) pick(q url.Values) (*Model, *apiError) {
	name := q.Get("model")
	if name == "" {
		return s.models[s.order[0]], nil
	}
	m, ok := s.models[name]
	if !ok {
		return nil, errf(http.StatusNotFound, CodeUnknownModel, "no model %q (served: %s)", name, strings.Join(s.order, ", "))
	}
	return m, nil
}

// modelInfo is one entry of GET /v1/models.
type modelInfo struct {
	Name       string         `json:"name"`
	Default    bool           `json:"default"`
	Identity   identityInfo   `json:"identity"`
	ImageSize  [2]int         `json:"image_size"` // height, width
	MaxTokens  int            `json:"max_tokens"`
	Hints      *hintsInfo     `json:"hints,omitempty"`
	Decode     decodeDefaults `json:"decode_defaults"`
	Operations []string       `json:"operations"`
	Classes    []string       `json:"classes,omitempty"` // the AR model's class names (generate)
	AR         *arInfo        `json:"ar,omitempty"`      // the paired AR model (generate)
}

type identityInfo struct {
	Name         string `json:"name"`
	Digest       string `json:"digest"` // hex SHA-256
	FSQ          []int  `json:"fsq"`
	CodebookSize int    `json:"codebook_size"`
	MaxTokens    int    `json:"max_tokens"`
}

type hintsInfo struct {
	Steps    int      `json:"steps,omitempty"`
	Guidance *float32 `json:"guidance,omitempty"`
	APG      bool     `json:"apg,omitempty"`
	Seed     *uint64  `json:"seed,omitempty"`
}

type decodeDefaults struct {
	Steps    int     `json:"steps"`
	Guidance float64 `json:"guidance"`
	APG      bool    `json:"apg"`
	Seed     uint64  `json:"seed"`
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) *apiError {
	out := make([]modelInfo, 0, len(s.order))
	for i, name := range s.order {
		e := s.models[name].Exec
		id := e.Identity()
		h, wd := e.ImageSize()
		d := e.DefaultDecodeOptions(&payload.Payload{Model: id})
		mi := modelInfo{Name: name, Default: i == 0, ImageSize: [2]int{h, wd}, MaxTokens: e.MaxTokens(),
			Identity:   identityInfo{Name: id.Name, Digest: hex.EncodeToString(id.Digest[:]), FSQ: id.Levels, CodebookSize: id.CodebookSize(), MaxTokens: id.MaxTokens},
			Decode:     decodeDefaults{Steps: d.Steps, Guidance: d.Guidance, APG: d.APG, Seed: d.Seed},
			Operations: []string{"encode", "decode"}}
		if g := s.gens[name]; g != nil {
			mi.Operations = append(mi.Operations, "generate")
			mi.Classes = g.Model().Cfg.Classes
			mi.AR = arInfoOf(g)
		}
		if hi := e.Hints(); hi != nil {
			mi.Hints = &hintsInfo{Steps: hi.Steps, Guidance: hi.Guidance, APG: hi.APG, Seed: hi.Seed}
		}
		out = append(out, mi)
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out})
	return nil
}

// params reads options from the query and, for multipart requests, form fields (which win).
type params map[string]string

func (p params) intOpt(name string, lo, hi int) (int, bool, *apiError) {
	v, ok := p[name]
	if !ok || v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, false, errf(http.StatusBadRequest, CodeBadRequest, "%s = %q: want an integer in %d..%d", name, v, lo, hi)
	}
	return n, true, nil
}

func (p params) boolOpt(name string) (bool, bool, *apiError) {
	v, ok := p[name]
	if !ok || v == "" {
		return false, false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, false, errf(http.StatusBadRequest, CodeBadRequest, "%s = %q: want true or false", name, v)
	}
	return b, true, nil
}

var encodeParams = []string{"model", "k", "size", "filter", "exif_orientation"}
var decodeParams = []string{"model", "k", "size", "steps", "guidance", "apg", "seed"}

// queryParams reads the query, refusing unknown or repeated options.
func queryParams(q url.Values, known []string) (params, *apiError) {
	p := params{}
	for k, vs := range q {
		if !contains(known, k) {
			return nil, errf(http.StatusBadRequest, CodeBadRequest, "unknown option %q (options: %s)", k, strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return nil, errf(http.StatusBadRequest, CodeBadRequest, "option %q given %d times", k, len(vs))
		}
		p[k] = vs[0]
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkK checks k (0: all) against the model and the k limit.
func (s *Server) checkK(k, max int) *apiError {
	if k > s.lim.MaxK {
		return limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_k", "k = %d is over this server's limit of %d tokens", k, s.lim.MaxK)
	}
	if k > max {
		return errf(http.StatusBadRequest, CodeBadRequest, "k = %d: the model has %d tokens (0: all)", k, max)
	}
	return nil
}

func (s *Server) checkSize(size int) *apiError {
	if size > s.lim.MaxSize {
		return limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_size", "size = %d is over this server's limit of %d pixels", size, s.lim.MaxSize)
	}
	return nil
}

// begin admits a request to the work queue and bounds its time; done undoes it.
func (s *Server) begin(r *http.Request) (ctx context.Context, done func(), e *apiError) {
	if s.draining.Load() {
		s.m.rejected.WithLabelValues("draining").Inc()
		return nil, nil, errf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	}
	if r.ContentLength > s.lim.MaxBodyBytes {
		s.m.rejected.WithLabelValues("max_body_bytes").Inc()
		return nil, nil, limitErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "max_body_bytes", "the body is %d bytes, over this server's limit of %d", r.ContentLength, s.lim.MaxBodyBytes)
	}
	if !s.adm.enter() {
		s.m.rejected.WithLabelValues("queue_full").Inc()
		return nil, nil, &apiError{Status: http.StatusTooManyRequests, Code: CodeOverloaded, Limit: "max_queue",
			Message: "the server is at capacity (every work slot busy and the queue full): retry later", retryAfter: s.retry}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.lim.Timeout)
	return ctx, func() { cancel(); s.adm.leave() }, nil
}

// readBody reads the whole body up to the body limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, body io.Reader) ([]byte, *apiError) {
	data, err := io.ReadAll(io.LimitReader(body, s.lim.MaxBodyBytes+1))
	state(r).bytesIn += int64(len(data))
	if err != nil {
		return nil, s.bodyErr(r, err)
	}
	if int64(len(data)) > s.lim.MaxBodyBytes {
		s.m.rejected.WithLabelValues("max_body_bytes").Inc()
		return nil, limitErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "max_body_bytes", "the body is over this server's limit of %d bytes", s.lim.MaxBodyBytes)
	}
	return data, nil
}

// bodyErr classifies an error reading the body: a limit, a timeout (slow client), a client
// gone.
func (s *Server) bodyErr(r *http.Request, err error) *apiError {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		s.m.rejected.WithLabelValues("max_body_bytes").Inc()
		return limitErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "max_body_bytes", "the body is over this server's limit of %d bytes", mbe.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return limitErr(http.StatusRequestTimeout, CodeCanceled, "read_timeout", "the body was not read within the read timeout: %v", err)
	case r.Context().Err() != nil:
		return &apiError{Status: statusClientClosed, Code: CodeCanceled, Message: "the client went away"}
	}
	return errf(http.StatusBadRequest, CodeBadRequest, "reading the body: %v", err)
}

// work runs fn holding a work slot.
func (s *Server) work(ctx context.Context, fn func() error) *apiError {
	if err := s.adm.acquire(ctx); err != nil {
		return classify(err)
	}
	defer s.adm.release()
	if err := fn(); err != nil {
		if ctx.Err() != nil {
			return classify(ctx.Err())
		}
		return classify(err)
	}
	return nil
}

func mediaType(r *http.Request) (string, map[string]string) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", nil
	}
	t, ps, err := mime.ParseMediaType(ct)
	if err != nil {
		return "invalid", nil
	}
	return t, ps
}

// maxFormParts bounds the parts of a multipart encode request.
const maxFormParts = 8

// encodeInput reads the image and the options of an encode request: a raw body of an image
// type (or application/octet-stream, or none), or multipart/form-data with a file field "image" and
// optional option fields.
func (s *Server) encodeInput(w http.ResponseWriter, r *http.Request, p params) ([]byte, *apiError) {
	t, mps := mediaType(r)
	body := http.MaxBytesReader(w, r.Body, s.lim.MaxBodyBytes)
	switch {
	case t == "" || strings.HasPrefix(t, "image/") || t == "application/octet-stream":
		// No type (fetch() with a bare Uint8Array body, the demo page's POST /encode): the
		// image decoder identifies the format by its magic bytes either way.
		return s.readBody(w, r, body)
	case t == "multipart/form-data":
		if mps["boundary"] == "" {
			return nil, errf(http.StatusBadRequest, CodeBadRequest, "multipart/form-data without a boundary")
		}
		mr := multipart.NewReader(body, mps["boundary"])
		var img []byte
		for i := 0; ; i++ {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				if e := s.bodyErr(r, err); e.Code != CodeBadRequest {
					return nil, e
				}
				return nil, errf(http.StatusBadRequest, CodeBadRequest, "multipart body: %v", err)
			}
			if i >= maxFormParts {
				return nil, errf(http.StatusBadRequest, CodeBadRequest, "more than %d form fields", maxFormParts)
			}
			name := part.FormName()
			switch {
			case name == "image":
				if img != nil {
					return nil, errf(http.StatusBadRequest, CodeBadRequest, `form field "image" given twice`)
				}
				b, e := s.readBody(w, r, part)
				if e != nil {
					return nil, e
				}
				img = b
				if img == nil {
					img = []byte{}
				}
			case contains(encodeParams, name):
				v, err := io.ReadAll(io.LimitReader(part, 65))
				if err != nil {
					return nil, s.bodyErr(r, err)
				}
				if len(v) > 64 {
					return nil, errf(http.StatusBadRequest, CodeBadRequest, "form field %q is over 64 bytes", name)
				}
				if _, dup := p[name]; dup {
					return nil, errf(http.StatusBadRequest, CodeBadRequest, "option %q given twice (query and form)", name)
				}
				p[name] = string(v)
			default:
				return nil, errf(http.StatusBadRequest, CodeBadRequest, "unknown form field %q (fields: image, %s)", name, strings.Join(encodeParams, ", "))
			}
		}
		if img == nil {
			return nil, errf(http.StatusBadRequest, CodeBadRequest, `multipart body without an "image" file field (curl -F image=@photo.png)`)
		}
		return img, nil
	}
	return nil, errf(http.StatusUnsupportedMediaType, CodeMediaType,
		"Content-Type %q: send the image as the body with its image/* type (or application/octet-stream), or as multipart/form-data field \"image\"", r.Header.Get("Content-Type"))
}

// encode is POST /v1/encode.
func (s *Server) encode(w http.ResponseWriter, r *http.Request) *apiError {
	p, e := queryParams(r.URL.Query(), encodeParams)
	if e != nil {
		return e
	}
	ctx, done, e := s.begin(r)
	if e != nil {
		return e
	}
	defer done()
	data, e := s.encodeInput(w, r, p)
	if e != nil {
		return e
	}
	m, e := s.pick(url.Values{"model": {p["model"]}})
	if e != nil {
		return e
	}
	exec := m.Exec
	var o engine.EncodeOptions
	if o.K, _, e = p.intOpt("k", 0, math.MaxInt32); e != nil {
		return e
	}
	if e = s.checkK(o.K, exec.MaxTokens()); e != nil {
		return e
	}
	if o.Size, _, e = p.intOpt("size", 0, math.MaxInt32); e != nil {
		return e
	}
	if e = s.checkSize(o.Size); e != nil {
		return e
	}
	switch f := p["filter"]; f {
	case "", ftimage.FilterBilinear, ftimage.FilterCatmullRom:
		o.Filter = f
	default:
		return errf(http.StatusBadRequest, CodeBadRequest, "filter = %q: want %s or %s", f, ftimage.FilterBilinear, ftimage.FilterCatmullRom)
	}
	orient, set, e := p.boolOpt("exif_orientation")
	if e != nil {
		return e
	}
	dopt := ftimage.DecodeOptions{MaxPixels: s.lim.MaxPixels, MaxBytes: s.lim.MaxBodyBytes, IgnoreOrientation: set && !orient}
	var pl *payload.Payload
	e = s.work(ctx, func() error {
		// The header is read, and the pixel limit checked, before any pixel memory.
		img, _, err := ftimage.DecodeBytes(data, dopt)
		if err != nil {
			if errors.Is(err, ftimage.ErrTooLarge) {
				s.m.rejected.WithLabelValues("max_pixels").Inc()
				return limitErr(http.StatusRequestEntityTooLarge, CodeTooLarge, "max_pixels", "%v (this server's limit: %d pixels)", err, s.lim.MaxPixels)
			}
			return err
		}
		pl, err = exec.Encode(ctx, img, o)
		return err
	})
	if e != nil {
		return e
	}
	s.m.images.WithLabelValues("encode", m.Name).Inc()
	s.m.tokens.WithLabelValues("encode", m.Name).Add(float64(len(pl.IDs)))
	var out []byte
	var err error
	ct := MsgpackType
	if wantsJSON(r) {
		out, err = pl.JSON()
		ct = "application/json"
	} else {
		out, err = pl.MarshalBinary()
	}
	if err != nil {
		return classify(err)
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Flextok-Model", m.Name)
	w.Write(out)
	return nil
}

// wantsJSON reports whether Accept prefers application/json to msgpack.
func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		t, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch t {
		case "application/json":
			return true
		case MsgpackType, "application/x-msgpack", "application/msgpack":
			return false
		}
	}
	return false
}

// decode is POST /v1/decode: a payload body → PNG.
func (s *Server) decode(w http.ResponseWriter, r *http.Request) *apiError {
	p, e := queryParams(r.URL.Query(), decodeParams)
	if e != nil {
		return e
	}
	m, e := s.pick(r.URL.Query())
	if e != nil {
		return e
	}
	exec := m.Exec
	if t, _ := mediaType(r); !payloadTypes[t] {
		return errf(http.StatusUnsupportedMediaType, CodeMediaType,
			"Content-Type %q: send the payload as %s (or application/x-msgpack, application/octet-stream)", r.Header.Get("Content-Type"), MsgpackType)
	}
	// Options that need no payload are checked before the body is read.
	k, _, e := p.intOpt("k", 0, math.MaxInt32)
	if e != nil {
		return e
	}
	if e = s.checkK(k, exec.MaxTokens()); e != nil {
		return e
	}
	size, _, e := p.intOpt("size", 0, math.MaxInt32)
	if e != nil {
		return e
	}
	if e = s.checkSize(size); e != nil {
		return e
	}
	steps, stepsSet, e := p.intOpt("steps", 0, math.MaxInt32)
	if e != nil {
		return e
	}
	if stepsSet && steps > s.lim.MaxSteps {
		return limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_steps", "steps = %d is over this server's limit of %d", steps, s.lim.MaxSteps)
	}
	var guidance float64
	gSet := false
	if v := p["guidance"]; v != "" {
		g, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(g) || math.IsInf(g, 0) || g < 0 || g > 1000 {
			return errf(http.StatusBadRequest, CodeBadRequest, "guidance = %q: want a number in [0, 1000] (1: off; 0 or absent: the hint)", v)
		}
		// 0 is engine.DecodeOptions' "hinted", as an absent guidance.
		guidance, gSet = g, g != 0
	}
	apg, apgSet, e := p.boolOpt("apg")
	if e != nil {
		return e
	}
	var seed uint64
	seedSet := false
	if v := p["seed"]; v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errf(http.StatusBadRequest, CodeBadRequest, "seed = %q: want an unsigned 64-bit integer", v)
		}
		seed, seedSet = n, true
	}
	ctx, done, e := s.begin(r)
	if e != nil {
		return e
	}
	defer done()
	data, e := s.readBody(w, r, http.MaxBytesReader(w, r.Body, s.lim.MaxBodyBytes))
	if e != nil {
		return e
	}
	var pl payload.Payload
	if err := payload.Decode(data, &pl, payload.Options{Limits: payload.Limits{MaxBytes: int(min(s.lim.MaxBodyBytes, math.MaxInt32))}}); err != nil {
		return classify(err)
	}
	if !exec.Accepts(&pl.Model) {
		return errf(http.StatusUnprocessableEntity, CodeModelMismatch, "the payload was made by model %q (digest %x…), not by %q: choose its model with ?model= (see /v1/models)",
			pl.Model.Name, pl.Model.Digest[:6], m.Name)
	}
	o := exec.DefaultDecodeOptions(&pl)
	o.K, o.Size = k, size
	if stepsSet && steps > 0 {
		o.Steps = steps
	}
	if o.Steps > s.lim.MaxSteps {
		return limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_steps", "the payload hints steps = %d, over this server's limit of %d: set steps", o.Steps, s.lim.MaxSteps)
	}
	if gSet {
		o.Guidance = guidance
	}
	if apgSet {
		o.APG = apg
	}
	if seedSet {
		o.Seed = seed
	}
	var png bytes.Buffer
	e = s.work(ctx, func() error {
		img, err := exec.DecodeImage(ctx, &pl, o)
		if err != nil {
			return err
		}
		return ftimage.EncodePNG(&png, img)
	})
	if e != nil {
		return e
	}
	used := len(pl.IDs)
	if k > 0 {
		used = min(k, used)
	}
	s.m.images.WithLabelValues("decode", m.Name).Inc()
	s.m.tokens.WithLabelValues("decode", m.Name).Add(float64(used))
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Flextok-Model", m.Name)
	w.Header().Set("X-Flextok-Decode", fmt.Sprintf("k=%d steps=%d guidance=%g apg=%t seed=%d", used, o.Steps, o.Guidance, o.APG, o.Seed))
	w.Write(png.Bytes())
	return nil
}
