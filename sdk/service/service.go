package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
	"github.com/vmihailenco/msgpack/v5"
)

// Protocol is the version of the request/response format described in the package
// documentation; the "version" op reports it.
const Protocol = 1

// Error codes of the service itself; payload errors keep their payload.Code ("range",
// "truncated", "model_mismatch", ...).
const (
	CodeBadRequest     = "bad_request"      // malformed request, wrong field type, bad option value
	CodeUnknownOp      = "unknown_op"       // "op" names no operation
	CodeUnknownHandle  = "unknown_handle"   // no open model or stream has this handle
	CodeTooManyHandles = "too_many_handles" // Options.MaxModels or MaxStreams reached
	CodeBadModel       = "bad_model"        // weights or config that do not load
	CodeBadImage       = "bad_image"        // image bytes that do not decode, or too large
	CodeUnsupported    = "unsupported"      // a valid input this executor cannot run (e.g. video payloads)
	CodeCanceled       = "canceled"         // the context was canceled or its deadline passed
	CodeInternal       = "internal"         // a bug: a recovered panic or an unexpected error
)

// Options bound and configure a Service. Zero fields take the defaults.
type Options struct {
	MaxModels      int   // open model handles at a time (default 4)
	MaxStreams     int   // open stream handles at a time, all models together (default 16)
	MaxSteps       int   // largest "steps" a request may ask for (default 1000)
	MaxImagePixels int64 // largest width×height an "encode" image may have (default 16 Mi)
	// MaxSamples is the largest "n" of a "generate_open" (default 64); MaxGenerateTokens the
	// largest n × k (default 64 × 256). Open AR models count towards MaxModels on their own
	// (at most MaxModels AR models besides MaxModels tokenizers), open generations towards
	// MaxStreams on their own.
	MaxSamples        int
	MaxGenerateTokens int
	// Engine configures the models "open" builds with the default Load. Leave it zero: the
	// portable path is what makes every front end (native, GOOS=js, GOOS=wasip1) give the
	// same bits.
	Engine engine.Options
	// Load, if set, builds the executor of an "open" request instead of the Go engine: a
	// server passes one that opens the checkpoint in ONNX Runtime (package native). nil: the
	// Go engine with Options.Engine, what the wasm modules use.
	Load Loader
	// Default, if set, is the model an "open" without "weights" opens: the front end's
	// embedded default model (the wasm modules pass models.Default()).
	Default *Checkpoint
	// DefaultAR, if set, is the AR model an "ar_open" without "config" and "weights" opens
	// (beside the tokenizer handle it names): the front end's embedded default AR model
	// (models.DefaultAR()), made for the Default model.
	DefaultAR *ARCheckpoint
	// Graphs, if set, opens the networks of a web model package for "open_graphs": the
	// GOOS=js module's onnxruntime-web host. nil: "open_graphs" is refused as unsupported.
	Graphs GraphHost
}

// ARCheckpoint is an AR checkpoint (docs/ar-checkpoint.md) held in memory.
type ARCheckpoint struct {
	Config, Weights []byte // config.json, model.safetensors
}

// Checkpoint is an official-format checkpoint held in memory. Its name and decode hints come
// from its config (model.NameKey, model.HintsKey).
type Checkpoint struct {
	Weights, Config, VAEConfig []byte // model.safetensors, config.json, vae/config.json
}

// Loader builds the executor of an "open" request from the checkpoint's bytes; name, if not
// empty, replaces the model's own name in the payloads it makes (engine.Options.Name). The
// Service owns what it returns: "close" (and Service.Close) closes it once no request uses it.
// Errors wrapping engine.ErrArgument or engine.ErrUnsupported give the codes "bad_request" and
// "unsupported", any other "bad_model".
type Loader func(c Checkpoint, name string) (engine.Executor, error)

