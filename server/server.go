// Package server is FlexTok's HTTP token service: a versioned API (/v1/encode, /v1/decode,
// /v1/models, /v1/openapi.json) over any engine.Executor (the pure-Go engine or ONNX
// Runtime's native.Backend), with several named models per process, a bounded admission
// queue, limits, Prometheus metrics, JSON logs with request ids, health and readiness probes,
// CORS and graceful draining. `flextok serve` mounts it in front of the demo page.
//
// It lives outside sdk/ because it imports the Prometheus client, which need not build for
// WebAssembly; docs/server.md is its manual.
package server

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document of the API (served at /v1/openapi.json).
func OpenAPI() []byte { return slices.Clone(openAPI) }

// Model is one named model the server serves.
type Model struct {
	Name string          // the ?model= name; unique, [A-Za-z0-9._-]+
	Exec engine.Executor // shared by every request: executors are safe for concurrent use
	// AR, if set, is the AR model paired with Exec's tokenizer: the model generates (POST
	// /v1/generate). New refuses one not made for Exec's tokenizer (ar.ErrTokenizer).
	AR *ar.Model
	// AROptions run AR: Exec for the Go kernels, or Executor (native.ARBackend: ONNX
	// Runtime); New sets Tokenizer to Exec.
	AROptions ar.Options
}

// Limits bound each request; zero fields take DefaultLimits'.
type Limits struct {
	MaxBodyBytes int64         // request body (an image, a payload, a multipart form)
	MaxPixels    int64         // width×height an image's header may declare (checked before its pixels are decoded)
	MaxK         int           // tokens kept or decoded (below the model's own maximum)
	MaxSteps     int           // decode Euler steps
	MaxSize      int           // encode/decode image side in pixels
	Timeout      time.Duration // one request, from its headers to its response (408 after)
	MaxN         int           // generate: samples per request
	MaxGenTokens int           // generate: tokens per request (n × k)
}

// DefaultLimits are the limits of a zero Limits field.
var DefaultLimits = Limits{MaxBodyBytes: 8 << 20, MaxPixels: 16 << 20, MaxK: 256, MaxSteps: 100, MaxSize: 1024, Timeout: 60 * time.Second,
	MaxN: 16, MaxGenTokens: 4096}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = d.MaxPixels
	}
	if l.MaxK <= 0 {
		l.MaxK = d.MaxK
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = d.MaxSteps
	}
	if l.MaxSize <= 0 {
		l.MaxSize = d.MaxSize
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.MaxN <= 0 {
		l.MaxN = d.MaxN
	}
	if l.MaxGenTokens <= 0 {
		l.MaxGenTokens = d.MaxGenTokens
	}
	return l
}

// Config configures a Server.
type Config struct {
	Models []Model // the first is the default of ?model=
	Limits Limits
	// MaxConcurrent requests run the model at once (0: GOMAXPROCS/2, at least 1: the Go engine
	// already spreads one request over the CPUs); MaxQueue more are admitted and wait (0: 4 ×
	// MaxConcurrent; -1: none). Beyond that, 429 with Retry-After.
	MaxConcurrent, MaxQueue int
	RetryAfter              time.Duration // the Retry-After of a 429 (0: 1 s)
	// CORSOrigins may call the API from pages served elsewhere ("*": any). COOP and COEP, if
	// set, are sent as Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy on every
	// response (with COEP require-corp, also Cross-Origin-Resource-Policy: cross-origin for
	// the allowed origins).
	CORSOrigins []string
	COOP, COEP  string
	Log         *slog.Logger // nil: discard
	// Fallback serves every path outside the API (the demo page); nil: 404.
	Fallback http.Handler
	// ARBatching runs each AR model's generate requests as one continuous batch (docs/server.md,
	// "Continuous batching"): "on", "off", or "" for the default (DefaultARBatching with the
	// Go executor; off with another, which cannot batch: New refuses "on" for it).
	ARBatching string
	// WebPackage, if set, is the browser model package served under WebPackagePrefix
	// (docs/web-package.md); nil: those paths answer 404.
	WebPackage *WebPackage
	// Health holds extra fields of /healthz's JSON (`flextok serve`: the demo's model,
	// samples and assets); "status" is always "ok".
	Health map[string]any
}

// DefaultARBatching is Config.ARBatching's default with the Go executor (docs/server.md,
// "Continuous batching": measured on this project's 2-CPU machine).
const DefaultARBatching = true

// Server is the HTTP service. Its Handler is safe for concurrent use.
type Server struct {
	cfg      Config
	lim      Limits
	models   map[string]*Model
	gens     map[string]*ar.Generator // the models that generate
	batchers map[string]*batcher      // the models that generate in a continuous batch
	order    []string
	adm      *admission
	m        *metrics
	log      *slog.Logger
	draining atomic.Bool
	retry    int
	handler  http.Handler
	routes   map[string]map[string]routeHandler // path → method → handler
}

