package server

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// StreamType is the media type of POST /v1/generate's response: frames, each a 4-byte
// big-endian length and that many bytes (docs/server.md, "Generation").
const StreamType = "application/vnd.flextok.stream+msgpack"

// generateRequest is POST /v1/generate's JSON body; absent fields take the model's defaults.
type generateRequest struct {
	Class       json.RawMessage `json:"class"` // a class name or index
	N           *int            `json:"n"`
	K           *int            `json:"k"`
	CFG         *float64        `json:"cfg"`
	Temperature *float64        `json:"temperature"`
	TopK        *int            `json:"top_k"`
	TopP        *float64        `json:"top_p"`
	Greedy      bool            `json:"greedy"`
	Seed        *uint64         `json:"seed"`
	Model       string          `json:"model"`
}

// maxGenerateBody bounds the JSON body of a generate request.
const maxGenerateBody = 64 << 10

func badField(field, format string, a ...any) *apiError {
	e := errf(http.StatusBadRequest, CodeBadRequest, format, a...)
	e.Field = field
	return e
}

// generateParams checks a request against the model and the limits and returns the ar request
// (without its OnToken) and the class index.
func (s *Server) generateParams(req *generateRequest, g *ar.Generator) (ar.Request, *apiError) {
	c := g.Model().Cfg
	var r ar.Request
	// class
	cls := -1
	raw := bytes.TrimSpace(req.Class)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return r, badField("class", "class: required (a class name or index; see /v1/models)")
	case raw[0] == '"':
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return r, badField("class", "class: %v", err)
		}
		for i, n := range c.Classes {
			if n == name {
				cls = i
				break
			}
		}
		if cls < 0 {
			names := c.Classes
			more := ""
			if len(names) > 12 {
				names, more = names[:12], ", …"
			}
			if len(names) == 0 {
				return r, badField("class", "class %q: this model has no class names; give an index in 0..%d", name, c.NumClasses-1)
			}
			return r, badField("class", "class %q: unknown (classes: %s%s; or an index in 0..%d)", name, strings.Join(names, ", "), more, c.NumClasses-1)
		}
	default:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || n < 0 || n >= int64(c.NumClasses) {
			return r, badField("class", "class %s: want a class name or an integer index in 0..%d", raw, c.NumClasses-1)
		}
		cls = int(n)
	}
	// n, k and the token limits
	n := 1
	if req.N != nil {
		n = *req.N
	}
	if n < 1 {
		return r, badField("n", "n = %d: want ≥ 1 samples", n)
	}
	if n > s.lim.MaxN {
		return r, limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_n", "n = %d is over this server's limit of %d samples per request", n, s.lim.MaxN)
	}
	k := c.BlockSize
	if req.K != nil {
		k = *req.K
	}
	if k < 1 || k > c.BlockSize {
		return r, badField("k", "k = %d: want 1..%d (the model's tokens)", k, c.BlockSize)
	}
	if k > s.lim.MaxK {
		return r, limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_k", "k = %d is over this server's limit of %d tokens", k, s.lim.MaxK)
	}
	if n*k > s.lim.MaxGenTokens {
		return r, limitErr(http.StatusUnprocessableEntity, CodeLimit, "max_tokens", "n × k = %d tokens is over this server's limit of %d tokens per request", n*k, s.lim.MaxGenTokens)
	}
	// sampling: the model's hints, then the request
	sm := modelSampling(c)
	if req.CFG != nil {
		sm.CFG = *req.CFG
		if math.IsNaN(sm.CFG) || math.IsInf(sm.CFG, 0) || sm.CFG < 0 || sm.CFG > 100 {
			return r, badField("cfg", "cfg = %v: want a scale in [0, 100] (≤ 1: no guidance)", sm.CFG)
		}
	}
	if req.Temperature != nil {
		sm.Temperature = *req.Temperature
		if !(sm.Temperature >= 0) || sm.Temperature > 100 {
			return r, badField("temperature", "temperature = %v: want a number in [0, 100]", sm.Temperature)
		}
	}
	if req.TopK != nil {
		sm.TopK = *req.TopK
		if sm.TopK < 0 {
			return r, badField("top_k", "top_k = %d: want ≥ 0 (0: off)", sm.TopK)
		}
	}
	if req.TopP != nil {
		sm.TopP = *req.TopP
		if !(sm.TopP > 0 && sm.TopP <= 1) {
			return r, badField("top_p", "top_p = %v: want a number in (0, 1] (1: off)", sm.TopP)
		}
	}
	sm.Greedy = req.Greedy
	if sm.CFG > 1 && !c.HasNull() {
		return r, badField("cfg", "cfg = %v needs the null class, and this model has none (class_dropout 0): use cfg ≤ 1", sm.CFG)
	}
	if err := sm.Check(); err != nil {
		return r, classify(err)
	}
	r.Sampling = sm
	r.K = k
	r.Classes = make([]int, n)
	for i := range r.Classes {
		r.Classes[i] = cls
	}
	if req.Seed != nil {
		r.Seed = *req.Seed
	} else {
		var b [8]byte
		rand.Read(b[:])
		r.Seed = binary.LittleEndian.Uint64(b[:]) >> 11 // exact in a JavaScript number
	}
	return r, nil
}