func (o Options) withDefaults() Options {
	if o.MaxModels <= 0 {
		o.MaxModels = 4
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 16
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 1000
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 64
	}
	if o.MaxGenerateTokens <= 0 {
		o.MaxGenerateTokens = 64 * 256
	}
	if o.MaxImagePixels <= 0 {
		o.MaxImagePixels = 16 << 20
	}
	if o.Load == nil {
		eo := o.Engine
		o.Load = func(c Checkpoint, name string) (engine.Executor, error) {
			eo := eo
			eo.Name = name
			return engine.LoadBytes(c.Weights, c.Config, c.VAEConfig, eo)
		}
	}
	return o
}

// Service holds the open models and streams of one front end and answers requests. It is
// safe for concurrent use; requests on different handles run in parallel.
type Service struct {
	o       Options
	mu      sync.Mutex
	next    uint64 // last handle given out; handles are never reused
	models  map[uint64]*model
	streams map[uint64]*stream
	ars     map[uint64]*arModel    // AR models ("ar_open")
	gens    map[uint64]*generation // generations ("generate_open")
}

type model struct {
	x     engine.Executor
	id    payload.Model
	owned bool // opened by "open": the Service closes x
	// busy counts the requests running on the model and gone says its handle is closed (both
	// under Service.mu): an owned executor is closed when both allow it, never under a
	// request.
	busy int
	gone bool
}

type stream struct {
	mu    sync.Mutex // serialises the chunks of one stream
	model uint64
	m     *model
	s     payload.Stream
	opts  decodeParams // options given at stream_open
}

// New returns a Service with no open handles.
func New(o Options) *Service {
	return &Service{o: o.withDefaults(), models: map[uint64]*model{}, streams: map[uint64]*stream{},
		ars: map[uint64]*arModel{}, gens: map[uint64]*generation{}}
}