type routeHandler func(w http.ResponseWriter, r *http.Request) *apiError

// New builds a Server; it fails on a configuration error (no model, a duplicate name).
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, lim: cfg.Limits.withDefaults(), models: map[string]*Model{}, gens: map[string]*ar.Generator{}, m: newMetrics(), log: cfg.Log,
		batchers: map[string]*batcher{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Models) == 0 {
		return nil, errors.New("flextok/server: no models")
	}
	switch cfg.ARBatching {
	case "", "on", "off":
	default:
		return nil, fmt.Errorf("flextok/server: AR batching %q: want on, off or empty (the default)", cfg.ARBatching)
	}
	for i := range cfg.Models {
		m := &cfg.Models[i]
		if !validName(m.Name) {
			return nil, fmt.Errorf("flextok/server: model name %q: want letters, digits, '.', '_' or '-'", m.Name)
		}
		if m.Exec == nil {
			return nil, fmt.Errorf("flextok/server: model %q has no executor", m.Name)
		}
		if _, dup := s.models[m.Name]; dup {
			return nil, fmt.Errorf("flextok/server: two models named %q", m.Name)
		}
		if m.AR != nil {
			o := m.AROptions
			o.Tokenizer = m.Exec
			g, err := ar.NewGenerator(m.AR, o)
			if err != nil {
				return nil, fmt.Errorf("flextok/server: model %q: its AR model: %w", m.Name, err)
			}
			s.gens[m.Name] = g
			switch batch := cfg.ARBatching == "on" || cfg.ARBatching == "" && DefaultARBatching; {
			case batch && o.Executor != nil:
				if cfg.ARBatching == "on" {
					return nil, fmt.Errorf("flextok/server: model %q: AR batching on: %w (ONNX Runtime's step graph takes one past length for the whole batch)", m.Name, ar.ErrExecutor)
				}
			case batch:
				s.batchers[m.Name] = newBatcher(s, m.Name, g)
			}
		}
		s.models[m.Name] = m
		s.order = append(s.order, m.Name)
	}
	work := cfg.MaxConcurrent
	if work <= 0 {
		work = max(1, runtime.GOMAXPROCS(0)/2)
	}
	wait := cfg.MaxQueue
	if wait == 0 {
		wait = 4 * work
	} else if wait < 0 {
		wait = 0
	}
	s.adm = newAdmission(work, wait, s.m)
	s.retry = max(1, int((cfg.RetryAfter+time.Second-1)/time.Second))
	s.routes = map[string]map[string]routeHandler{
		"/v1/encode":       {http.MethodPost: s.encode},
		"/v1/decode":       {http.MethodPost: s.decode},
		"/v1/generate":     {http.MethodPost: s.generate},
		"/v1/models":       {http.MethodGet: s.listModels},
		"/v1/openapi.json": {http.MethodGet: s.openapi},
		"/healthz":         {http.MethodGet: s.healthz},
		"/readyz":          {http.MethodGet: s.readyz},
		"/metrics":         {http.MethodGet: s.metricsHandler()},
		webPackageRoute:    {http.MethodGet: s.webPackage},
	}
	s.handler = s.middleware(http.HandlerFunc(s.route))
	return s, nil
}

func validName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes are the API's routes as "METHOD /path", sorted (the OpenAPI test compares them with
// the document).
func (s *Server) Routes() []string {
	var out []string
	for p, ms := range s.routes {
		for m := range ms {
			out = append(out, m+" "+p)
		}
	}
	slices.Sort(out)
	return out
}

// Drain makes /readyz fail and refuses new API work with 503, for a graceful shutdown: call it
// before http.Server.Shutdown, which then waits for the requests in flight.
func (s *Server) Drain() { s.draining.Store(true) }

// Ready reports whether the server takes work (models loaded and not draining).
func (s *Server) Ready() bool { return !s.draining.Load() && len(s.models) > 0 }

// Models returns the names of the served models, the default first.
func (s *Server) Models() []string { return slices.Clone(s.order) }

// alias serves h at path for method, inside the server's middleware.
func (s *Server) alias(path, method string, h routeHandler) {
	if s.routes[path] == nil {
		s.routes[path] = map[string]routeHandler{}
	}
	s.routes[path][method] = h
}

// LegacyEncode serves POST path as /v1/encode, with its admission and limits (`flextok
// serve`: the demo page's POST /encode). Call it before serving.
func (s *Server) LegacyEncode(path string) { s.alias(path, http.MethodPost, s.encode) }

// reqState is what the middleware learns from the handlers.
type reqState struct {
	route     string
	bytesIn   int64
	err       *apiError
	requestID string
}

type stateKey struct{}

func state(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		st = &reqState{}
	}
	return st
}