// appendFrame appends one frame: len(msg) as 4 bytes big-endian, then msg.
func appendFrame(b, msg []byte) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(msg))), msg...)
}

// generate is POST /v1/generate: a JSON body → the payload stream form of every sample,
// framed, as the tokens are produced (docs/server.md).
func (s *Server) generate(w http.ResponseWriter, r *http.Request) *apiError {
	if _, e := queryParams(r.URL.Query(), []string{"model"}); e != nil {
		return e
	}
	if t, _ := mediaType(r); t != "" && t != "application/json" {
		return errf(http.StatusUnsupportedMediaType, CodeMediaType, "Content-Type %q: send the request as application/json", r.Header.Get("Content-Type"))
	}
	ctx, done, e := s.begin(r)
	if e != nil {
		return e
	}
	defer done()
	lim := min(s.lim.MaxBodyBytes, maxGenerateBody)
	data, err := readAllLimit(http.MaxBytesReader(w, r.Body, lim), lim)
	state(r).bytesIn += int64(len(data))
	if err != nil {
		return s.bodyErr(r, err)
	}
	var req generateRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return errf(http.StatusBadRequest, CodeBadRequest, "the body is not a generate request (JSON: class, n, k, cfg, temperature, top_k, top_p, greedy, seed, model): %v", err)
	}
	if dec.More() {
		return errf(http.StatusBadRequest, CodeBadRequest, "the body holds more than one JSON value")
	}
	name := req.Model
	if q := r.URL.Query().Get("model"); q != "" {
		if name != "" && name != q {
			return errf(http.StatusBadRequest, CodeBadRequest, "model %q in the body and %q in the query", name, q)
		}
		name = q
	}
	m, e := s.pick(url.Values{"model": {name}})
	if e != nil {
		return e
	}
	g := s.gens[m.Name]
	if g == nil {
		return errf(http.StatusUnprocessableEntity, CodeUnsupported, "model %q has no AR model paired with it: it cannot generate (see /v1/models' operations)", m.Name)
	}
	areq, e := s.generateParams(&req, g)
	if e != nil {
		return e
	}
	n := len(areq.Classes)
	headers := make([]payload.Header, n)
	for i := range headers {
		headers[i] = g.StreamHeader(areq.Classes[i], areq.K)
	}
	rc := http.NewResponseController(w)
	started := false
	var buf []byte
	flush := func() error {
		if !started {
			h := w.Header()
			h.Set("Content-Type", StreamType)
			h.Set("Cache-Control", "no-store")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("X-Flextok-Model", m.Name)
			h.Set("X-Flextok-Samples", strconv.Itoa(n))
			h.Set("X-Flextok-Seed", strconv.FormatUint(areq.Seed, 10))
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		if err == nil {
			if err = rc.Flush(); errors.Is(err, http.ErrNotSupported) {
				err = nil
			}
		}
		if err != nil { // the client went away: stop generating
			return &apiError{Status: statusClientClosed, Code: CodeCanceled, Message: "the client went away: " + err.Error()}
		}
		return nil
	}
	var msg []byte
	areq.OnToken = func(t int, ids []uint32) error {
		var err error
		if t == 0 {
			for i := range headers {
				if msg, err = headers[i].AppendBinary(msg[:0]); err != nil {
					return err
				}
				buf = appendFrame(buf, msg)
			}
		}
		for i, id := range ids {
			c := payload.Chunk{Start: t, IDs: []uint32{id}, End: t == areq.K-1}
			if msg, err = c.AppendBinary(msg[:0], &headers[i]); err != nil {
				return err
			}
			buf = appendFrame(buf, msg)
		}
		s.m.tokens.WithLabelValues("generate", m.Name).Add(float64(len(ids)))
		return flush()
	}
	finish := func(ps []*payload.Payload) error {
		var err error
		for _, p := range ps { // the complete payloads, last
			if msg, err = p.AppendBinary(msg[:0]); err != nil {
				return err
			}
			buf = appendFrame(buf, msg)
		}
		s.m.images.WithLabelValues("generate", m.Name).Add(float64(n))
		return flush()
	}
	if b := s.batchers[m.Name]; b != nil {
		// One batch per model: no work slot of its own (the batch takes one per step).
		onToken := areq.OnToken
		areq.OnToken = nil
		ps, err := b.generate(ctx, areq, onToken)
		if err == nil {
			err = finish(ps)
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			e = classify(ctx.Err())
		default:
			e = classify(err)
		}
	} else {
		e = s.work(ctx, func() error {
			ps, err := g.Generate(ctx, areq)
			if err != nil {
				return err
			}
			return finish(ps)
		})
	}
	if e == nil {
		return nil
	}
	if !started {
		return e
	}
	// After the first byte: a final JSON frame {"error": ...} (a client still reading gets it;
	// a client that went away does not) and the error recorded for the log and metrics.
	state(r).err = e
	b, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	buf = appendFrame(buf[:0], b)
	w.Write(buf)
	rc.Flush()
	return nil
}