// Error is an error sent as data: the "error" map of a response.
type Error struct {
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
	Detail  string `msgpack:"detail"`
	Field   string `msgpack:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }

func errorf(code, detail string, args ...any) *Error {
	d := fmt.Sprintf(detail, args...)
	return &Error{Code: code, Message: "flextok/service: " + code + ": " + d, Detail: d}
}

// classify turns an error of the packages the service calls into an *Error; fallback is the
// code of an error of no known kind.
func classify(err error, fallback string) *Error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	var pe *payload.Error
	if errors.As(err, &pe) {
		return &Error{Code: pe.Code(), Message: err.Error(), Detail: pe.Detail, Field: pe.Field}
	}
	code := fallback
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = CodeCanceled
	case errors.Is(err, engine.ErrGraphMismatch):
		code = CodeGraphMismatch
	case errors.Is(err, webpkg.ErrInvalid), errors.Is(err, webpkg.ErrUnsupported):
		code = CodeBadPackage
	case errors.Is(err, payload.ErrModelMismatch):
		code = "model_mismatch"
	case errors.Is(err, engine.ErrUnsupported):
		code = CodeUnsupported
	case errors.Is(err, engine.ErrArgument), errors.Is(err, ar.ErrArgument):
		code = CodeBadRequest
	case errors.Is(err, ar.ErrConfig), errors.Is(err, ar.ErrWeights):
		code = CodeBadModel
	case errors.Is(err, ar.ErrTokenizer):
		code = CodeTokenizerMismatch
	}
	return &Error{Code: code, Message: err.Error(), Detail: err.Error()}
}

type header struct {
	ID *uint64 `msgpack:"id,omitempty"`
	OK bool    `msgpack:"ok"`
}

type errorResponse struct {
	header
	Error *Error `msgpack:"error"`
}

// ErrorResponse returns the encoded response of a failed request, for a front end that fails
// before it can call Handle (e.g. JavaScript passed something that is not a Uint8Array).
func ErrorResponse(code, message string) []byte {
	return encode(errorResponse{Error: &Error{Code: code, Message: message, Detail: message}})
}

func encode(v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(false)
	if err := enc.Encode(v); err != nil {
		// Every response type is a plain struct of encodable fields; this cannot happen.
		panic(fmt.Sprintf("flextok/service: encode response: %v", err))
	}
	return buf.Bytes()
}

// Handle answers one request (see the package documentation for the format) and never
// panics: a panic inside an operation becomes an "internal" error response.
func (s *Service) Handle(req []byte) []byte {
	return s.HandleContext(context.Background(), req)
}

// HandleContext is Handle with a context that can cancel a decode or encode between steps
// (the response then has code "canceled").
func (s *Service) HandleContext(ctx context.Context, req []byte) (resp []byte) {
	var id *uint64
	defer func() {
		if r := recover(); r != nil {
			resp = encode(errorResponse{header{ID: id}, errorf(CodeInternal, "panic: %v", r)})
		}
	}()
	r, err := parse(req)
	if r != nil {
		id = r.ID
	}
	var out any
	if err == nil {
		out, err = s.dispatch(ctx, r)
	}
	if err != nil {
		return encode(errorResponse{header{ID: id}, classify(err, CodeInternal)})
	}
	return encode(out)
}

// testHook, if set (by tests only), runs before every op.
var testHook func(*request)

func (s *Service) dispatch(ctx context.Context, r *request) (any, error) {
	if testHook != nil {
		testHook(r)
	}
	h := header{ID: r.ID, OK: true}
	switch r.Op {
	case "version":
		return versionResponse{h, Protocol, [2]int{payload.Major, payload.Minor}}, nil
	case "open":
		return s.open(h, r)
	case "open_graphs":
		return s.openGraphs(ctx, h, r)
	case "close":
		return s.close(h, r)
	case "info":
		m, _, err := s.model(r.Handle)
		if err != nil {
			return nil, err
		}
		defer s.release(m)
		return infoResponse{h, info(m)}, nil
	case "decode":
		return s.decode(ctx, h, r)
	case "encode":
		return s.encodeImage(ctx, h, r)
	case "stream_open":
		return s.streamOpen(h, r)
	case "stream_chunk":
		return s.streamChunk(ctx, h, r)
	case "stream_close":
		return s.streamClose(h, r)
	case "ar_open":
		return s.arOpen(h, r)
	case "generate_open":
		return s.generateOpen(h, r)
	case "generate_next":
		return s.generateNext(ctx, h, r)
	case "generate_close":
		return s.generateClose(h, r)
	case "":
		return nil, errorf(CodeBadRequest, `missing "op"`)
	}
	return nil, errorf(CodeUnknownOp, "unknown op %q", r.Op)
}

// model looks up a model handle and marks the model busy: the caller calls release when done.
func (s *Service) model(h int64) (*model, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, mh, err := s.lookup(h)
	if err == nil {
		m.busy++
	}
	return m, mh, err
}

// release ends a request's use of m (from model or stream) and closes an owned executor whose
// handle was closed meanwhile.
func (s *Service) release(m *model) {
	s.mu.Lock()
	m.busy--
	last := m.gone && m.busy == 0 && m.owned
	s.mu.Unlock()
	if last {
		_ = m.x.Close() // the handle is gone: nobody to tell
	}
}

func (s *Service) open(h header, r *request) (any, error) {
	weights, config, vae, name := r.Weights, r.Config, r.VAEConfig, r.Name
	if len(weights) == 0 {
		d := s.o.Default
		if d == nil {
			return nil, errorf(CodeBadRequest, `"open" needs "weights" (this front end embeds no default model)`)
		}
		if len(config) > 0 || len(vae) > 0 {
			return nil, errorf(CodeBadRequest, `"config" and "vae_config" go with "weights"`)
		}
		weights, config, vae = d.Weights, d.Config, d.VAEConfig
	}
	if len(name) > payload.DefaultLimits.MaxString {
		return nil, errorf(CodeBadRequest, "name of %d bytes, at most %d", len(name), payload.DefaultLimits.MaxString)
	}
	// Check the bound before the (slow) load, and again after it.
	s.mu.Lock()
	full := len(s.models) >= s.o.MaxModels
	s.mu.Unlock()
	if full {
		return nil, errorf(CodeTooManyHandles, "%d models open, the limit; close one first", s.o.MaxModels)
	}
	// name "" keeps the model's own name (its config's, or one from its digest).
	x, err := s.o.Load(Checkpoint{Weights: weights, Config: config, VAEConfig: vae}, name)
	if err != nil {
		return nil, classify(err, CodeBadModel)
	}
	m := &model{x: x, id: x.Identity(), owned: true}
	hd, err := s.add(m)
	if err != nil {
		_ = x.Close()
		return nil, err
	}
	return openResponse{h, hd, info(m)}, nil
}

// add gives m a handle, within Options.MaxModels.
func (s *Service) add(m *model) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.models) >= s.o.MaxModels {
		return 0, errorf(CodeTooManyHandles, "%d models open, the limit; close one first", s.o.MaxModels)
	}
	s.next++
	s.models[s.next] = m
	return s.next, nil
}

// Add registers an executor that is already loaded (a native.Backend a server opened, an
// Engine with its own options) and returns its model handle, which requests use as they use
// the handles of "open". It counts towards Options.MaxModels (an *Error with code
// "too_many_handles" beyond it). The caller keeps ownership: "close" and Close remove the
// handle but never close x, which must stay usable until they have.
func (s *Service) Add(x engine.Executor) (uint64, error) {
	if x == nil {
		return 0, errorf(CodeBadRequest, "Add: nil executor")
	}
	return s.add(&model{x: x, id: x.Identity()})
}

func (s *Service) close(h header, r *request) (any, error) {
	s.mu.Lock()
	if a, err := s.arLookup(r.Handle); err == nil {
		n := s.closeAR(uint64(r.Handle), a)
		s.mu.Unlock()
		return closeResponse{h, n}, nil
	}
	m, mh, err := s.lookup(r.Handle)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	closed := s.drop(mh, m)
	last := m.busy == 0 && m.owned
	s.mu.Unlock()
	if last {
		_ = m.x.Close() // the handle is gone either way; an error here has no one to go to
	}
	return closeResponse{h, closed}, nil
}

// lookup finds a model handle (under s.mu).
func (s *Service) lookup(h int64) (*model, uint64, error) {
	if h > 0 {
		if m, ok := s.models[uint64(h)]; ok {
			return m, uint64(h), nil
		}
	}
	return nil, 0, errorf(CodeUnknownHandle, "no open model has handle %d", h)
}

// drop removes model handle mh and its streams (under s.mu) and returns the number of streams.
func (s *Service) drop(mh uint64, m *model) int {
	delete(s.models, mh)
	m.gone = true
	closed := 0
	for sh, st := range s.streams {
		if st.model == mh {
			delete(s.streams, sh)
			closed++
		}
	}
	return closed
}

// Close closes every model and stream handle, as "close" does for each: the executors that
// "open" made are closed (once the requests running on them end), those given to Add are
// not. It returns the errors of the executors it closed. The Service stays usable.
func (s *Service) Close() error {
	s.mu.Lock()
	var now []engine.Executor
	for ah, a := range s.ars {
		s.closeAR(ah, a)
	}
	for mh, m := range s.models {
		s.drop(mh, m)
		if m.busy == 0 && m.owned {
			now = append(now, m.x)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, x := range now {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

func info(m *model) modelInfo {
	hgt, wid := m.x.ImageSize()
	return modelInfo{
		Model:    wireModel{Name: m.id.Name, Digest: m.id.Digest[:], FSQ: m.id.Levels, MaxTokens: m.id.MaxTokens},
		Height:   hgt,
		Width:    wid,
		Codebook: m.id.CodebookSize(),
	}
}