// recorder records the status and bytes of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware: request id, CORS and cross-origin headers, metrics, the JSON log line, and
// recovery from panics.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [8]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		st := &reqState{route: "other", requestID: id}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		h := w.Header()
		h.Set("X-Request-Id", id)
		s.crossOrigin(h, r)
		rec := &recorder{ResponseWriter: w}
		s.m.inFlight.Inc()
		defer func() {
			s.m.inFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic", "request_id", id, "panic", fmt.Sprint(p))
				if rec.status == 0 {
					writeError(rec, errf(http.StatusInternalServerError, CodeInternal, "internal error (request %s)", id))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			if st.err != nil && st.err.Status == statusClientClosed {
				status = statusClientClosed
			}
			d := time.Since(start)
			s.m.requests.WithLabelValues(st.route, fmt.Sprint(status)).Inc()
			s.m.latency.WithLabelValues(st.route).Observe(d.Seconds())
			s.m.bytesIn.WithLabelValues(st.route).Add(float64(st.bytesIn))
			s.m.bytesOut.WithLabelValues(st.route).Add(float64(rec.bytes))
			attrs := []any{"request_id", id, "method", r.Method, "path", r.URL.Path, "route", st.route, "status", status,
				"duration_ms", float64(d.Microseconds()) / 1000, "bytes_in", st.bytesIn, "bytes_out", rec.bytes, "remote", r.RemoteAddr}
			if st.err != nil {
				attrs = append(attrs, "code", st.err.Code, "error", st.err.Message)
				if st.err.Limit != "" {
					attrs = append(attrs, "limit", st.err.Limit)
				}
			}
			level := slog.LevelInfo
			if status >= 500 && status != statusClientClosed {
				level = slog.LevelError
			}
			s.log.Log(r.Context(), level, "request", attrs...)
		}()
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			st.route = "preflight"
			rec.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(rec, r)
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// crossOrigin sets the CORS headers for an allowed Origin, and COOP/COEP.
func (s *Server) crossOrigin(h http.Header, r *http.Request) {
	if s.cfg.COOP != "" {
		h.Set("Cross-Origin-Opener-Policy", s.cfg.COOP)
	}
	if s.cfg.COEP != "" {
		h.Set("Cross-Origin-Embedder-Policy", s.cfg.COEP)
	}
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.cfg.CORSOrigins) == 0 {
		return
	}
	allowed := ""
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" {
			allowed = "*"
			break
		}
		if o == origin {
			allowed = origin
			break
		}
	}
	if allowed == "" {
		return
	}
	h.Set("Access-Control-Allow-Origin", allowed)
	if allowed != "*" {
		h.Add("Vary", "Origin")
	}
	h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, Content-Disposition, X-Flextok-Model, X-Flextok-Samples, X-Flextok-Seed")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Accept, X-Request-Id")
		h.Set("Access-Control-Max-Age", "600")
	}
}

// route dispatches by path and method: JSON errors for unknown routes under /v1/ and wrong
// methods; other paths go to the fallback.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	st := state(r)
	if strings.HasPrefix(r.URL.Path, WebPackagePrefix) {
		st.route = webPackageRoute
		if err := s.webPackage(w, r); err != nil {
			s.fail(w, r, err)
		}
		return
	}
	ms, ok := s.routes[r.URL.Path]
	if !ok {
		if s.cfg.Fallback != nil && !strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/v1" {
			st.route = "fallback"
			s.cfg.Fallback.ServeHTTP(w, r)
			return
		}
		s.fail(w, r, errf(http.StatusNotFound, CodeNotFound, "no route %s (see /v1/openapi.json)", r.URL.Path))
		return
	}
	st.route = r.URL.Path
	h, ok := ms[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = ms[http.MethodGet]
	}
	if !ok {
		var allow []string
		for m := range ms {
			allow = append(allow, m)
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, errf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s %s: want %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
		return
	}
	if err := h(w, r); err != nil {
		s.fail(w, r, err)
	}
}

// fail writes an error response and records it for the log. A client that went away (a
// half-closed connection may still read) gets 408.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	state(r).err = e
	if e.Status == http.StatusTooManyRequests && e.retryAfter == 0 {
		e.retryAfter = s.retry
	}
	writeError(w, e)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) *apiError {
	h := map[string]any{}
	for k, v := range s.cfg.Health {
		h[k] = v
	}
	h["status"] = "ok"
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) *apiError {
	if !s.Ready() {
		return errf(http.StatusServiceUnavailable, CodeUnavailable, "draining: the server is shutting down")
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "models": s.order})
	return nil
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) *apiError {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPI)
	return nil
}

func (s *Server) metricsHandler() routeHandler {
	h := promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{})
	return func(w http.ResponseWriter, r *http.Request) *apiError {
		h.ServeHTTP(w, r)
		return nil
	}
}