// readAllLimit reads r up to lim bytes; more is a *http.MaxBytesError.
func readAllLimit(r io.Reader, lim int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r)
	if err == nil && int64(b.Len()) > lim {
		err = &http.MaxBytesError{Limit: lim}
	}
	return b.Bytes(), err
}

// arInfo is the ar part of a /v1/models entry.
type arInfo struct {
	Name       string    `json:"name,omitempty"`
	NumClasses int       `json:"num_classes"`
	MaxK       int       `json:"max_k"`
	CFG        bool      `json:"cfg"` // has the null class (cfg > 1 allowed)
	Defaults   arDefault `json:"defaults"`
}

type arDefault struct {
	CFG         float64 `json:"cfg"`
	Temperature float64 `json:"temperature"`
	TopK        int     `json:"top_k"`
	TopP        float64 `json:"top_p"`
}

func arInfoOf(g *ar.Generator) *arInfo {
	c := g.Model().Cfg
	sm := modelSampling(c)
	return &arInfo{Name: c.Name, NumClasses: c.NumClasses, MaxK: c.BlockSize, CFG: c.HasNull(),
		Defaults: arDefault{CFG: sm.CFG, Temperature: sm.Temperature, TopK: sm.TopK, TopP: sm.TopP}}
}

// modelSampling is a request's default sampling: ar.DefaultSampling with the model's
// sampling hints (config.json's sampling_hints) over it.
func modelSampling(c *ar.Config) ar.Sampling {
	sm := ar.DefaultSampling()
	if h := c.Hints; h != nil {
		if h.CFGScale != nil {
			sm.CFG = *h.CFGScale
		}
		if h.CFGInterval != nil && *h.CFGInterval >= 0 {
			sm.GuidedTokens = *h.CFGInterval + 2
		}
		if h.Temperature != nil {
			sm.Temperature = *h.Temperature
		}
		if h.TopK != nil {
			sm.TopK = *h.TopK
		}
		if h.TopP != nil {
			sm.TopP = *h.TopP
		}
	}
	return sm
}
